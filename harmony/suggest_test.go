package harmony

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

// suggestCorrect records, per shared file, the standard fields Suggest maps
// to the same column as the hand-written mapping in testdata. A change in
// the suggester shows here.
var suggestCorrect = map[string][]string{
	"cabinet-office": {"amount", "body_name", "date", "expense_area", "expense_type", "supplier_name", "transaction_number"},
	"darlington":     {"amount", "date", "expense_type", "supplier_name", "transaction_number"},
	"gateshead":      {"amount"},
	"lambeth":        {"amount", "date", "expense_area", "expense_type", "supplier_name"},
	"leeds":          {"amount", "body", "body_name", "capital_revenue", "date", "expense_code", "supplier_name", "transaction_number"},
	"manchester":     {"amount", "body_name", "date", "expense_area", "expense_type", "supplier_name", "transaction_number"},
	"network-rail":   {"amount", "date", "procurement_category", "supplier_name"},
	"trafford":       {"amount", "body", "body_name", "date", "description", "expense_area", "expense_code", "expense_type", "supplier_id", "supplier_name", "transaction_number", "vat_registration"},
}

// suggestNoEdits are the shared files whose suggested mapping is usable as
// it is: it binds to the standard and check accepts every row.
var suggestNoEdits = []string{"cabinet-office", "manchester", "trafford"}

func TestSuggestSharedFiles(t *testing.T) {
	dir := sharedDir(t)
	std := lgaStandard(t)
	var noEdits, noEditsWithName []string
	for _, name := range sharedFiles {
		b, err := os.ReadFile(filepath.Join(dir, name+".csv"))
		if err != nil {
			t.Fatal(err)
		}
		sug, err := Suggest(bytes.NewReader(b), std, SuggestOptions{Dataset: fileSource(t, dir, name, 1, nil).Dataset})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		hand := loadMapping(t, name)
		var correct, wrong []string
		for _, fs := range sug.Fields {
			hm := hand.Fields[fs.Field]
			if hm != nil && len(hm.From) > 0 && headerKey(hm.From[0]) == headerKey(fs.Column) {
				correct = append(correct, fs.Field)
			} else {
				wrong = append(wrong, fs.Field+"←"+fs.Column)
			}
		}
		sort.Strings(correct)
		if want := suggestCorrect[name]; !reflect.DeepEqual(correct, want) {
			t.Errorf("%s: suggest maps %q correctly, recorded %q", name, correct, want)
		}
		usable := false
		if sug.Mapping.Bind(std) == nil {
			rep, err := Check(context.Background(), bytes.NewReader(b), std, sug.Mapping)
			usable = err == nil && rep.Rejected == 0
		}
		if usable {
			noEdits = append(noEdits, name)
		}
		// with the publisher's name for body_name, as the node can give it
		withName, err := Suggest(bytes.NewReader(b), std, SuggestOptions{Dataset: fileSource(t, dir, name, 1, nil).Dataset,
			Defaults: map[string]string{"body_name": name}})
		if err != nil {
			t.Fatal(err)
		}
		if withName.Mapping.Bind(std) == nil {
			if rep, err := Check(context.Background(), bytes.NewReader(b), std, withName.Mapping); err == nil && rep.Rejected == 0 {
				noEditsWithName = append(noEditsWithName, name)
			}
		}
		t.Logf("%s: correct %d %v; not as the hand mapping %v; unmapped %v; unused %v; usable as is: %v", name, len(correct), correct, wrong, sug.Unmapped, sug.Unused, usable)
	}
	if want := []string{"cabinet-office", "darlington", "manchester", "trafford"}; !reflect.DeepEqual(noEditsWithName, want) {
		t.Errorf("files usable without edits given body_name: %v, recorded %v", noEditsWithName, want)
	}
	if !reflect.DeepEqual(noEdits, suggestNoEdits) {
		t.Errorf("files usable without edits: %v, recorded %v", noEdits, suggestNoEdits)
	}
}
