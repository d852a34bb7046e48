package node

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/registry"
)

// One dataset's rows as a standard has them: the merge of that dataset
// alone, through the same plan, mapping choice, partition cache and table
// writers as 'nii merge' (a full merge and this share the cached
// partition). The dataset page offers them as CSV, Parquet and NDJSON.

// mappingIndex keeps the catalog's mapping entries, so that a dataset
// page need not walk the whole catalog to find the mappings that apply to
// its dataset; it is made again when the catalog has changed.
type mappingIndex struct {
	mu      sync.Mutex
	applied int64
	self    uint64
	built   bool
	maps    []mappingEntry // every live mapping, with the standard it names
}

// mappings returns every live mapping entry of the catalog.
func (n *Node) mappings() []mappingEntry {
	ix := &n.mapIndex
	ix.mu.Lock()
	defer ix.mu.Unlock()
	applied, self := n.catalog.Applied(), n.catalog.SelfSeq()
	if ix.built && ix.applied == applied && ix.self == self {
		return ix.maps
	}
	var maps []mappingEntry
	n.catalog.EachLiveKind(nii.KindMapping, func(e registry.Entry) {
		if ref, err := nii.ParseRef(e.Advert.Meta.ConformsTo); err == nil {
			maps = append(maps, mappingEntry{Entry: e, standard: ref})
		}
	})
	ix.maps, ix.applied, ix.self, ix.built = maps, applied, self, true
	return maps
}

// standardisedPlans are the plans of dataset d for every standard it
// conforms to or has a usable mapping to, by standard.
func (n *Node) standardisedPlans(d nii.DatasetID) (map[nii.DatasetID]*planSource, error) {
	pub, err := n.publisher(d)
	if err != nil {
		return nil, err
	}
	if pub.Advert.Withdrawn || pub.Advert.Meta.Kind != nii.KindData {
		return nil, nil
	}
	byStd := map[nii.DatasetID][]mappingEntry{}
	for _, m := range n.mappings() {
		if nii.MatchDataset(m.Advert.Meta.AppliesTo, d) {
			byStd[m.standard.Dataset] = append(byStd[m.standard.Dataset], m)
		}
	}
	if ref, err := nii.ParseRef(pub.Advert.Meta.ConformsTo); err == nil {
		if _, ok := byStd[ref.Dataset]; !ok {
			byStd[ref.Dataset] = nil
		}
	}
	out := map[nii.DatasetID]*planSource{}
	for std, maps := range byStd {
		if _, err := n.standardEntry(std); err != nil {
			continue // not a standard the catalog lists
		}
		if ps := n.planFor(pub, nii.Ref{Dataset: std}, maps); ps != nil && ps.choice != ChoiceNone {
			out[std] = ps
		}
	}
	return out, nil
}

// Standardised lists the standards dataset d's rows can be had in here,
// with the mapping this node would apply (the catalog alone: nothing is
// pulled), and the download URLs of each.
func (n *Node) Standardised(d nii.DatasetID) ([]api.Standardised, error) {
	plans, err := n.standardisedPlans(d)
	if err != nil {
		return nil, err
	}
	out := []api.Standardised{}
	for std, ps := range plans {
		e, err := n.standardEntry(std)
		if err != nil {
			continue
		}
		s := api.Standardised{Standard: nii.Ref{Dataset: std, Version: e.Advert.Version}.String(), Choice: ps.choice, Why: ps.why, Downloads: map[string]string{}}
		if ps.mapping != nil {
			s.Mapping = nii.Ref{Dataset: ps.mapping.Advert.Dataset, Version: ps.mapping.Advert.Version}.String()
		}
		for _, f := range []string{api.FormatCSV, api.FormatParquet, api.FormatNDJSON} {
			s.Downloads[f] = "/api/v1/datasets/" + d.String() + "/standardised/" + std.String() + "?format=" + f
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Standard < out[j].Standard })
	return out, nil
}

// StandardisedView merges dataset d alone into standard std (its newest
// version), as a merge of std would read it: the version pulled if this
// node does not hold it, the mapping the plan chooses. Restricted
// datasets are refused: these rows are for public pages.
func (n *Node) StandardisedView(ctx context.Context, d, std nii.DatasetID) (*harmony.Merged, error) {
	if n.cfg.RegistryOnly {
		return nil, ErrRegistryOnly
	}
	plans, err := n.standardisedPlans(d)
	if err != nil {
		return nil, err
	}
	ps := plans[std]
	if ps == nil {
		return nil, nii.Errorf(nii.ErrNotFound, "%s has no mapping to %s that this node uses, and does not conform to it", d, std)
	}
	if a := ps.entry.Advert; a.Meta.Access == nii.AccessRestricted {
		return nil, nii.Errorf(nii.ErrRefused, "%s is restricted: its rows are not served on public pages ('nii merge' with a grant reads them)", d)
	}
	n.merges.run.Lock()
	defer n.merges.run.Unlock()
	ls, err := n.loadStandard(ctx, nii.Ref{Dataset: std})
	if err != nil {
		return nil, err
	}
	src, _, err := n.mergeSource(ctx, ls.std, ps, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %w", d, err)
	}
	m, err := harmony.Merge(ctx, ls.std, []harmony.Source{src}, harmony.MergeOptions{
		CacheDir: filepath.Join(n.cfg.Home, MergeCacheDir), Logger: n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("standardise %s as %s: %w", d, std, err)
	}
	return m, nil
}

func (n *Node) handleStandardisedList(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	out, err := n.Standardised(d)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// handleStandardised streams dataset {org}/{name}'s rows as standard
// {sorg}/{sname} has them, with the provenance columns, in the format
// asked for, through the writers 'nii merge -o' uses.
func (n *Node) handleStandardised(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	std, err := nii.ParseDatasetID(r.PathValue("sorg") + "/" + r.PathValue("sname"))
	if err != nil {
		writeErr(w, err)
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = api.FormatCSV
	}
	ext, ok := map[string]string{api.FormatCSV: ".csv", api.FormatNDJSON: ".ndjson", api.FormatParquet: ".parquet"}[format]
	if !ok {
		writeErr(w, fmt.Errorf("%w format %q: want csv, ndjson or parquet", nii.ErrInvalid, format))
		return
	}
	m, err := n.StandardisedView(r.Context(), d, std)
	if err != nil {
		writeErr(w, err)
		return
	}
	src := m.Sources[0]
	name := d.Org + "-" + d.Name + "-v" + strconv.FormatUint(src.Version, 10) + "." + std.Org + "-" + std.Name + ext
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	w.Header().Set("Nii-Ref", nii.Ref{Dataset: d, Version: src.Version}.String())
	w.Header().Set("Nii-Standard", m.Standard.Ref.String())
	switch format {
	case api.FormatCSV:
		n.streamMerge(w, "text/csv; charset=utf-8", func() error { return m.WriteCSV(w, harmony.CSVOptions{}) })
	case api.FormatNDJSON:
		n.streamMerge(w, "application/x-ndjson", func() error { return m.WriteNDJSON(w) })
	case api.FormatParquet:
		n.streamMerge(w, "application/vnd.apache.parquet", func() error { return m.WriteParquet(w) })
	}
}
