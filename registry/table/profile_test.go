package table

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nii-uk/nii/internal/spenddata"

	"github.com/nii-uk/nii"
)

// profileBytes profiles b, written in one piece.
func profileBytes(t testing.TB, b []byte) (*nii.Table, error) {
	t.Helper()
	p := NewProfiler()
	if n, err := p.Write(b); n != len(b) || err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(b))
	}
	return p.Result()
}

// profilePieces profiles b written in pieces of 1 to 7 bytes, sizes chosen
// by seed, through p.
func profilePieces(t testing.TB, p *Profiler, b []byte, seed uint64) (*nii.Table, error) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	for len(b) > 0 {
		n := min(len(b), 1+rng.IntN(7))
		if m, err := p.Write(b[:n]); m != n || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", m, err, n)
		}
		b = b[n:]
	}
	return p.Result()
}

func columnNames(cols []nii.Column) []string {
	var names []string
	for _, c := range cols {
		names = append(names, c.Name)
	}
	return names
}

func findColumn(t *testing.T, tb *nii.Table, name string) nii.Column {
	t.Helper()
	for _, c := range tb.Columns {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no column %q in %q", name, columnNames(tb.Columns))
	return nii.Column{}
}

// TestProfileRealFiles profiles the real council files in internal/spenddata.
// The row counts were checked independently: Python's csv module finds
// 2,010 records in lambeth.csv (header at record 10, 2,000 below it, none
// blank; 1,641 with 6 fields, 358 with 5, 1 with 4) and 2,001 in
// trafford.csv (header first, 2,000 below it, all with 16 fields); awk
// agrees (`awk 'NR>10 && $0 !~ /^,*$/' lambeth.csv | wc -l` is 2000).
func TestProfileRealFiles(t *testing.T) {
	type colType struct{ name, typ, format string }
	tests := []struct {
		file       string
		encoding   string
		bom        bool
		lineTerm   string
		delim      string
		headerRow  int
		rows       int64
		ragged     int64
		names      []string
		types      []colType
		nullCounts map[string]int64
	}{
		{
			file:      "lambeth.csv",
			encoding:  "utf-8",
			lineTerm:  "\n",
			delim:     ",",
			headerRow: 10, // 9 report lines (title, date, parameters, blank ",,,,,") above it
			rows:      2000,
			ragged:    359, // 358 fused rows with 5 fields, 1 with 4
			names:     []string{"Body", "Department", "Supplier Name", "Invoice Creation Date", "Invoice Nett Amount", "Subj Description"},
			types: []colType{
				{"Body", "string", ""},
				// In the 358 fused rows the date and amount share a cell
				// ("25/06/2012900"), which is no date: 1,641 of 2,000
				// values (82%) are dd/mm/yyyy dates, short of the 90%
				// the date type needs.
				{"Invoice Creation Date", "string", ""},
				// The fused rows are one cell short, so this column holds
				// their description ("RENT - B&B - SHARED"): 1,641 of
				// 1,999 non-null values (82%) are numbers; string it is.
				{"Invoice Nett Amount", "string", ""},
				{"Subj Description", "string", ""},
			},
			// The fused rows have no sixth cell; the 4-field row no fifth.
			nullCounts: map[string]int64{"Subj Description": 359, "Invoice Nett Amount": 1, "Body": 0},
		},
		{
			file:      "trafford.csv",
			encoding:  "utf-8",
			bom:       true,
			lineTerm:  "\r\n",
			delim:     ",",
			headerRow: 1,
			rows:      2000,
			names: []string{"Body", "Body name", "Date", "Transaction number", "Invoice Number", "Amount",
				"Supplier Name", "Supplier ID", "VAT Registration Number", "Expense Area", "Expense Type",
				"Expense Code", "BVACOP", "ProClass", "ProClass Description", "Extended Description"},
			types: []colType{
				{"Body", "string", ""}, // URIs
				{"Date", "date", "%d/%m/%Y"},
				{"Transaction number", "integer", ""},
				{"Invoice Number", "string", ""},
				{"Amount", "number", ""}, // "1,100.00"
				{"Supplier ID", "integer", ""},
				{"VAT Registration Number", "string", ""},
				{"Expense Code", "integer", ""},
				{"BVACOP", "string", ""},   // always empty, but not trailing: kept
				{"ProClass", "string", ""}, // 1,611 of 1,612 non-null are integers; one "NCLASS" makes it a string
			},
			nullCounts: map[string]int64{"BVACOP": 2000, "ProClass": 388, "VAT Registration Number": 528, "Amount": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(spenddata.Dir(), tt.file))
			if err != nil {
				t.Fatal(err)
			}
			tb, err := Profile(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("Profile: %v", err)
			}
			if tb.Encoding != tt.encoding || tb.BOM != tt.bom || tb.LineTerminator != tt.lineTerm || tb.Delimiter != tt.delim {
				t.Errorf("dialect = %q bom=%v %q %q; want %q bom=%v %q %q",
					tb.Encoding, tb.BOM, tb.LineTerminator, tb.Delimiter, tt.encoding, tt.bom, tt.lineTerm, tt.delim)
			}
			if tb.HeaderRow != tt.headerRow {
				t.Errorf("HeaderRow = %d, want %d", tb.HeaderRow, tt.headerRow)
			}
			if tb.Rows != tt.rows || tb.SampledRows != tt.rows {
				t.Errorf("Rows = %d, SampledRows = %d; want %d", tb.Rows, tb.SampledRows, tt.rows)
			}
			if tb.RaggedRows != tt.ragged {
				t.Errorf("RaggedRows = %d, want %d", tb.RaggedRows, tt.ragged)
			}
			if got := columnNames(tb.Columns); !reflect.DeepEqual(got, tt.names) {
				t.Errorf("columns = %q\nwant %q", got, tt.names)
			}
			for _, wantType := range tt.types {
				c := findColumn(t, tb, wantType.name)
				if c.Type != wantType.typ || c.Format != wantType.format {
					t.Errorf("column %q: type %q format %q; want %q %q", wantType.name, c.Type, c.Format, wantType.typ, wantType.format)
				}
			}
			for name, wantNulls := range tt.nullCounts {
				if got := findColumn(t, tb, name).Nulls; got != wantNulls {
					t.Errorf("column %q: Nulls = %d, want %d", name, got, wantNulls)
				}
			}

			// Split anywhere, and with a tiny sample (so that nearly all
			// rows go through the counting scanner), the answer is the same
			// where it doesn't depend on the sample.
			pieces, err := profilePieces(t, NewProfiler(), b, 1)
			if err != nil || !reflect.DeepEqual(pieces, tb) {
				t.Errorf("in pieces: %+v, %v\nwant %+v", pieces, err, tb)
			}
			small, err := profilePieces(t, newProfiler(5, 20, 4096), b, 2)
			if err != nil {
				t.Fatalf("small sample: %v", err)
			}
			if small.Rows != tt.rows || small.HeaderRow != tt.headerRow || small.SampledRows != tt.rows {
				t.Errorf("small sample: Rows %d HeaderRow %d SampledRows %d; want %d %d %d",
					small.Rows, small.HeaderRow, small.SampledRows, tt.rows, tt.headerRow, tt.rows)
			}
			// Types and null counts are whole-file facts: a 5-row sample
			// gives the same columns as the whole file in one piece.
			if !reflect.DeepEqual(small.Columns, tb.Columns) {
				t.Errorf("small sample's columns differ:\n%+v\nwant\n%+v", small.Columns, tb.Columns)
			}
		})
	}
}

// want describes the expected profile of a synthetic table; zero fields of
// the dialect default to utf-8, ",", "\n", header 1.
type tableWant struct {
	encoding  string
	bom       bool
	delim     string
	lineTerm  string
	headerRow int
	rows      int64
	ragged    int64
	skipSpace bool // some cell or header starts with white space
	cols      []nii.Column
}

func (w tableWant) table() *nii.Table {
	t := &nii.Table{Encoding: "utf-8", Delimiter: ",", LineTerminator: "\n", HeaderRow: 1,
		BOM: w.bom, Rows: w.rows, RaggedRows: w.ragged, SampledRows: w.rows, Columns: w.cols, SkipInitialSpace: w.skipSpace}
	if w.encoding != "" {
		t.Encoding = w.encoding
	}
	if w.delim != "" {
		t.Delimiter = w.delim
	}
	if w.lineTerm != "" {
		t.LineTerminator = w.lineTerm
	}
	if w.headerRow != 0 {
		t.HeaderRow = w.headerRow
	}
	if t.Columns == nil {
		t.Columns = []nii.Column{}
	}
	return t
}

func stringCol(name string) nii.Column { return nii.Column{Name: name, Type: "string"} }

func labelled(c nii.Column, label string) nii.Column {
	c.Label = &label
	return c
}

func TestProfileTable(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want tableWant
	}{
		{
			name: "lf",
			in:   "a,b\n1,x\n2,y\n",
			want: tableWant{rows: 2, cols: []nii.Column{{Name: "a", Type: "integer"}, stringCol("b")}},
		},
		{
			name: "crlf",
			in:   "a,b\r\n1,x\r\n2,y\r\n",
			want: tableWant{lineTerm: "\r\n", rows: 2, cols: []nii.Column{{Name: "a", Type: "integer"}, stringCol("b")}},
		},
		{
			name: "bom",
			in:   "\ufeffa,b\r\n1,x\r\n",
			want: tableWant{bom: true, lineTerm: "\r\n", rows: 1, cols: []nii.Column{{Name: "a", Type: "integer"}, stringCol("b")}},
		},
		{
			name: "no trailing newline",
			in:   "a,b\n1,x\n2,y",
			want: tableWant{rows: 2, cols: []nii.Column{{Name: "a", Type: "integer"}, stringCol("b")}},
		},
		{
			name: "no trailing newline crlf",
			in:   "a,b\r\n1,x\r\n2,y\r",
			want: tableWant{lineTerm: "\r\n", rows: 2, cols: []nii.Column{{Name: "a", Type: "integer"}, stringCol("b")}},
		},
		{
			name: "header only",
			in:   "a,b,c\n",
			want: tableWant{rows: 0, cols: []nii.Column{stringCol("a"), stringCol("b"), stringCol("c")}},
		},
		{
			name: "header only no newline",
			in:   "a,b,c",
			want: tableWant{rows: 0, cols: []nii.Column{stringCol("a"), stringCol("b"), stringCol("c")}},
		},
		{
			name: "quoted newlines commas and quotes",
			in: "id,text,n\n" +
				"1,\"line one\nline two\",5\n" +
				"2,\"a, b, c\",6\n" +
				"3,\"she said \"\"hi\"\"\",7\n" +
				"4,\"\r\n\n\",8\n" + // only white space: a null
				"5,plain,9\n",
			want: tableWant{rows: 5, skipSpace: true, cols: []nii.Column{{Name: "id", Type: "integer"}, {Name: "text", Type: "string", Nulls: 1}, {Name: "n", Type: "integer"}}},
		},
		{
			name: "blank lines and blank records",
			in:   "a,b\n\n1,2\n,\n\r\n3,4\n,,\n",
			// ",," has more fields than the header but is blank: not a row,
			// nor ragged.
			want: tableWant{rows: 2, cols: []nii.Column{{Name: "a", Type: "integer"}, {Name: "b", Type: "integer"}}},
		},
		{
			name: "preamble of three lines",
			in: "Spend over £500 report,,,\n" +
				"Parameters: June 2012,,,\n" +
				",,,\n" +
				"Date,Supplier,Amount,Ref\n" +
				"01/06/2012,Acme Ltd,100.50,A1\n" +
				"02/06/2012,Bravo plc,\"1,200.00\",B2\n" +
				",,,\n",
			want: tableWant{headerRow: 4, rows: 2, cols: []nii.Column{
				{Name: "Date", Type: "date", Format: "%d/%m/%Y"}, stringCol("Supplier"), {Name: "Amount", Type: "number", GroupChar: ","}, stringCol("Ref")}},
		},
		{
			name: "preamble parameters line with values",
			in: "Council spend,,,,\n" +
				"From,01/06/2012,To,30/06/2012,\n" +
				"Run by,J Smith,,,\n" +
				"Date,Supplier,Amount,Ref,Note\n" +
				"01/06/2012,Acme Ltd,100.50,A1,x\n" +
				"02/06/2012,Bravo plc,200,B2,y\n" +
				"03/06/2012,Charlie,300,C3,z\n",
			want: tableWant{headerRow: 4, rows: 3, cols: []nii.Column{
				{Name: "Date", Type: "date", Format: "%d/%m/%Y"}, stringCol("Supplier"), {Name: "Amount", Type: "number"}, stringCol("Ref"), stringCol("Note")}},
		},
		{
			name: "blank columns kept and named, labels untrimmed",
			in: " Name ,,Amount ,,,\n" +
				"a,x,1,,,\n" +
				"b,y,2,,,\n",
			want: tableWant{rows: 2, skipSpace: true, cols: []nii.Column{labelled(stringCol("Name"), "Name "), labelled(stringCol("column_2"), ""),
				labelled(nii.Column{Name: "Amount", Type: "integer"}, "Amount "),
				labelled(nii.Column{Name: "column_4", Type: "string", Nulls: 2}, ""), labelled(nii.Column{Name: "column_5", Type: "string", Nulls: 2}, ""),
				labelled(nii.Column{Name: "column_6", Type: "string", Nulls: 2}, "")}},
		},
		{
			name: "trailing blank header with data kept",
			in:   "a,b,\n1,2,3\n4,5,\n",
			want: tableWant{rows: 2, cols: []nii.Column{{Name: "a", Type: "integer"}, {Name: "b", Type: "integer"}, labelled(nii.Column{Name: "column_3", Type: "integer", Nulls: 1}, "")}},
		},
		{
			name: "semicolon with decimal commas",
			in:   "Name;Amount;Date\nA;1,50;2024-01-31\nB;2,75;2024-02-29\nC;3,00;2023-12-01\n",
			want: tableWant{delim: ";", rows: 3, cols: []nii.Column{stringCol("Name"), stringCol("Amount"), {Name: "Date", Type: "date"}}},
		},
		{
			name: "tab separated",
			in:   "name\tcount\tnote\nx\t1\ta, b\ny\t2\tc, d, e\nz\t3\tf\n",
			want: tableWant{delim: "\t", rows: 3, cols: []nii.Column{stringCol("name"), {Name: "count", Type: "integer"}, stringCol("note")}},
		},
		{
			name: "pipe separated",
			in:   "a|b\n1|2\n3|4\n",
			want: tableWant{delim: "|", rows: 2, cols: []nii.Column{{Name: "a", Type: "integer"}, {Name: "b", Type: "integer"}}},
		},
		{
			name: "types",
			in: "int,num,bool,year,dt,iso,dmy,dmy2,dmony,dmy-,neg,code,mixed\n" +
				"1,1.5,true,2012,2012-06-01T10:30:00Z,2012-06-01,01/06/2012,01/06/12,01-JUN-2012,01-06-2012,(28.00),007,x\n" +
				"-20,2,No,1999,2012-06-01 10:30,2012-06-30,30/06/2012,30/06/12,30-jun-2012,30-06-2012,£5.00,010,1\n" +
				"300,-3e2,YES,2100,2012-06-01T10:30:00.5+01:00,2000-02-29,29/02/2000,29/02/00,29-Feb-2000,29-02-2000,-£1,099,2\n",
			want: tableWant{rows: 3, cols: []nii.Column{
				{Name: "int", Type: "integer"},
				{Name: "num", Type: "number"},
				{Name: "bool", Type: "boolean"},
				{Name: "year", Type: "year"},
				stringCol("dt"), // three datetime formats: no one format reads them all
				{Name: "iso", Type: "date"},
				{Name: "dmy", Type: "date", Format: "%d/%m/%Y"},
				{Name: "dmy2", Type: "date", Format: "%d/%m/%y"},
				{Name: "dmony", Type: "date", Format: "%d-%b-%Y"},
				{Name: "dmy-", Type: "date", Format: "%d-%m-%Y"},
				{Name: "neg", Type: "string", Note: AmountNote}, // (28.00), -£1: no Table Schema number reads them
				stringCol("code"),                               // leading zeros: codes, not numbers
				stringCol("mixed"),                              // one text value in three
			}},
		},
		{
			name: "money",
			in: "Supplier,Amount,Paid\n" +
				"a,\"(28,784,540.00)\",£500\n" +
				"b,\"1,100.00\",\"£1,234.56\"\n" +
				"c,-5,£-3\n" +
				"d,\" 12.5 \",(£7.00)\n",
			want: tableWant{rows: 4, skipSpace: true, cols: []nii.Column{stringCol("Supplier"), {Name: "Amount", Type: "string", Note: AmountNote}, {Name: "Paid", Type: "string", Note: AmountNote}}},
		},
		{
			name: "money readable as numbers",
			in: "Supplier,Amount,Paid,Net\n" +
				"a,\"1,100.00\",£500,609.99 \n" +
				"b,-5,\"£1,234.56\",12\n" +
				"c,7.5,3.00,-1.5\n",
			// Amount: groupChar; Paid: £ on unsigned values, bareNumber
			// false; Net: a trailing space is fine for a number.
			want: tableWant{rows: 3, cols: []nii.Column{stringCol("Supplier"), {Name: "Amount", Type: "number", GroupChar: ","},
				{Name: "Paid", Type: "number", GroupChar: ",", Currency: true}, {Name: "Net", Type: "number"}}},
		},
		{
			name: "nulls do not vote; one contradiction widens",
			in: "n,m,e,w\n" +
				"1,1,, \n2,2,,\n3,3,,1\n4,4,,2\n5,5,,3\n6,6,,4\n7,7,,5\n8,8,,6\n9,9.5,,7\n,x,,8\n",
			// n: 9 integers and a null; m: 8 integers, 1 number, 1 text:
			// a string; w: a white-space cell is a null.
			want: tableWant{rows: 10, skipSpace: true, cols: []nii.Column{
				{Name: "n", Type: "integer", Nulls: 1}, stringCol("m"), {Name: "e", Type: "string", Nulls: 10}, {Name: "w", Type: "integer", Nulls: 2}}},
		},
		{
			name: "ragged rows",
			in:   "a,b,c\n1,2,3\n4,5\n6,7,8,9\n",
			want: tableWant{rows: 3, ragged: 2, cols: []nii.Column{{Name: "a", Type: "integer"}, {Name: "b", Type: "integer"}, {Name: "c", Type: "integer", Nulls: 1}}},
		},
		{
			name: "datetimes uk",
			in:   "when,at\n01/06/2012 10:30:00,01/06/2012 10:30\n30/06/2012 23:59:59,30/06/2012 00:00\n",
			want: tableWant{rows: 2, cols: []nii.Column{
				{Name: "when", Type: "datetime", Format: "%d/%m/%Y %H:%M:%S"}, {Name: "at", Type: "datetime", Format: "%d/%m/%Y %H:%M"}}},
		},
		{
			name: "windows-1252",
			in:   "Supplier,Cost \xa3,Caf\xe9\n\x93Smith\x94 & Sons,\xa3500,\xe9t\xe9\nB,\xa31\xa0,x\n",
			want: tableWant{encoding: "windows-1252", rows: 2, cols: []nii.Column{
				stringCol("Supplier"), stringCol("Cost £"), stringCol("Café")}}, // "£1" then a no-break space: not a number
		},
		{
			name: "windows-1252 preamble",
			in:   "R\xe9sum\xe9 \x96 June,,\n,,\nA,B,C\n1,2,3\n",
			want: tableWant{encoding: "windows-1252", headerRow: 3, rows: 1, cols: []nii.Column{
				{Name: "A", Type: "integer"}, {Name: "B", Type: "integer"}, {Name: "C", Type: "integer"}}},
		},
		{
			name: "bare quotes are data",
			in:   "a,b\n5\" pipe,1\nx \"y\",2\n\"q\"z,3\n",
			// The last record opens a quoted field whose `"z` is a bare
			// quote, so it runs to the end: one field, "q\"z,3\n".
			want: tableWant{rows: 3, ragged: 1, cols: []nii.Column{stringCol("a"), {Name: "b", Type: "integer", Nulls: 1}}},
		},
		{
			name: "unterminated quote runs to the end",
			in:   "a,b\n1,\"open\n2,3\n4,5\n",
			want: tableWant{rows: 1, cols: []nii.Column{{Name: "a", Type: "integer"}, stringCol("b")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantT := tt.want.table()
			got, err := profileBytes(t, []byte(tt.in))
			if err != nil {
				t.Fatalf("Result: %v", err)
			}
			if !reflect.DeepEqual(got, wantT) {
				t.Errorf("got  %+v\nwant %+v", got, wantT)
			}
			for seed := range uint64(3) {
				pieces, err := profilePieces(t, NewProfiler(), []byte(tt.in), seed)
				if err != nil || !reflect.DeepEqual(pieces, got) {
					t.Errorf("in pieces (seed %d): %+v, %v\nwant %+v", seed, pieces, err, got)
				}
			}
			for _, c := range got.Columns {
				if !utf8.ValidString(c.Name) {
					t.Errorf("column name %q is not UTF-8", c.Name)
				}
			}
		})
	}
}

func TestProfileTableErrors(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10")
	tests := []struct {
		name string
		in   []byte
		want string // substring of the error
	}{
		{"empty", nil, "empty file"},
		{"bom only", []byte("\ufeff"), "empty file"},
		{"binary", png, "not a CSV table: binary"},
		{"nul in text", []byte("a,b\n1,\x002\n"), "not a CSV table: binary"},
		{"pdf", []byte("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\n"), "not a CSV table: content looks like application/pdf"},
		{"one column", []byte("name\nalice\nbob\n"), "not a CSV table: no row has two or more fields"},
		{"newlines only", []byte("\n\r\n\n"), "not a CSV table"},
		{"blank records only", []byte(",,,\n,,,\n"), "not a CSV table: no row has two or more fields"},
		{"one cell a row", []byte("title,\n,x\nabc,\n"), "not a CSV table: no header row found"},
		{"too many fields", []byte(strings.Repeat("a,", maxRowFields) + "a\n"), "not a CSV table: a row has more than 65536 fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, err := profileBytes(t, tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Result = %+v, %v; want error containing %q", tb, err, tt.want)
			}
			kind := ErrNotTable
			if strings.HasPrefix(tt.want, "empty") {
				kind = ErrEmpty
			}
			if !errors.Is(err, kind) {
				t.Errorf("error %q does not match %q", err, kind)
			}
			if tt.name == "empty" && err.Error() != "empty file" {
				t.Errorf("error %q, want exactly %q", err, "empty file")
			}
			// And the same when streamed in pieces.
			_, err2 := profilePieces(t, NewProfiler(), tt.in, 7)
			if err2 == nil || err2.Error() != err.Error() {
				t.Errorf("in pieces: %v; want %v", err2, err)
			}
		})
	}

	// A read error is reported as such.
	_, err := Profile(io.MultiReader(strings.NewReader("a,b\n"), errReader{}))
	if err == nil || !strings.Contains(err.Error(), "reading table: boom") {
		t.Errorf("Profile with failing reader: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

// TestResultIdempotent checks Result can be called again, and returns
// copies the caller may change.
func TestResultIdempotent(t *testing.T) {
	p := NewProfiler()
	fmt.Fprint(p, "a,b\n1,2\n")
	t1, err := p.Result()
	if err != nil {
		t.Fatal(err)
	}
	t1.Columns[0].Name = "changed"
	t2, err := p.Result()
	if err != nil || t2.Columns[0].Name != "a" || t2.Rows != 1 {
		t.Errorf("second Result = %+v, %v", t2, err)
	}
	p.Write([]byte("3,4\n")) // ignored after Result
	if t3, _ := p.Result(); t3.Rows != 1 {
		t.Errorf("Rows after late Write = %d, want 1", t3.Rows)
	}
}

// bigCSV generates a CSV of about size bytes with a header and n rows, and
// returns it with its row count. Every seventh row is quoted with a comma
// inside, every 1000th is followed by a blank record, and the last row has
// no newline.
func bigCSV(size int, crlf bool) ([]byte, int64) {
	nl := "\n"
	if crlf {
		nl = "\r\n"
	}
	var b bytes.Buffer
	b.WriteString("Body,Date,Transaction number,Amount,Supplier,Description" + nl)
	var rows int64
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteString(nl)
			if i%1000 == 0 {
				b.WriteString(",,,,," + nl)
			}
		}
		if i%7 == 0 {
			fmt.Fprintf(&b, "Trafford,%02d/09/2014,%d,\"%d,%03d.%02d\",\"SUPPLIER %d, LTD\",\"Line one\nline \"\"two\"\"\"", 1+i%28, 1901095785+i, 1+i%97, i%1000, i%100, i%300)
		} else {
			fmt.Fprintf(&b, "Trafford,%02d/09/2014,%d,%d.%02d,SUPPLIER %d LTD,CLIENTS PERS NEEDS", 1+i%28, 1901095785+i, i%5000, i%100, i%300)
		}
		rows++
	}
	return b.Bytes(), rows
}

// TestProfileLarge checks that rows past the 10,000-row sample are counted
// and typed exactly, however the input is split.
func TestProfileLarge(t *testing.T) {
	for _, crlf := range []bool{false, true} {
		data, rows := bigCSV(6<<20, crlf)
		want := &nii.Table{
			Encoding: "utf-8", Delimiter: ",", LineTerminator: "\n", HeaderRow: 1, Rows: rows, SampledRows: rows,
			Columns: []nii.Column{
				stringCol("Body"), {Name: "Date", Type: "date", Format: "%d/%m/%Y"}, {Name: "Transaction number", Type: "integer"},
				{Name: "Amount", Type: "number", GroupChar: ","}, stringCol("Supplier"), stringCol("Description"),
			},
		}
		if crlf {
			want.LineTerminator = "\r\n"
		}
		for _, chunk := range []int{1 << 20, 4093, 64 << 10} {
			p := NewProfiler()
			for b := data; len(b) > 0; {
				n := min(chunk, len(b))
				p.Write(b[:n])
				b = b[n:]
			}
			got, err := p.Result()
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("crlf=%v chunk %d: %+v, %v\nwant %+v", crlf, chunk, got, err, want)
			}
		}
	}
}

// TestProfileSampleByteLimit checks a sample cut by the byte limit, in the
// middle of a quoted field spanning lines, still counts exactly.
func TestProfileSampleByteLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("id,text\n")
	for i := range 500 {
		fmt.Fprintf(&b, "%d,\"%s\n%s\"\n", i, strings.Repeat("x", i%50), strings.Repeat("y,", i%20))
	}
	data := []byte(b.String())
	for _, maxBytes := range []int{64, 100, 1000, 4096, len(data) - 1} {
		got, err := profilePieces(t, newProfiler(sampleRows, sampleLines, maxBytes), data, uint64(maxBytes))
		if err != nil || got.Rows != 500 || got.HeaderRow != 1 || len(got.Columns) != 2 {
			t.Errorf("maxBytes %d: %+v, %v", maxBytes, got, err)
		}
	}
}

// csvRows counts the non-blank records encoding/csv reads from b.
func csvRows(b []byte, delim byte) int64 {
	r := newCSVReader(b, delim)
	var n int64
	for {
		rec, err := r.Read()
		if err != nil {
			return n
		}
		if !isBlank(rec) {
			n++
		}
	}
}

// scanRows counts rows with the scanner, feeding b in pieces of 1..maxPiece
// bytes.
func scanRows(b []byte, delim byte, rng *rand.Rand, maxPiece int) int64 {
	s := csvScanner{delim: delim}
	for len(b) > 0 {
		n := min(len(b), 1+rng.IntN(maxPiece))
		s.scan(b[:n])
		b = b[n:]
	}
	s.finish()
	return s.rows
}

// TestScannerMatchesEncodingCSV checks the counting scanner against
// encoding/csv on tricky snippets and random inputs, split at random.
func TestScannerMatchesEncodingCSV(t *testing.T) {
	snippets := []string{
		"", "\n", "\r", "\r\n", "a", "a\r", "a\r\r", "\"", "\"\"", "\"\r", "\"a\"\r", "a,\r", ",\r",
		"a,b\n\n,\n\r\n", "\"a\"\"b\",c\n", "\"a\"b,c\n\"x\ny\"\n", "a\"b\nc", "\"a\r\nb\"\r\n",
		"\"\"\"\n", "\"a\"\rb\"\n", "x,\"\"\n,,\"\"\n", "\"a\",\"\"\r\n\r\n", "a\rb\n", "\r\r\n", "\",\n",
		",\"", "\"\r\r\n\"\n", "a,\"b\nc\"d\"e\nf\",g\nh\n",
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab,;\"\r\n\t|")
	for range 20000 {
		n := rng.IntN(40)
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		snippets = append(snippets, string(b))
	}
	for _, s := range snippets {
		for _, d := range []byte{',', ';', '\t', '|'} {
			want := csvRows([]byte(s), d)
			for _, maxPiece := range []int{1, 3, 64} {
				if got := scanRows([]byte(s), d, rng, maxPiece); got != want {
					t.Fatalf("scanner rows(%q, %q, pieces ≤ %d) = %d, encoding/csv says %d", s, d, maxPiece, got, want)
				}
			}
		}
	}
}

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in           string
		num, integer bool
	}{
		{"0", true, true}, {"42", true, true}, {"-7", true, true}, {"+7", true, true},
		{"9223372036854775807", true, true}, {"9223372036854775808", true, false}, {"-9223372036854775808", true, true},
		{"1.5", true, false}, {".5", true, false}, {"-0.25", true, false}, {"1e3", true, false}, {"2.5E-3", true, false},
		{"1,100.00", true, false}, {"1,234,567", true, false}, {"(28,784,540.00)", true, false}, {"(5)", true, false},
		{"£500", true, false}, {"£1,234.56", true, false}, {"-£5", true, false}, {"£-5", true, false}, {"£ 5", true, false},
		{"(£7.00)", true, false},
		{"", false, false}, {"-", false, false}, {".", false, false}, {"£", false, false}, {"1,10", false, false},
		{"1,0000", false, false}, {"12,34", false, false}, {"1234,567", false, false}, {"007", false, false},
		{"0,123", false, false}, {"1e", false, false}, {"1.2.3", false, false}, {"(-5)", false, false},
		{"(28", false, false}, {"abc", false, false}, {"NaN", false, false}, {"1 000", false, false}, {"--1", false, false},
	}
	for _, tt := range tests {
		num, integer := parseNumber(tt.in)
		if num != tt.num || integer != tt.integer {
			t.Errorf("parseNumber(%q) = %v, %v; want %v, %v", tt.in, num, integer, tt.num, tt.integer)
		}
	}
}

func TestParseDateOrTime(t *testing.T) {
	tests := []struct {
		in   string
		kind valueKind
		ok   bool
	}{
		{"2012-06-01", kDateISO, true}, {"2000-02-29", kDateISO, true}, {"1900-02-29", 0, false}, {"2012-13-01", 0, false},
		{"2012-6-1", 0, false},
		{"01/06/2012", kDateDMY, true}, {"1/6/2012", kDateDMY, true}, {"31/04/2012", 0, false}, {"25/06/2012900", 0, false},
		{"01/06/12", kDateDMYShort, true}, {"29/02/00", kDateDMYShort, true}, {"29/02/01", 0, false},
		{"01-JUN-2012", kDateDMonY, true}, {"1-jun-2012", kDateDMonY, true}, {"01-Jun-12", kDateDMonYShort, true},
		{"01-JUNE-2012", 0, false}, {"01-XYZ-2012", 0, false},
		{"01-06-2012", kDateDashDMY, true}, {"01-06-12", 0, false},
		{"2012-06-01T10:30:00Z", kDatetimeISO, true}, {"2012-06-01T10:30:00+01:00", kDatetimeISO, true},
		{"2012-06-01 10:30", kDatetimeISO, true}, {"2012-06-01T10:30:00.123456-0500", kDatetimeISO, true},
		{"2012-06-01T24:00:00", 0, false}, {"2012-06-01T10", 0, false}, {"2012-06-01X10:30", 0, false},
		{"2012-06-01T10:30Z0", 0, false},
		{"01/06/2012 10:30:00", kDatetimeDMYHMS, true}, {"01/06/2012 10:30", kDatetimeDMYHM, true},
		{"01/06/12 10:30", 0, false}, {"01/06/2012 10", 0, false},
		{"2012", 0, false}, {"June 2012", 0, false}, {"", 0, false},
	}
	for _, tt := range tests {
		k, ok := parseDateOrTime(tt.in)
		if ok != tt.ok || (ok && k != tt.kind) {
			t.Errorf("parseDateOrTime(%q) = %v, %v; want %v, %v", tt.in, k, ok, tt.kind, tt.ok)
		}
	}
}

func TestDecodeWindows1252(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                "plain",
		"\xa3500":              "£500",
		"caf\xe9":              "café",
		"\x80\x93x\x94":        "€“x”",
		"\x81\x8d\x8f\x90\x9d": "\u0081\u008d\u008f\u0090\u009d",
	} {
		if got := decodeWindows1252(in); got != want {
			t.Errorf("decodeWindows1252(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestProfileManyColumns checks columns past nii.MaxColumns are dropped.
func TestProfileManyColumns(t *testing.T) {
	var b strings.Builder
	for j := range nii.MaxColumns + 50 {
		if j > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "c%d", j+1)
	}
	b.WriteString("\n")
	for i := range 3 {
		for j := range nii.MaxColumns + 50 {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprint(&b, i*j)
		}
		b.WriteString("\n")
	}
	tb, err := profileBytes(t, []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(tb.Columns) != nii.MaxColumns || tb.Columns[nii.MaxColumns-1].Name != fmt.Sprintf("c%d", nii.MaxColumns) || tb.Rows != 3 {
		t.Errorf("got %d columns (last %q), %d rows; want %d, 3 rows", len(tb.Columns), tb.Columns[len(tb.Columns)-1].Name, tb.Rows, nii.MaxColumns)
	}
	if err := (&nii.Metadata{Table: tb}).Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
