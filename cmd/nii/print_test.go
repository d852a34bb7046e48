package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
)

// TestDatasetsTableAligned: a follow's row keeps the table's columns, and
// sizes are IEC units like every other size nii prints.
func TestDatasetsTableAligned(t *testing.T) {
	mod := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	ds := []api.DatasetInfo{
		{ID: "greenwich/spend", Role: api.RolePublisher, Versions: []api.VersionInfo{{Version: 1, Size: 459683, Meta: nii.Metadata{Title: "Spend", Modified: mod}}}},
		{ID: "lambeth/spend", Role: api.RoleReplica, Follow: &api.Follow{State: api.FollowSynced, Version: 2, Advertised: 2, LastSync: mod},
			Versions: []api.VersionInfo{{Version: 2, Size: 2 << 20, Meta: nii.Metadata{Title: "Lambeth spend", Modified: mod,
				Table: &nii.Table{Rows: 10, Columns: []nii.Column{{Name: "a"}}}}}}},
	}
	var b bytes.Buffer
	if err := printDatasets(&b, ds); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	header := lines[0]
	for _, col := range []string{"VERSION", "ROLE", "SIZE", "ROWS", "MODIFIED", "TITLE"} {
		at := strings.Index(header, col)
		for _, l := range lines[1:] {
			if at >= len(l) || l[at] == ' ' || (at > 0 && l[at-1] != ' ') {
				t.Errorf("column %s (at %d) is not aligned in %q", col, at, l)
			}
		}
	}
	if out := b.String(); !strings.Contains(out, "449 KiB") || !strings.Contains(out, "2.0 MiB") || !strings.Contains(out, "following: synced") {
		t.Errorf("table:\n%s", out)
	}
}
