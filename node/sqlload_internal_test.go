package node

import (
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/query"
)

// TestDatasetColumnDistrustsItsProfile: a profile is the publisher's
// signed claim, not a fact about the bytes, so a column is loaded with its
// profiled type only where every cell parses; one contrary cell makes it
// text, with a note naming the line.
func TestDatasetColumnDistrustsItsProfile(t *testing.T) {
	cols := datasetColumns(&nii.Table{Columns: []nii.Column{
		{Name: "Ref", Type: "integer"},
		{Name: "Amount", Type: "number"},
		{Name: "Amount"}, // a repeated name gets a suffix
	}})
	if cols[2].name != "Amount_2" {
		t.Errorf("repeated column named %q", cols[2].name)
	}
	for i, v := range []string{"1000", "1001", "n/a", "1003"} {
		cols[0].check(v, i+2)
		cols[1].check([]string{"1,000.50", "£12.25", "(3.10)", "7"}[i], i+2)
	}
	ref, amount := cols[0].decide(), cols[1].decide()
	if ref.Type != query.TypeString {
		t.Errorf("Ref loaded as %v though one cell is not an integer", ref.Type)
	}
	if want := `column "Ref": profiled as integer, but 1 of 4 cells are not (the first at line 4: "n/a"): loaded as text`; cols[0].note != want {
		t.Errorf("note %q, want %q", cols[0].note, want)
	}
	if amount.Type != query.TypeDecimal || amount.Scale != 2 || cols[1].note != "" {
		t.Errorf("Amount: %+v, note %q", amount, cols[1].note)
	}
}
