package table

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/nii-uk/nii/internal/spenddata"

	"github.com/nii-uk/nii"
)

// FuzzTableProfiler checks that profiling never panics, gives sane results,
// does not depend on how the input is split into Writes, and counts exactly
// the rows encoding/csv reads, also when a tiny sample leaves nearly all of
// them to the counting scanner.
func FuzzTableProfiler(f *testing.F) {
	for _, name := range []string{"lambeth.csv", "trafford.csv"} {
		b, err := os.ReadFile(filepath.Join(spenddata.Dir(), name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:4096])
		f.Add(b[:1500])
	}
	for _, s := range []string{
		"", "\ufeff", "\ufeffa,b\r\n1,2\r\n", "a,b\n1,2", "a,b\r\n1,2\r", "a;b\n1;2\n", "a\tb\n1\t2\n", "a|b\n1|2\n",
		"a,b\n1,\"x\ny\"\n2,\"\"\"q\"\"\"\n", "a,b\n\"open,1\n2,3\n", "a,b\n5\" pipe,1\n\"q\"z,2\n",
		"Title,,,\n,,,\nParameters:,,,\nA,B,C,D\n1,2,3,4\n,,,\n", "a,,b,,,\n1,,2,,,\n", "\x00\x01\x02",
		"%PDF-1.4\n", "a,b\n\xa3500,caf\xe9\n", "a,b\n(28,784.00),\"(1,100.00)\"\n", "x\n", "\n\n\r\n", ",,\n,,\n",
		"d,t\n01/06/2012,2012-06-01T10:00:00Z\n", "a,b\n\"\r", "a,b\r\n\"x\"\r\r\n", "\"a\"\"b\",c\n\"\",\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, errWhole := profileBytes(t, data)
		pieces, errPieces := profilePieces(t, NewProfiler(), data, uint64(len(data)))
		if !sameResult(whole, errWhole, pieces, errPieces) {
			t.Fatalf("one Write: %+v, %v\nin pieces: %+v, %v", whole, errWhole, pieces, errPieces)
		}
		checkTable(t, data, whole, errWhole)

		// A tiny sample: the counting scanner does nearly all the work.
		p := newProfiler(2, 3, 64)
		p.Write(data)
		small, errSmall := p.Result()
		smallPieces, errSmallPieces := profilePieces(t, newProfiler(2, 3, 64), data, uint64(len(data))+1)
		if !sameResult(small, errSmall, smallPieces, errSmallPieces) {
			t.Fatalf("small sample, one Write: %+v, %v\nin pieces: %+v, %v", small, errSmall, smallPieces, errSmallPieces)
		}
		checkTable(t, data, small, errSmall)
	})
}

func sameResult(t1 *nii.Table, err1 error, t2 *nii.Table, err2 error) bool {
	if (err1 == nil) != (err2 == nil) || (err1 != nil && err1.Error() != err2.Error()) {
		return false
	}
	return reflect.DeepEqual(t1, t2)
}

// checkTable checks a profile of data for sanity, and its row count against
// encoding/csv.
func checkTable(t *testing.T, data []byte, tb *nii.Table, err error) {
	t.Helper()
	if err != nil {
		if tb != nil {
			t.Fatalf("Result returned both %+v and %v", tb, err)
		}
		return
	}
	if tb.Rows < 0 || tb.SampledRows < 0 || tb.SampledRows > tb.Rows || tb.RaggedRows < 0 || tb.RaggedRows > tb.SampledRows {
		t.Fatalf("bad counts: %+v", tb)
	}
	if len(tb.Columns) > nii.MaxColumns {
		t.Fatalf("%d columns, more than %d", len(tb.Columns), nii.MaxColumns)
	}
	if tb.HeaderRow < 1 || len(tb.Delimiter) != 1 || (tb.LineTerminator != "\n" && tb.LineTerminator != "\r\n") ||
		(tb.Encoding != "utf-8" && tb.Encoding != "windows-1252") {
		t.Fatalf("bad dialect: %+v", tb)
	}
	for _, c := range tb.Columns {
		if c.Name == "" || !utf8.ValidString(c.Name) || c.Type == "" || c.Nulls < 0 || c.Nulls > tb.SampledRows {
			t.Fatalf("bad column %+v in %+v", c, tb)
		}
	}
	body := bytes.TrimPrefix(data, utf8BOM)
	if tb.BOM != (len(body) < len(data)) {
		t.Fatalf("BOM = %v for input starting %q", tb.BOM, data[:min(len(data), 3)])
	}
	r := newCSVReader(body, tb.Delimiter[0])
	var rows int64
	for k := 1; ; k++ {
		rec, err := r.Read()
		if err != nil {
			if k <= tb.HeaderRow {
				t.Fatalf("HeaderRow %d, but encoding/csv reads %d records", tb.HeaderRow, k-1)
			}
			break
		}
		if k > tb.HeaderRow && !isBlank(rec) {
			rows++
		}
	}
	if rows != tb.Rows {
		t.Fatalf("Rows = %d, encoding/csv reads %d below header row %d", tb.Rows, rows, tb.HeaderRow)
	}
}
