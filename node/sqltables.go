package node

import (
	"context"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/harmony"
)

// This file is the seam between the SQL tables (sql.go) and the merge
// wiring (harmony's merged views in the node). The SQL side reads merged
// views only through MergedViews; the merge side implements it and sets
// Node.views in Start (or wherever it builds its merge state):
//
//	n.views = n.merges // anything with MergedViews(ctx)
//
// A nil Node.views means the node has no merged views yet: SQL then offers
// only the tabular datasets the node holds.

// MergedView is the current merged table of one standard on this node:
// from a merge this node ran (nii merge, a followed standard) or from a
// merged dataset it holds (a harmoniser's --publish, pulled).
type MergedView struct {
	// Standard is the standard the rows conform to. The SQL table is
	// named by its dataset, "lga/spend-over-500" (whatever its version).
	Standard nii.Ref
	// Key identifies the rows: it must change whenever they do (a
	// completed merge, a newer merged dataset) and only then. The
	// merge's lineage hash, or the merged dataset's manifest hash, will
	// do. SQL reloads the table on its next use after Key changes.
	Key string
	// Open is true only when every source the view was built from is an
	// open dataset. Queries without the admin token see only open views.
	Open bool
	// Columns are the merged table's columns in order, typed from the
	// standard as harmony.Merged.Columns are (Table Schema type names).
	Columns []harmony.Column
	// Rows streams the merged rows to fn, each as the merged CSV's cells
	// in Columns' order (harmony's partition text: ISO dates, plain
	// decimals such as "-1234.5000", "true"/"false", "" for no value),
	// until fn returns an error (Rows returns it) or the rows end (nil).
	// harmony.Merged.EachRow is such a function. It may be called more
	// than once per Key (a reload after the SQL worker restarted).
	Rows func(ctx context.Context, fn func(rec []string) error) error
	// Sources counts the source versions the view was built from (shown
	// by nii query --tables).
	Sources int
}

// MergedViews lists the merged views a node holds. The merge wiring
// implements it; it must be cheap, since SQL asks on every query, and safe
// for concurrent use.
type MergedViews interface {
	MergedViews(ctx context.Context) ([]MergedView, error)
}

// mergedFromHarmony makes a MergedView of a merge's result: the helper
// the merge wiring (and tests) use.
func mergedFromHarmony(m *harmony.Merged, open bool) MergedView {
	v := MergedView{
		Standard: m.Standard.Ref,
		Key:      mergedKey(m),
		Open:     open,
		Columns:  m.Columns,
		Sources:  len(m.Sources),
		Rows: func(ctx context.Context, fn func([]string) error) error {
			return m.EachRow(func(rec []string) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				return fn(rec)
			})
		},
	}
	return v
}

// mergedKey identifies a merge's rows by its sources' partitions.
func mergedKey(m *harmony.Merged) string {
	h := nii.Hasher()
	h.Write(m.Standard.Hash[:])
	for _, s := range m.Sources {
		h.Write(s.Partition[:])
	}
	var k nii.Hash
	copy(k[:], h.Sum(nil))
	return k.String()
}
