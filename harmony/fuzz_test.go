package harmony

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParseMapping(f *testing.F) {
	names, _ := filepath.Glob(filepath.Join("testdata", "mappings", "*.toml"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(testMappingHead + basicFields))
	std := lgaStandard(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMapping(b)
		if err != nil {
			return
		}
		// a mapping that parses has a stable hash and can be bound and applied
		m2, err := ParseMapping(b)
		if err != nil || m2.Hash != m.Hash {
			t.Fatalf("reparse: %v", err)
		}
		if m.Bind(std) != nil {
			return
		}
		rep, err := Check(context.Background(), strings.NewReader("Supplier,Date,Amount\nA,01/06/2012,1.00\nB,x,y\n"), std, m)
		if err == nil && rep.Accepted+rep.Rejected != rep.DataRows {
			t.Fatalf("rows lost: %+v", rep)
		}
	})
}

func FuzzParseStandard(f *testing.F) {
	for _, n := range []string{LGASpend, CentralSpend} {
		b, _ := SampleStandard(n)
		f.Add(b)
	}
	f.Add([]byte(`{"fields":[{"name":"n","type":"integer","constraints":{"minimum":1,"enum":[1,2]}}],"primaryKey":"n"}`))
	f.Add([]byte(`{"fields":[{"name":"d","type":"date","constraints":{"exclusiveMaximum":"2020-01-01"}}],"missingValues":[{"value":"-"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStandard(b)
		if err != nil {
			return
		}
		if len(s.Fields) == 0 || s.Hash.IsZero() {
			t.Fatalf("accepted a standard with no fields or hash")
		}
		mergedColumns(s)
	})
}

func FuzzCoercions(f *testing.F) {
	for _, s := range []string{"25/06/2012", "28-May-2013", "2022-05-03", "41085", "£1,234.50 ", "(28,784.50)", "12.00-", "-", "", "1e9", "01/06/12"} {
		f.Add(s, "dd/mm/yyyy")
	}
	f.Add("3 September 2014", "dd Month yyyy")
	f.Add("2022-05-03 10:00:00", "yyyy-mm-dd HH:MI:SS")
	f.Fuzz(func(t *testing.T, s, format string) {
		for _, form := range []NumberForm{NumberPlain, NumberMoney} {
			if n, err := ParseNumber(s, form); err == nil {
				// the canonical form reads back as the same number
				if m, err := ParseNumber(formatDecimal(n), NumberPlain); err != nil || m != n {
					t.Fatalf("%s %q → %d → %q → %d, %v", form, s, n, formatDecimal(n), m, err)
				}
			}
		}
		var cw strings.Builder
		w := csv.NewWriter(&cw)
		_ = w.Write([]string{s, "x"})
		w.Flush()
		if got := string(appendCSVField(nil, s)) + ",x\n"; got != cw.String() {
			t.Fatalf("appendCSVField(%q) = %q, encoding/csv writes %q", s, got, cw.String())
		}
		if n, err := ParseNumber(s, NumberMoney); err == nil && string(appendDecimal(nil, n)) != formatDecimal(n) {
			t.Fatalf("appendDecimal(%d) = %q, formatDecimal %q", n, appendDecimal(nil, n), formatDecimal(n))
		}
		_, _ = ParseInteger(s)
		_ = NormaliseSupplier(s)
		_ = headerKey(s)
		_ = decodeWindows1252(s)
		if df, err := ParseDateFormat(format, 1950); err == nil {
			if d, err := df.Parse(s); err == nil {
				if d < daysOf(1000, 1, 1) || d > daysOf(9999, 12, 31) {
					t.Fatalf("%q %q: day %d out of range", format, s, d)
				}
			}
		}
		for _, name := range []string{"iso", "excel", "dd/mm/yy", "dd-Mon-yyyy"} {
			df, _ := ParseDateFormat(name, 1950)
			_, _ = df.Parse(s)
		}
	})
}

// FuzzNormaliseSupplier: the ASCII fast path agrees with the general one
// on every input.
func FuzzNormaliseSupplier(f *testing.F) {
	for _, s := range []string{"", "The Acme Ltd.", "J Smith T/A Smith's", "Public Limited Company", "A  B", "x t/as y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return
			}
		}
		if got, want := normaliseASCII(s), normaliseSupplier(s); got != want {
			t.Fatalf("%q: fast path %q, general %q", s, got, want)
		}
	})
}
