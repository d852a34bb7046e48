package node

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/harmony"
)

// The merge side of the seam with SQL (sqltables.go): the merged views a
// node offers, one per standard, named as the standard. A standard's view
// is the newest merge this node ran of it and still keeps (nii merge, a
// watch, nii standards show); failing that, the newest merged dataset
// this node holds that conforms to it (one it published with --publish,
// or a harmoniser's it pulled). Listing them runs no merge.

// mergeViews implements MergedViews over a node's merges and store.
type mergeViews struct{ n *Node }

var _ MergedViews = mergeViews{}

// MergedViews lists the node's merged views.
func (v mergeViews) MergedViews(ctx context.Context) ([]MergedView, error) {
	n := v.n
	byStd := map[nii.DatasetID]MergedView{}
	n.merges.mu.Lock()
	for _, o := range n.merges.recent { // oldest first: a newer merge replaces an older one
		byStd[o.Standard.Ref.Dataset] = mergedFromHarmony(o.Merged, o.open())
	}
	n.merges.mu.Unlock()
	recs, err := n.store.Versions(nil)
	if err != nil {
		return nil, err
	}
	held := map[nii.DatasetID]*exchange.VersionRecord{}
	for _, rec := range recs {
		if rec.Meta.Kind != nii.KindMerged || rec.Meta.Table == nil {
			continue
		}
		std, err := nii.ParseRef(rec.Meta.ConformsTo)
		if err != nil {
			continue
		}
		if _, ok := byStd[std.Dataset]; ok {
			continue
		}
		if h := held[std.Dataset]; h == nil || rec.Meta.Modified.After(h.Meta.Modified) {
			held[std.Dataset] = rec
		}
	}
	for d, rec := range held {
		std, _ := nii.ParseRef(rec.Meta.ConformsTo)
		std.Dataset = d
		byStd[d] = n.heldView(rec, std)
	}
	out := make([]MergedView, 0, len(byStd))
	for _, mv := range byStd {
		out = append(out, mv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Standard.Dataset.String() < out[j].Standard.Dataset.String() })
	return out, nil
}

// open reports whether every source of a merge is an open dataset.
func (o *MergeOutcome) open() bool {
	for _, in := range o.Inputs {
		if in.Source.Meta.Access == nii.AccessRestricted {
			return false
		}
	}
	return true
}

// heldView is the view of a merged dataset version this node holds: its
// CSV, read from the store, every chunk verified.
func (n *Node) heldView(rec *exchange.VersionRecord, std nii.Ref) MergedView {
	cols := make([]harmony.Column, len(rec.Meta.Table.Columns))
	for i, c := range rec.Meta.Table.Columns {
		cols[i] = harmony.Column{Name: c.Name, Type: c.Type}
	}
	sources := 0
	if m, err := n.store.OpenManifest(rec); err == nil && m.Lineage != nil {
		sources = len(m.Lineage.Inputs)
	}
	return MergedView{
		Standard: std, Key: rec.Manifest.String(), Open: rec.Meta.Access != nii.AccessRestricted,
		Columns: cols, Sources: sources,
		Rows: func(ctx context.Context, fn func([]string) error) error {
			rc, err := n.openVersion(ctx, rec)
			if err != nil {
				return err
			}
			defer rc.Close()
			cr := csv.NewReader(bufio.NewReaderSize(rc, 256<<10))
			cr.ReuseRecord = true
			cr.FieldsPerRecord = len(cols)
			if _, err := cr.Read(); err != nil { // the header
				return fmt.Errorf("merged dataset %s: %w", rec.Ref, err)
			}
			for {
				row, err := cr.Read()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("merged dataset %s: %w", rec.Ref, err)
				}
				if err := fn(row); err != nil {
					return err
				}
			}
		},
	}
}
