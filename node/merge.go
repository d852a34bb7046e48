package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/harmony"
)

// The merge as the node runs it: the catalog says which datasets conform
// to a standard and which mapping each gets (plan, in standards.go); the
// node pulls the versions it may read, hands them to harmony.Merge with a
// partition cache under its home, and keeps the result so the API can
// stream the table out, publish it as a dataset with its lineage, or load
// it into the SQL engine.

// MergeCacheDir is where, under the home, merged partitions are cached
// (harmony's CacheDir): one directory per (source manifest, mapping,
// standard).
const MergeCacheDir = "merge-cache"

// MergeOptions tune a merge.
type MergeOptions struct {
	// AllowPartial merges what can be read when some sources cannot (not
	// reachable, restricted without a grant, a mapping that does not fit);
	// the result and its lineage list them. Otherwise such sources fail the
	// merge with the list.
	AllowPartial bool
	// Grants are access grants (JWTs) for restricted sources: each source
	// is pulled with the first grant whose dataset patterns name it.
	Grants []string
}

// MergeInput is one source of a merge: the version read, the mapping
// applied and why that mapping.
type MergeInput struct {
	Source  *exchange.VersionRecord
	Mapping *exchange.VersionRecord // nil: the identity mapping
	Choice  string                  // ChoicePublisher, ChoiceHarmoniser or ChoiceIdentity
	Why     string
	Result  *harmony.SourceResult // nil when the source is missing
}

// MergeOutcome is one merge this node ran.
type MergeOutcome struct {
	ID       string
	Standard *harmony.Standard
	// StandardManifest is the standard version's manifest hash.
	StandardManifest nii.Hash
	Merged           *harmony.Merged
	Inputs           []*MergeInput
	// Missing are the sources that could not be used (pulled, read or
	// mapped), and why: Merged.Missing and those that failed before the
	// merge started.
	Missing []harmony.MissingSource
	// Skipped are datasets with a mapping to the standard that this node
	// does not apply (only untrusted harmonisers' mappings).
	Skipped []SkippedSource
	Took    time.Duration
	// Published is the merged dataset's version, when the merge was
	// published; Unchanged says it is an earlier version, because nothing
	// it was built from had changed.
	Published *exchange.VersionRecord
	Unchanged bool
}

// SkippedSource is a dataset a merge did not read, and why.
type SkippedSource struct {
	Dataset nii.DatasetID
	Reason  string
}

// mergeState is the node's merges: one at a time, the recent ones kept for
// their output.
type mergeState struct {
	run    sync.Mutex // one merge at a time: they share the cache and the CPU
	mu     sync.Mutex
	recent []*MergeOutcome // newest last, at most keepMerges
}

// keepMerges is how many merges the node keeps for GET /api/v1/merges/{id}.
const keepMerges = 8

func (s *mergeState) keep(o *MergeOutcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recent = append(s.recent, o)
	if len(s.recent) > keepMerges {
		s.recent = slices.Delete(s.recent, 0, len(s.recent)-keepMerges)
	}
}

// MergeResult returns a recent merge by its ID.
func (n *Node) MergeResult(id string) (*MergeOutcome, error) {
	n.merges.mu.Lock()
	defer n.merges.mu.Unlock()
	for _, o := range n.merges.recent {
		if o.ID == id {
			return o, nil
		}
	}
	return nil, fmt.Errorf("merge %s: %w: the node keeps its last %d merges; merge again", id, nii.ErrNotFound, keepMerges)
}

// lastMerge returns the newest kept merge of standard d.
func (n *Node) lastMerge(d nii.DatasetID) *MergeOutcome {
	n.merges.mu.Lock()
	defer n.merges.mu.Unlock()
	for i := len(n.merges.recent) - 1; i >= 0; i-- {
		if o := n.merges.recent[i]; o.Standard.Ref.Dataset == d {
			return o
		}
	}
	return nil
}

// Merge merges every dataset that conforms to std or has a usable mapping
// to it (version 0: the standard's newest version): it pulls the versions
// it may read, applies each one's mapping, validates every row, and keeps
// the result (MergeResult) for its output. Sources that cannot be used fail
// the merge with a *harmony.MissingError listing them all, unless
// o.AllowPartial.
func (n *Node) Merge(ctx context.Context, std nii.Ref, o MergeOptions) (*MergeOutcome, error) {
	if n.cfg.RegistryOnly {
		return nil, ErrRegistryOnly
	}
	if n.store == nil {
		return nil, errors.New("node not started")
	}
	if err := std.Dataset.Validate(); err != nil {
		return nil, err
	}
	n.merges.run.Lock()
	defer n.merges.run.Unlock()
	start := time.Now()
	ls, err := n.loadStandard(ctx, std)
	if err != nil {
		return nil, err
	}
	out := &MergeOutcome{ID: newMergeID(), Standard: ls.std, StandardManifest: ls.manifest}
	plan := n.plan(ls.std.Ref)
	var sources []harmony.Source
	byDataset := map[nii.DatasetID]*MergeInput{}
	for _, ps := range plan {
		a := ps.entry.Advert
		if ps.choice == ChoiceNone {
			out.Skipped = append(out.Skipped, SkippedSource{Dataset: a.Dataset, Reason: ps.why})
			continue
		}
		src, in, err := n.mergeSource(ctx, ls.std, ps, o.Grants)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			out.Missing = append(out.Missing, harmony.MissingSource{Dataset: a.Dataset, Version: a.Version, Manifest: a.Manifest, Reason: err.Error()})
			continue
		}
		out.Inputs = append(out.Inputs, in)
		byDataset[a.Dataset] = in
		sources = append(sources, src)
	}
	if len(sources) == 0 && len(out.Missing) == 0 {
		return nil, fmt.Errorf("merge %s: %w: no dataset in the federated catalog conforms to it or has a mapping this node uses ('nii standards show %s' lists them)",
			ls.std.Ref, nii.ErrNotFound, ls.std.Ref.Dataset)
	}
	merged, err := harmony.Merge(ctx, ls.std, sources, harmony.MergeOptions{
		CacheDir: filepath.Join(n.cfg.Home, MergeCacheDir), AllowPartial: true, Logger: n.log,
	})
	if err != nil {
		return nil, fmt.Errorf("merge %s: %w", ls.std.Ref, err)
	}
	out.Merged = merged
	out.Missing = append(out.Missing, merged.Missing...)
	merged.Missing = out.Missing
	for _, r := range merged.Sources {
		if in := byDataset[r.Dataset]; in != nil {
			in.Result = r
		}
	}
	// Inputs the merge could not map are missing: keep only the merged.
	out.Inputs = slices.DeleteFunc(out.Inputs, func(in *MergeInput) bool { return in.Result == nil })
	if len(out.Missing) > 0 && !o.AllowPartial {
		return nil, &harmony.MissingError{Missing: out.Missing}
	}
	out.Took = time.Since(start)
	n.merges.keep(out)
	n.log.Info("merged", slog.String(nii.LogDataset, ls.std.Ref.String()), slog.Int("sources", len(out.Inputs)),
		slog.Int("missing", len(out.Missing)), slog.Int("remapped", merged.Remapped), slog.Duration(nii.LogTook, out.Took))
	return out, nil
}

// mergeSource readies one source of a merge of std as its plan says:
// the dataset's version held (pulled with the first of grants that names
// it), and the chosen mapping read (or the identity mapping). The error
// says why the source cannot be used.
func (n *Node) mergeSource(ctx context.Context, std *harmony.Standard, ps *planSource, grants []string) (harmony.Source, *MergeInput, error) {
	a := ps.entry.Advert
	rec, err := n.holdVersion(ctx, nii.Ref{Dataset: a.Dataset, Version: a.Version}, n.grantFor(grants, a.Dataset))
	if err != nil {
		return harmony.Source{}, nil, fmt.Errorf("cannot be pulled: %w", err)
	}
	in := &MergeInput{Source: rec, Choice: ps.choice, Why: ps.why}
	var m *harmony.Mapping
	var mappingID nii.Hash
	if ps.mapping != nil {
		ma := ps.mapping.Advert
		mrec, err := n.holdVersion(ctx, nii.Ref{Dataset: ma.Dataset, Version: ma.Version}, n.grantFor(grants, ma.Dataset))
		if err == nil {
			m, err = n.loadMapping(ctx, mrec)
		}
		if err != nil {
			return harmony.Source{}, nil, fmt.Errorf("its mapping %s cannot be read: %w", nii.Ref{Dataset: ma.Dataset, Version: ma.Version}, err)
		}
		in.Mapping, mappingID = mrec, mrec.Manifest
	} else if m, err = harmony.IdentityMapping(std, a.Dataset); err != nil {
		return harmony.Source{}, nil, err
	}
	return harmony.Source{
		Dataset: a.Dataset, Version: rec.Ref.Version, Manifest: rec.Manifest, Mapping: m, MappingID: mappingID,
		Open: func(ctx context.Context) (io.ReadCloser, error) { return n.openVersion(ctx, rec) },
	}, in, nil
}

func newMergeID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// grantFor returns the first of grants whose dataset patterns name d, or
// "". Claims are read unverified: the provider checks the grant.
func (n *Node) grantFor(grants []string, d nii.DatasetID) string {
	for _, g := range grants {
		rep := n.verifier.Inspect(g, nil)
		ps, _ := rep.Claims["datasets"].([]any)
		var pats []string
		for _, p := range ps {
			if s, ok := p.(string); ok {
				pats = append(pats, s)
			}
		}
		if nii.MatchDataset(pats, d) {
			return g
		}
	}
	return ""
}

// Lineage is the merge's lineage as the merged dataset's manifest carries
// it: the standard version, every input version and the mapping applied to
// it, each by manifest hash, and the missing sources.
func (o *MergeOutcome) Lineage() *nii.Lineage {
	l := &nii.Lineage{
		Standard:   nii.VersionCite{Dataset: o.Standard.Ref.Dataset, Version: o.Standard.Ref.Version, Manifest: o.StandardManifest},
		SchemaHash: o.Standard.Hash,
	}
	for _, in := range o.Inputs {
		r := in.Result
		li := nii.LineageInput{
			Source:      nii.VersionCite{Dataset: in.Source.Ref.Dataset, Version: in.Source.Ref.Version, Manifest: in.Source.Manifest},
			MappingHash: r.MappingHash, Partition: r.Partition, Accepted: r.Report.Accepted, Rejected: r.Report.Rejected,
		}
		if in.Mapping != nil {
			li.Mapping = nii.VersionCite{Dataset: in.Mapping.Ref.Dataset, Version: in.Mapping.Ref.Version, Manifest: in.Mapping.Manifest}
		}
		l.Inputs = append(l.Inputs, li)
	}
	for _, m := range o.Missing {
		l.Missing = append(l.Missing, nii.LineageMissing{Source: nii.VersionCite{Dataset: m.Dataset, Version: m.Version, Manifest: m.Manifest}, Reason: m.Reason})
	}
	return l
}

// sameInputs reports whether two lineages were built from the same
// standard, sources and mappings.
func sameInputs(a, b *nii.Lineage) bool {
	if a == nil || b == nil || a.Standard != b.Standard || len(a.Inputs) != len(b.Inputs) || len(a.Missing) != len(b.Missing) {
		return false
	}
	for i := range a.Inputs {
		x, y := a.Inputs[i], b.Inputs[i]
		if x.Source != y.Source || x.Mapping != y.Mapping || x.MappingHash != y.MappingHash {
			return false
		}
	}
	for i := range a.Missing {
		if a.Missing[i].Source != b.Missing[i].Source {
			return false
		}
	}
	return true
}

// mergedCSVTable is the table metadata of a merged CSV, known without
// profiling it.
func mergedCSVTable(m *harmony.Merged) *nii.Table {
	t := &nii.Table{Encoding: "utf-8", Delimiter: ",", LineTerminator: "\n", HeaderRow: 1}
	for _, s := range m.Sources {
		t.Rows += s.Report.Accepted
	}
	for _, c := range m.Columns {
		t.Columns = append(t.Columns, nii.Column{Name: c.Name, Type: c.Type})
	}
	return t
}

// PublishMerged publishes a merge's table as the next version of this
// node's dataset name: the merged CSV (the standard's fields, the
// normalised supplier and the provenance columns), of kind merged,
// conforming to the standard, its lineage in the signed manifest. If the
// dataset's newest version was built from the same inputs, nothing is
// published and that version is returned (out.Unchanged).
func (n *Node) PublishMerged(ctx context.Context, out *MergeOutcome, name, title string) (*exchange.VersionRecord, error) {
	d := nii.DatasetID{Org: n.cfg.Org, Name: name}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	lin := out.Lineage()
	if prev, err := n.store.Latest(d); err == nil {
		if prev.Meta.Kind != nii.KindMerged {
			return nil, fmt.Errorf("%w: %s is a %s; a merged table is published under a dataset of its own", nii.ErrConflict, d, kindWord(prev.Meta.Kind))
		}
		if m, err := n.store.OpenManifest(prev); err == nil && sameInputs(m.Lineage, lin) {
			out.Published, out.Unchanged = prev, true
			return prev, nil
		}
	} else if !errors.Is(err, nii.ErrNotFound) {
		return nil, err
	}
	if title == "" {
		title = out.Standard.Title
		if title == "" {
			title = out.Standard.Ref.Dataset.String()
		}
		title += " (merged)"
	}
	var pubs []string
	licence := ""
	for i, in := range out.Inputs {
		if !slices.Contains(pubs, in.Source.Ref.Dataset.Org) {
			pubs = append(pubs, in.Source.Ref.Dataset.Org)
		}
		// The merged table carries its sources' licence when they share one.
		if l := in.Source.Meta.Licence; i == 0 {
			licence = l
		} else if l != licence {
			licence = ""
		}
	}
	desc := fmt.Sprintf("%s merged from %d sources (%s) by nii; every row cites its source version, line and mapping, and the manifest's lineage lists every input ('nii show %s --lineage' verifies it).",
		out.Standard.Ref, len(out.Inputs), strings.Join(pubs, ", "), d)
	// Rows from a restricted source are as restricted in the merge.
	access := nii.AccessOpen
	if !out.open() {
		access = nii.AccessRestricted
	}
	rec, err := n.Publish(ctx, nil, PublishRequest{
		Name: name, Filename: name + ".csv",
		Meta: nii.Metadata{Title: title, Description: desc, Kind: nii.KindMerged, Licence: licence, Access: access,
			ConformsTo: out.Standard.Ref.String(), MediaType: "text/csv"},
		Lineage: lin, Table: mergedCSVTable(out.Merged),
		Ingest: func(ctx context.Context) ([]nii.ChunkRef, int64, error) { return n.ingestMerged(ctx, out.Merged) },
	})
	if err != nil {
		return nil, err
	}
	out.Published = rec
	return rec, nil
}

// ingestMerged stores a merged CSV — the header line, then each source's
// rows — chunking each source's rows apart, so that a source that did not
// change between two versions gives exactly the same chunks, and its chunk
// list, kept beside the partition cache, is reused without reading its
// rows again: publishing the next version after one source changed reads
// and chunks that source's rows alone.
func (n *Node) ingestMerged(ctx context.Context, m *harmony.Merged) ([]nii.ChunkRef, int64, error) {
	var hdr bytes.Buffer
	if err := m.WriteCSVHeader(&hdr, harmony.CSVOptions{}); err != nil {
		return nil, 0, err
	}
	chunks, size, err := n.store.Ingest(ctx, &hdr)
	if err != nil {
		return nil, 0, err
	}
	dir := filepath.Join(n.cfg.Home, MergeCacheDir, "chunks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, 0, fmt.Errorf("merge cache: %w", err)
	}
	for _, s := range m.Sources {
		if s.PartitionBytes == 0 {
			continue
		}
		path := filepath.Join(dir, s.Partition.String())
		if cs, ok := n.heldChunkList(ctx, path, s.PartitionBytes); ok {
			chunks, size = append(chunks, cs...), size+s.PartitionBytes
			continue
		}
		rc, err := s.OpenRows()
		if err != nil {
			return nil, 0, err
		}
		cs, sz, err := n.store.Ingest(ctx, rc)
		rc.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("store the rows of %s: %w", s.Dataset, err)
		}
		if b, err := nii.Marshal(cs); err == nil {
			if err := writeFileAtomic(path, b, 0o644); err != nil {
				n.log.Warn("merge cache: chunk list not kept", slog.String(nii.LogErr, err.Error()))
			}
		}
		chunks, size = append(chunks, cs...), size+sz
	}
	return chunks, size, nil
}

// heldChunkList reads a kept chunk list and reports whether it covers want
// bytes and the store holds every chunk of it.
func (n *Node) heldChunkList(ctx context.Context, path string, want int64) ([]nii.ChunkRef, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var cs []nii.ChunkRef
	if nii.Unmarshal(b, &cs) != nil {
		return nil, false
	}
	var total int64
	for _, c := range cs {
		total += int64(c.Size)
	}
	if total != want {
		return nil, false
	}
	// Leased (through ctx) before they are looked up, so GC cannot take
	// them before the merged version that reuses them commits.
	if ok, err := n.store.HoldChunks(ctx, cs); err != nil || !ok {
		return nil, false
	}
	return cs, true
}

// MergedView merges std (cached partitions make this cheap when nothing
// changed) and returns the merged table for the SQL engine: its Columns
// typed as the standard's fields, and Rows() to stream them. Sources that
// cannot be read are left out and listed in Missing.
func (n *Node) MergedView(ctx context.Context, std nii.Ref) (*harmony.Merged, error) {
	out, err := n.Merge(ctx, std, MergeOptions{AllowPartial: true})
	if err != nil {
		return nil, err
	}
	return out.Merged, nil
}
