package harmony

import (
	"errors"
	"strings"
	"testing"
)

func TestDateFormats(t *testing.T) {
	for _, tc := range []struct {
		format string
		pivot  int
		in     string
		want   string // ISO, or "" for an error
	}{
		{"dd/mm/yyyy", 0, "25/06/2012", "2012-06-25"},
		{"dd/mm/yyyy", 0, "5/6/2012", "2012-06-05"},
		{"dd/mm/yyyy", 0, "31/02/2012", ""},
		{"dd/mm/yyyy", 0, "29/02/2012", "2012-02-29"},
		{"dd/mm/yyyy", 0, "29/02/2013", ""},
		{"dd/mm/yyyy", 0, "2012-06-25", ""},
		{"dd/mm/yyyy", 0, "25/06/2012900", ""},
		{"dd/mm/yyyy", 0, "25/13/2012", ""},
		{"dd/mm/yy", 1950, "25/06/12", "2012-06-25"},
		{"dd/mm/yy", 1950, "25/06/49", "2049-06-25"},
		{"dd/mm/yy", 1950, "25/06/50", "1950-06-25"},
		{"dd/mm/yy", 1950, "25/06/99", "1999-06-25"},
		{"dd/mm/yy", 1990, "01/01/89", "2089-01-01"},
		{"dd/mm/yy", 1950, "25/06/2012", ""},
		{"dd-Mon-yyyy", 0, "28-May-2013", "2013-05-28"},
		{"dd-Mon-yyyy", 0, "01-JUN-2012", "2012-06-01"},
		{"dd-Mon-yyyy", 0, "01-jun-2012", "2012-06-01"},
		{"dd-Mon-yyyy", 0, "01-Jux-2012", ""},
		{"dd-Mon-yy", 1950, "01-Sep-14", "2014-09-01"},
		{"dd Month yyyy", 0, "3 September 2014", "2014-09-03"},
		{"iso", 0, "2022-05-03", "2022-05-03"},
		{"iso", 0, "2022-5-3", "2022-05-03"},
		{"iso", 0, "03/05/2022", ""},
		{"yyyy-mm-dd HH:MI:SS", 0, "2022-05-03 10:30:00", "2022-05-03"},
		{"yyyy-mm-dd HH:MI:SS", 0, "2022-05-03 25:30:00", ""},
		{"dd/mm/yyyy HH:MI", 0, "01/06/2012 10:30", "2012-06-01"},
		{"yyyymmdd", 0, "20220503", "2022-05-03"},
		{"excel", 0, "41085", "2012-06-25"},
		{"excel", 0, "41085.5", "2012-06-25"},
		{"excel", 0, "1", "1900-01-01"},
		{"excel", 0, "59", "1900-02-28"},
		{"excel", 0, "60", ""},
		{"excel", 0, "61", "1900-03-01"},
		{"excel", 0, "25569", "1970-01-01"},
		{"excel", 0, "0", ""},
		{"excel", 0, "25/06/2012", ""},
		{"excel", 0, "-5", ""},
	} {
		df, err := ParseDateFormat(tc.format, tc.pivot)
		if err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		d, err := df.Parse(tc.in)
		got := ""
		if err == nil {
			got = value{n: d}.format(kDate)
		}
		if got != tc.want {
			t.Errorf("%s %q = %q (%v), want %q", tc.format, tc.in, got, err, tc.want)
		}
	}
}

func TestDateFormatRefused(t *testing.T) {
	for _, tc := range []struct {
		format string
		pivot  int
	}{{"", 0}, {"dd/mm", 0}, {"dd/mm/yy", 0}, {"dd/mm/yyyy/yyyy", 0}, {"qq/mm/yyyy", 0}, {"mm/yyyy", 0}, {"dd/mm/yy", 50}} {
		if _, err := ParseDateFormat(tc.format, tc.pivot); err == nil {
			t.Errorf("%q (pivot %d) accepted", tc.format, tc.pivot)
		}
	}
}

func TestNumbers(t *testing.T) {
	const missing = "MISSING"
	for _, tc := range []struct {
		form NumberForm
		in   string
		want string // formatted, "" for an error, missing for errMissing
	}{
		{NumberPlain, "1234.50", "1234.50"},
		{NumberPlain, "-1466.53", "-1466.53"},
		{NumberPlain, "+12", "12.00"},
		{NumberPlain, " 900 ", "900.00"},
		{NumberPlain, ".5", "0.50"},
		{NumberPlain, "1234.5678", "1234.5678"},
		{NumberPlain, "1234.56780", "1234.5678"},
		{NumberPlain, "1234.56789", ""},
		{NumberPlain, "1,234.50", ""},
		{NumberPlain, "£12", ""},
		{NumberPlain, "", ""},
		{NumberPlain, "-", ""},
		{NumberPlain, "1e3", ""},
		{NumberPlain, "NaN", ""},
		{NumberPlain, "99999999999999999999", ""},
		{NumberMoney, "£1,234.50", "1234.50"},
		{NumberMoney, "£1,234.50 ", "1234.50"},
		{NumberMoney, "1,100.00", "1100.00"},
		{NumberMoney, "(28,784.50)", "-28784.50"},
		{NumberMoney, "(28,784,540.00)", "-28784540.00"},
		{NumberMoney, "( 12.00 )", "-12.00"},
		{NumberMoney, "12.00-", "-12.00"},
		{NumberMoney, "1,234.00-", "-1234.00"},
		{NumberMoney, "-£12.00", "-12.00"},
		{NumberMoney, "£-12.00", "-12.00"},
		{NumberMoney, "GBP 12.00", "12.00"},
		{NumberMoney, "1234.5", "1234.50"},
		{NumberMoney, "-", missing},
		{NumberMoney, " - ", missing},
		{NumberMoney, "", ""},
		{NumberMoney, "(12.00)-", ""},
		{NumberMoney, "--12", ""},
		{NumberMoney, "1,23.00", ""},
		{NumberMoney, "12,3456.00", ""},
		{NumberMoney, ",123.00", ""},
		{NumberMoney, "1.234,50", ""},
		{NumberMoney, "£", ""},
		{NumberMoney, "12 34", ""},
	} {
		n, err := ParseNumber(tc.in, tc.form)
		got := ""
		switch {
		case errors.Is(err, errMissing):
			got = missing
		case err == nil:
			got = formatDecimal(n)
		}
		if got != tc.want {
			t.Errorf("%s %q = %q (%v), want %q", tc.form, tc.in, got, err, tc.want)
		}
	}
}

func TestEncodingsAndHeaders(t *testing.T) {
	if got := decodeWindows1252("\xa3500 caf\xe9 \x93quoted\x94 \x80"); got != "£500 café “quoted” €" {
		t.Errorf("windows-1252: %q", got)
	}
	if got := decodeWindows1252("plain"); got != "plain" {
		t.Errorf("ascii: %q", got)
	}
	for _, h := range []string{"Supplier Name", "supplier name", " SUPPLIER  NAME ", "SupplierName", "supplier_name", "\ufeffSupplier Name", "ï»¿Supplier Name", "\xef\xbb\xbfSupplier\u00a0Name"} {
		if headerKey(h) != "suppliername" {
			t.Errorf("headerKey(%q) = %q", h, headerKey(h))
		}
	}
	if got := nearest("Suplier Nmae", []string{"Body", "Supplier Name", "Amount"}); got != "Supplier Name" {
		t.Errorf("nearest = %q", got)
	}
}

func TestNormaliseSupplier(t *testing.T) {
	for in, want := range map[string]string{
		"Biffa Waste Services Limited":      "BIFFA WASTE SERVICES LTD",
		"biffa  waste services ltd.":        "BIFFA WASTE SERVICES LTD",
		"J Smith T/A Smith's Plumbing":      "J SMITH",
		"J Smith t/a Smith's Plumbing":      "J SMITH",
		"The Wincanton Holdings Ltd":        "WINCANTON HOLDINGS LTD",
		"Exchequer Partnership Plc (100PS)": "EXCHEQUER PARTNERSHIP PLC 100PS",
		"Acme Public Limited Company":       "ACME PLC",
		"A.N.D Projects LLP":                "AND PROJECTS LLP",
		"A J H  Pump Supply & Repair Ltd":   "A J H PUMP SUPPLY & REPAIR LTD",
		"T/A Only":                          "T A ONLY",
		"":                                  "",
	} {
		if got := NormaliseSupplier(in); got != want {
			t.Errorf("NormaliseSupplier(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestNormaliseSupplierFastPath: the ASCII path gives what the general
// one does.
func TestNormaliseSupplierFastPath(t *testing.T) {
	names := []string{"", " ", "The", "THE LTD", "the  Wincanton Holdings Ltd. ", "J Smith T/A Smith's Plumbing", "T/A Only",
		"Exchequer Partnership Plc (100PS)", "Acme Public Limited Company", "Public Limited", "A.N.D & Sons Limited",
		"Biffa Waste Services Limited", "x t/as y", "Bob trading as Bob's", "  --  ", "O'Brien & O'Neil (UK) LTD.",
		strings.Repeat("word ", 40), strings.Repeat("x", 200)}
	for i := range 2000 {
		b := make([]byte, i%40)
		for j := range b {
			b[j] = " aAtT/.'&-(9LIMITEDhe"[(i*7+j*13)%21]
		}
		names = append(names, string(b))
	}
	for _, n := range names {
		if got, want := normaliseASCII(n), normaliseSupplier(n); got != want {
			t.Fatalf("%q: fast path %q, general %q", n, got, want)
		}
	}
}
