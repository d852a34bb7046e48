package table

import (
	"bytes"
	"fmt"
	"testing"
)

// TestTypesAreWholeFileFacts: contradictions and nulls past the 10,000-row
// sample change the profile, as the GLA's "Corp Card" vendor IDs and TfL's
// null counts showed they must.
func TestTypesAreWholeFileFacts(t *testing.T) {
	const n = 12_834
	var b bytes.Buffer
	b.WriteString("Vendor ID,Zip,Note,Paid,When,Amount\n")
	for i := range n {
		vendor := fmt.Sprint(100000 + i)
		if i >= n-13 { // 13 rows past the sample, as in the GLA's file
			vendor = "Corp Card"
		}
		zip := fmt.Sprint(1000 + i%9000)
		if i == 11_000 {
			zip = "01234" // a code with a leading zero, once, late
		}
		note := ""
		if i < 118 || i%1000 == 999 && i < 12_000 { // TfL: 12,716 nulls of 12,834, most past the sample
			note = "x"
		}
		when := fmt.Sprintf("%02d/06/2012", 1+i%28)
		if i == 12_500 {
			when = "1/6/2012" // a strict %d/%m/%Y reader refuses a one-digit day
		}
		amount := fmt.Sprintf("%d.50", i)
		if i == 10_500 {
			amount = "£1,234.50" // a currency sign, late: still a number, bareNumber false
		}
		fmt.Fprintf(&b, "%s,%s,%s,%d,%s,\"%s\"\n", vendor, zip, note, i, when, amount)
	}
	data := b.Bytes()
	notes := int64(0)
	for i := range n {
		if i < 118 || i%1000 == 999 && i < 12_000 {
			notes++
		}
	}
	for _, chunk := range []int{len(data), 4093, 64 << 10} {
		p := NewProfiler()
		for d := data; len(d) > 0; d = d[min(chunk, len(d)):] {
			p.Write(d[:min(chunk, len(d))])
		}
		tb, err := p.Result()
		if err != nil {
			t.Fatal(err)
		}
		if tb.Rows != n || tb.SampledRows != n || tb.TypesStopped != "" {
			t.Fatalf("chunk %d: rows %d, typed %d (%q); want %d of %d", chunk, tb.Rows, tb.SampledRows, tb.TypesStopped, n, n)
		}
		want := map[string]string{"Vendor ID": "string", "Zip": "string", "Note": "string", "Paid": "integer", "When": "string", "Amount": "number"}
		for _, c := range tb.Columns {
			if c.Type != want[c.Name] {
				t.Errorf("chunk %d: %s is %s, want %s", chunk, c.Name, c.Type, want[c.Name])
			}
		}
		if c := findColumn(t, tb, "Note"); c.Nulls != n-notes {
			t.Errorf("chunk %d: Note has %d nulls, want %d (a whole-file count)", chunk, c.Nulls, n-notes)
		}
		if c := findColumn(t, tb, "Amount"); !c.Currency || c.GroupChar != "," {
			t.Errorf("chunk %d: Amount %+v, want a number with £ (bareNumber false) and groupChar", chunk, c)
		}
	}
}

// TestTypingStopsOnAHugeRecord: a record longer than the typing buffer
// (a quote never closed) makes every column a string and says why.
func TestTypingStopsOnAHugeRecord(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("a,b\n")
	for i := range sampleRows + 10 {
		fmt.Fprintf(&b, "%d,%d\n", i, i)
	}
	b.WriteString("1,\"")
	b.Write(bytes.Repeat([]byte("x\n"), maxPending/2+10))
	tb, err := Profile(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if tb.TypesStopped == "" || tb.Columns[0].Type != "string" || tb.Columns[1].Type != "string" {
		t.Fatalf("typing did not stop: %+v", tb)
	}
}
