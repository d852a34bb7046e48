package harmony

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nii-uk/nii"
)

const testMappingHead = "standard = \"lga/spend-over-500@1\"\napplies_to = [\"test/spend\"]\n"

func mustMapping(t *testing.T, body string) *Mapping {
	t.Helper()
	m, err := ParseMapping([]byte(testMappingHead + body))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func check(t *testing.T, csv string, m *Mapping) *Report {
	t.Helper()
	rep, err := Check(context.Background(), strings.NewReader(csv), lgaStandard(t), m)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted+rep.Rejected != rep.DataRows {
		t.Fatalf("accepted %d + rejected %d != %d", rep.Accepted, rep.Rejected, rep.DataRows)
	}
	return rep
}

const basicFields = `
[fields.body_name]
const = "Test Council"
[fields.supplier_name]
from = ["Supplier", "Supplier Name"]
[fields.date]
from = "Date"
date = "dd/mm/yyyy"
[fields.amount]
from = "Amount"
number = "money"
`

func TestCheckMissingTokensAndMoney(t *testing.T) {
	m := mustMapping(t, "[source]\nmissing = [\"N/A\", \"#N/A\", \"-\"]\n"+basicFields+"[fields.supplier_id]\nfrom = \"Supplier ID\"\n")
	rep := check(t, "Supplier,Date,Amount,Supplier ID\r\n"+
		"Acme,01/06/2012,\"£1,234.50 \",N/A\r\n"+
		"Acme,02/06/2012,(28.50),#n/a\r\n"+
		"Acme,03/06/2012,12.00-,-\r\n"+
		"Acme,04/06/2012,-,123\r\n"+ // amount missing: required
		"N/A,05/06/2012,1.00,123\r\n", // supplier missing: required
		m)
	if rep.Accepted != 3 || rep.Rejected != 2 {
		t.Fatalf("report %+v", rep)
	}
	got := map[string]int64{}
	for _, f := range rep.Failures {
		got[f.Rule+"/"+f.Field] = f.Rows
	}
	if got["required/amount"] != 1 || got["required/supplier_name"] != 1 {
		t.Errorf("failures %v", got)
	}
}

func TestCheckWindows1252(t *testing.T) {
	file := "Supplier,Date,Amount\nCaf\xe9 Ltd,01/06/2012,\xa3500.00\n"
	rep := check(t, file, mustMapping(t, "[source]\nencoding = \"windows-1252\"\n"+basicFields))
	if rep.Accepted != 1 {
		t.Fatalf("windows-1252: %+v", rep)
	}
	rep = check(t, file, mustMapping(t, basicFields))
	if rep.Rejected != 1 || rep.Failures[0].Rule != RuleEncoding || !strings.Contains(rep.Failures[0].Examples[0], "windows-1252") {
		t.Fatalf("utf-8 mapping on a windows-1252 file: %+v", rep)
	}
}

func TestCheckPreambleAndFooter(t *testing.T) {
	file := "Payments report\n,,\nRun: 02/07/2012,,\nSupplier,Date,Amount\nA,01/06/2012,1.00\n,,\nB,02/06/2012,2.00\nGrand Total,,3.00\n,,(c) Someone\n"
	m := mustMapping(t, "[source]\nfooter = { column = \"Supplier\", match = '^Grand Total' }\n"+basicFields)
	rep := check(t, file, m)
	if rep.HeaderRecord != 4 || rep.HeaderLine != 4 || rep.Preamble != 3 || rep.Accepted != 2 || rep.Footer != 2 || rep.Blank != 1 {
		t.Fatalf("report %+v", rep)
	}
	m = mustMapping(t, "[source]\nheader_row = 4\n"+basicFields)
	if rep := check(t, file, m); rep.HeaderRecord != 4 || rep.Rejected != 2 {
		t.Fatalf("without a footer, the total and copyright lines are rejects: %+v", rep)
	}
}

func TestCheckMissingHeader(t *testing.T) {
	m := mustMapping(t, strings.Replace(basicFields, `from = "Amount"`, `from = "Nett Amount"`, 1))
	_, err := Check(context.Background(), strings.NewReader("Supplier,Date,Net Amt\nA,01/06/2012,1\n"), lgaStandard(t), m)
	var he *HeaderError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v, want a HeaderError", err)
	}
	if he.Field != "amount" || he.Nearest != "Net Amt" || len(he.Headers) != 3 {
		t.Errorf("header error %+v", he)
	}
	for _, want := range []string{`"Nett Amount"`, `"Supplier", "Date", "Net Amt"`, `nearest match "Net Amt"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	m = mustMapping(t, "[source]\nheader_row = 1\n"+strings.Replace(basicFields, `from = "Amount"`, `from = "Nett Amount"`, 1))
	if _, err := Check(context.Background(), strings.NewReader("Supplier,Date,Net Amt\n"), lgaStandard(t), m); !errors.As(err, &he) || he.Record != 1 {
		t.Errorf("with header_row: %v", err)
	}
}

// TestCheckWrongDateFormat maps Manchester's ISO dates as dd/mm/yyyy: every
// row is rejected with a reason and a line, and the report warns.
func TestCheckWrongDateFormat(t *testing.T) {
	dir := sharedDir(t)
	b, err := os.ReadFile(filepath.Join("testdata", "mappings", "manchester.map.toml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMapping([]byte(strings.Replace(string(b), `date = "iso"`, `date = "dd/mm/yyyy"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "manchester.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := Check(context.Background(), f, lgaStandard(t), m)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rejected != rep.DataRows || rep.DataRows != 2000 {
		t.Fatalf("rejected %d of %d", rep.Rejected, rep.DataRows)
	}
	fc := rep.Failures[0]
	if fc.Rule != RuleType || fc.Field != "date" || len(fc.Lines) == 0 || fc.Lines[0] != 2 || !strings.Contains(fc.Examples[0], `"2022-05-03" does not fit the date format "dd/mm/yyyy"`) {
		t.Errorf("failure %+v", fc)
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "field date: 2000 of 2000 data rows (100%) fail rule type") {
		t.Errorf("warnings %q", rep.Warnings)
	}
}

func TestCheckRepairsAndExpressions(t *testing.T) {
	m := mustMapping(t, `
[[source.repair]]
fields = 6
column = "Date"
split = '^(\d{2}/\d{2}/\d{4})(.+)$'
`+basicFields+`
[fields.transaction_number]
concat = ["Ref", "Seq"]
sep = "/"
[fields.expense_code]
from = "Code"
split = "-"
part = -1
[fields.description]
from = "Code"
capture = '^(?P<v>[A-Z]+)-'
[fields.capital_revenue]
from = "CR"
recode = { r = "Revenue", C = "Capital" }
`)
	rep := check(t, "Supplier,Date,Amount,Ref,Seq,Code,CR\n"+
		"A,01/06/2012,5.00,T1,1,AB-12,R\n"+
		"A,01/06/20125.00,T1,2,AB-13,c\n"+ // fused: repaired
		"A,01/06/2012,5.00,T2,,12,X\n", // capture fails; enum fails
		m)
	if rep.Accepted != 2 || rep.Repaired != 1 || rep.Rejected != 1 {
		t.Fatalf("report %+v", rep)
	}
	rules := map[string]bool{}
	for _, f := range rep.Failures {
		rules[f.Rule+"/"+f.Field] = true
	}
	if !rules["capture/description"] || !rules["enum/capital_revenue"] {
		t.Errorf("failures %+v", rep.Failures)
	}
}

func TestMappingRefused(t *testing.T) {
	for name, body := range map[string]string{
		"no standard":      "applies_to = [\"a/b\"]\n[fields.amount]\nfrom = \"x\"\n",
		"bad ref":          "standard = \"LGA\"\napplies_to = [\"a/b\"]\n[fields.amount]\nfrom = \"x\"\n",
		"no applies_to":    "standard = \"lga/spend-over-500@1\"\n[fields.amount]\nfrom = \"x\"\n",
		"bad pattern":      "standard = \"lga/s@1\"\napplies_to = [\"nope\"]\n[fields.amount]\nfrom = \"x\"\n",
		"no fields":        testMappingHead,
		"unknown key":      testMappingHead + "[fields.amount]\nfrom = \"x\"\nnumbr = \"money\"\n",
		"two sources":      testMappingHead + "[fields.amount]\nfrom = \"x\"\nconst = \"1\"\n",
		"no source":        testMappingHead + "[fields.amount]\nnumber = \"money\"\n",
		"bad regexp":       testMappingHead + "[fields.amount]\nfrom = \"x\"\ncapture = \"(\"\n",
		"capture no group": testMappingHead + "[fields.amount]\nfrom = \"x\"\ncapture = \"a\"\n",
		"bad date":         testMappingHead + "[fields.date]\nfrom = \"x\"\ndate = \"dd/qq/yyyy\"\n",
		"yy no pivot":      testMappingHead + "[fields.date]\nfrom = \"x\"\ndate = \"dd/mm/yy\"\n",
		"bad number":       testMappingHead + "[fields.amount]\nfrom = \"x\"\nnumber = \"euro\"\n",
		"bad encoding":     testMappingHead + "[source]\nencoding = \"latin-9\"\n[fields.amount]\nfrom = \"x\"\n",
		"bad delimiter":    testMappingHead + "[source]\ndelimiter = \";;\"\n[fields.amount]\nfrom = \"x\"\n",
		"repair no groups": testMappingHead + "[[source.repair]]\nfields = 5\ncolumn = \"x\"\nsplit = \"(a)\"\n[fields.amount]\nfrom = \"x\"\n",
		"split no part":    testMappingHead + "[fields.amount]\nfrom = \"x\"\nsplit = \"-\"\n",
		"toml syntax":      testMappingHead + "[fields.amount\n",
	} {
		if _, err := ParseMapping([]byte(body)); err == nil || !errors.Is(err, nii.ErrInvalid) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	std := lgaStandard(t)
	for name, body := range map[string]string{
		"unknown field":    basicFields + "[fields.suplier_id]\nfrom = \"x\"\n",
		"date on a string": basicFields + "[fields.supplier_id]\nfrom = \"x\"\ndate = \"iso\"\n",
		"required missing": "[fields.amount]\nfrom = \"x\"\n",
		"required opt":     strings.Replace(basicFields, "number = \"money\"", "number = \"money\"\noptional = true", 1),
	} {
		m := mustMapping(t, body)
		if err := m.Bind(std); err == nil {
			t.Errorf("%s: bound", name)
		}
	}
	other := mustMapping(t, basicFields)
	other.Standard.Version = 2
	if err := other.Bind(std); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("version mismatch: %v", err)
	}
}

func TestMappingHash(t *testing.T) {
	a := mustMapping(t, basicFields)
	b := mustMapping(t, "# a comment\n"+strings.ReplaceAll(basicFields, "\n", "\n\n"))
	if a.Hash != b.Hash || a.Hash.IsZero() {
		t.Errorf("comments and blank lines change the hash: %s %s", a.Hash, b.Hash)
	}
	c := mustMapping(t, strings.Replace(basicFields, "money", "plain", 1))
	if c.Hash == a.Hash {
		t.Error("a different coercion has the same hash")
	}
	if a.Hash != nii.HashOf(a.Canonical()) {
		t.Error("hash is not the canonical form's")
	}
}

func TestStandardRefused(t *testing.T) {
	for name, js := range map[string]string{
		"not json":         `nope`,
		"array":            `[]`,
		"no fields":        `{"name":"x"}`,
		"empty fields":     `{"fields":[]}`,
		"nameless":         `{"fields":[{"type":"string"}]}`,
		"duplicate":        `{"fields":[{"name":"a"},{"name":"a"}]}`,
		"bad type":         `{"fields":[{"name":"a","type":"money"}]}`,
		"bad format":       `{"fields":[{"name":"a","type":"string","format":"phone"}]}`,
		"number format":    `{"fields":[{"name":"a","type":"number","format":"money"}]}`,
		"unknown constr":   `{"fields":[{"name":"a","constraints":{"requird":true}}]}`,
		"required string":  `{"fields":[{"name":"a","constraints":{"required":"yes"}}]}`,
		"min on string":    `{"fields":[{"name":"a","type":"string","constraints":{"minimum":1}}]}`,
		"min above max":    `{"fields":[{"name":"a","type":"number","constraints":{"minimum":5,"maximum":1}}]}`,
		"bad minimum":      `{"fields":[{"name":"a","type":"date","constraints":{"minimum":"yesterday"}}]}`,
		"bad pattern":      `{"fields":[{"name":"a","constraints":{"pattern":"("}}]}`,
		"empty enum":       `{"fields":[{"name":"a","constraints":{"enum":[]}}]}`,
		"enum wrong type":  `{"fields":[{"name":"a","type":"integer","constraints":{"enum":["x"]}}]}`,
		"bad pk":           `{"fields":[{"name":"a"}],"primaryKey":["b"]}`,
		"bad missing":      `{"fields":[{"name":"a"}],"missingValues":"N/A"}`,
		"bad role":         `{"fields":[{"name":"a","nii:role":"colour"}]}`,
		"role type":        `{"fields":[{"name":"a","type":"string","nii:role":"amount"}]}`,
		"two roles":        `{"fields":[{"name":"a","type":"date","nii:role":"date"},{"name":"b","type":"date","nii:role":"date"}]}`,
		"minLength number": `{"fields":[{"name":"a","type":"number","constraints":{"minLength":1}}]}`,
		"negative length":  `{"fields":[{"name":"a","constraints":{"maxLength":-1}}]}`,
		"trailing":         `{"fields":[{"name":"a"}]} {}`,
		"bool values":      `{"fields":[{"name":"a","type":"string","trueValues":["y"]}]}`,
		"fields match":     `{"fields":[{"name":"a"}],"fieldsMatch":"some"}`,
	} {
		_, err := ParseStandard([]byte(js))
		var se *SchemaError
		if !errors.As(err, &se) || !errors.Is(err, nii.ErrInvalid) || !strings.HasPrefix(err.Error(), "not a valid Table Schema") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestStandardsShipped(t *testing.T) {
	for _, name := range []string{LGASpend, CentralSpend} {
		b, err := SampleStandard(name)
		if err != nil {
			t.Fatal(err)
		}
		std, err := ParseStandard(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, role := range []string{RoleDate, RoleAmount, RoleSupplier} {
			if std.fieldWithRole(role) < 0 {
				t.Errorf("%s has no %s field", name, role)
			}
		}
		for _, f := range std.Fields {
			if f.Description == "" || len(fieldAliases(&f)) < 3 {
				t.Errorf("%s.%s: no description listing headings", name, f.Name)
			}
		}
	}
	std := lgaStandard(t)
	if len(std.Fields) != 15 {
		t.Errorf("LGA standard has %d fields", len(std.Fields))
	}
	if _, err := SampleStandard("nope"); err == nil {
		t.Error("unknown sample standard found")
	}
	js := `{"fields":[{"name":"n","type":"integer","constraints":{"minimum":1,"exclusiveMaximum":10,"enum":[1,5,9,12]}},
		{"name":"d","type":"date","constraints":{"minimum":"2020-01-01"}},{"name":"s","constraints":{"pattern":"[A-Z]+","maxLength":3}},
		{"name":"b","type":"boolean","trueValues":["Y"],"falseValues":["N"]}],"primaryKey":"n","missingValues":[{"value":"NA","label":"none"}]}`
	s, err := ParseStandard([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	s.Ref = nii.Ref{Dataset: nii.DatasetID{Org: "t", Name: "s"}}
	m, err := ParseMapping([]byte("standard = \"t/s\"\napplies_to = [\"a/b\"]\n[fields.n]\nfrom = \"n\"\n[fields.d]\nfrom = \"d\"\n[fields.s]\nfrom = \"s\"\n[fields.b]\nfrom = \"b\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Check(context.Background(), strings.NewReader("n,d,s,b\n1,2020-01-01,AB,Y\n12,2020-01-01,AB,N\n5,2019-12-31,AB,N\n9,2020-01-01,ab,N\n5,2020-01-01,ABCD,N\n1,2020-02-02,A,N\nNA,2020-01-01,A,X\n"), s, m)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range rep.Failures {
		got[f.Rule+"/"+f.Field] = true
	}
	for _, want := range []string{"maximum/n", "minimum/d", "pattern/s", "length/s", "primary-key/n", "type/b"} {
		if !got[want] {
			t.Errorf("no %s failure: %+v", want, rep.Failures)
		}
	}
	if rep.Accepted != 1 {
		t.Errorf("accepted %d", rep.Accepted)
	}
}

func TestCheckIndexDefaultAndShortRows(t *testing.T) {
	m := mustMapping(t, "[source]\npad_short_rows = true\n"+basicFields+`
[fields.description]
index = 1
[fields.expense_area]
from = "Area"
default = "Unknown"
optional = true
[fields.vat_registration]
from = "VAT number"
optional = true
`)
	rep := check(t, ",Supplier,Date,Amount,Area\nINSERTED,A,01/06/2012,1.00,Parks\nINSERTED,B,02/06/2012,2.00\n", m)
	if rep.Accepted != 2 {
		t.Fatalf("report %+v", rep)
	}
	strict := mustMapping(t, basicFields)
	rep = check(t, "Supplier,Date,Amount,Area\nA,01/06/2012,1.00,Parks\nB,02/06/2012,2.00\nC,03/06/2012,3.00,Parks,,,\nD,04/06/2012,4.00,Parks,extra\n", strict)
	if rep.Accepted != 2 || rep.Rejected != 2 || rep.Failures[0].Rule != RuleFields || rep.Failures[0].Lines[0] != 3 {
		t.Fatalf("short and long rows: %+v", rep)
	}
}
