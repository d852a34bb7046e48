package harmony

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nii-uk/nii/internal/spenddata"

	"github.com/nii-uk/nii"
)

// sharedDir is where the real public spend files are.
func sharedDir(t testing.TB) string { return spenddata.Dir() }

// sharedFiles are the shared spend files, by the name their mapping has.
var sharedFiles = []string{"cabinet-office", "darlington", "gateshead", "lambeth", "leeds", "manchester", "network-rail", "trafford"}

func lgaStandard(t testing.TB) *Standard {
	t.Helper()
	b, err := SampleStandard(LGASpend)
	if err != nil {
		t.Fatal(err)
	}
	std, err := ParseStandard(b)
	if err != nil {
		t.Fatal(err)
	}
	std.Ref = nii.Ref{Dataset: nii.DatasetID{Org: "lga", Name: "spend-over-500"}, Version: 1}
	return std
}

func loadMapping(t testing.TB, name string) *Mapping {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "mappings", name+".map.toml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMapping(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

func TestCheckSharedFiles(t *testing.T) {
	dir := sharedDir(t)
	std := lgaStandard(t)
	for _, name := range sharedFiles {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, name+".csv"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rep, err := Check(context.Background(), f, std, loadMapping(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Accepted+rep.Rejected != rep.DataRows {
				t.Errorf("accepted %d + rejected %d != data rows %d", rep.Accepted, rep.Rejected, rep.DataRows)
			}
			if rep.Rejected != 0 {
				var b strings.Builder
				for _, f := range rep.Failures {
					b.WriteString(f.Rule + " " + f.Field + ": " + strings.Join(f.Examples, " | ") + "\n")
				}
				t.Errorf("%d rejects:\n%s", rep.Rejected, b.String())
			}
			t.Logf("header record %d, data %d, accepted %d, repaired %d, footer %d, blank %d", rep.HeaderRecord, rep.DataRows, rep.Accepted, rep.Repaired, rep.Footer, rep.Blank)
		})
	}
}
