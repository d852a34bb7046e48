package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/registry"
)

// Standards and mappings as the node sees them in the federated catalog:
// which datasets are standards, which mappings exist for which datasets,
// and which mapping a merge applies to each source (docs/harmonisation.md,
// "Which mapping a node uses").

// HarmonyConfig is the [harmony] section of config.toml.
type HarmonyConfig struct {
	// TrustedHarmonisers are orgs whose mappings this node applies to other
	// publishers' datasets, in order of preference. A dataset's publisher's
	// own mapping always comes first; a mapping from any other org is
	// listed but not used.
	TrustedHarmonisers []string `toml:"trusted_harmonisers,omitempty" comment:"orgs whose mappings this node applies to others' datasets, most preferred first (a publisher's own mapping always comes first)"`
}

func (h HarmonyConfig) validate() error {
	for _, o := range h.TrustedHarmonisers {
		if err := nii.CheckSlug("harmony.trusted_harmonisers org", o); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	return nil
}

// ErrUnknownStandard is returned when a merge, mapping or suggestion names
// a standard the federated catalog does not hold. It is of kind
// nii.ErrNotFound.
var ErrUnknownStandard = nii.Errorf(nii.ErrNotFound, "unknown standard")

// ErrNotStandard is returned when a dataset named as a standard is not one.
// It is of kind nii.ErrInvalid.
var ErrNotStandard = nii.Errorf(nii.ErrInvalid, "not a standard")

// standardEntry is the catalog's publisher entry of a standard.
func (n *Node) standardEntry(d nii.DatasetID) (registry.Entry, error) {
	pub, err := n.publisher(d)
	if errors.Is(err, nii.ErrNotFound) {
		return registry.Entry{}, fmt.Errorf("%w %s: the federated catalog has no dataset of that name ('nii standards' lists the standards known)", ErrUnknownStandard, d)
	}
	if err != nil {
		return registry.Entry{}, err
	}
	if pub.Advert.Withdrawn {
		return registry.Entry{}, fmt.Errorf("%w %s: withdrawn by its publisher", ErrUnknownStandard, d)
	}
	if pub.Advert.Meta.Kind != nii.KindStandard {
		return registry.Entry{}, fmt.Errorf("%w: %s is a dataset, not a standard (a standard is published with 'nii publish SCHEMA.json --standard')", ErrNotStandard, d)
	}
	return pub, nil
}

// loadedStandard is a standard version read from the store.
type loadedStandard struct {
	std      *harmony.Standard
	manifest nii.Hash
}

// standards caches parsed standards by manifest hash.
type standardCache struct {
	mu sync.Mutex
	m  map[nii.Hash]*harmony.Standard
}

// loadStandard returns version ref of a standard (0: the newest the
// catalog lists), pulling it first if this node does not hold it.
func (n *Node) loadStandard(ctx context.Context, ref nii.Ref) (*loadedStandard, error) {
	e, err := n.standardEntry(ref.Dataset)
	if err != nil {
		return nil, err
	}
	if ref.Version > e.Advert.Version {
		return nil, fmt.Errorf("%w: standard %s has no version %d (its newest is %d)", ErrUnknownStandard, ref.Dataset, ref.Version, e.Advert.Version)
	}
	rec, err := n.holdVersion(ctx, ref, "")
	if err != nil {
		return nil, fmt.Errorf("standard %s: %w", ref, err)
	}
	if rec.Meta.Kind != nii.KindStandard {
		return nil, fmt.Errorf("%w: %s is not published as a standard", ErrNotStandard, rec.Ref)
	}
	n.stdCache.mu.Lock()
	std := n.stdCache.m[rec.Manifest]
	n.stdCache.mu.Unlock()
	if std == nil {
		b, err := n.readVersion(ctx, rec, harmony.MaxStandardSize)
		if err != nil {
			return nil, err
		}
		if std, err = harmony.ParseStandard(b); err != nil {
			return nil, fmt.Errorf("standard %s: %w", rec.Ref, err)
		}
		std.Ref = rec.Ref
		n.stdCache.mu.Lock()
		if n.stdCache.m == nil {
			n.stdCache.m = map[nii.Hash]*harmony.Standard{}
		}
		n.stdCache.m[rec.Manifest] = std
		n.stdCache.mu.Unlock()
	}
	return &loadedStandard{std: std, manifest: rec.Manifest}, nil
}

// holdVersion returns the store's record of ref (0: the newest the catalog
// lists), pulling it with grant first if this node does not hold it.
func (n *Node) holdVersion(ctx context.Context, ref nii.Ref, grant string) (*exchange.VersionRecord, error) {
	if ref.Version == 0 {
		if src, err := n.sources(ref); err == nil && !src.Publisher.Advert.Withdrawn {
			ref.Version = src.Version
		} else if rec, lerr := n.store.Latest(ref.Dataset); lerr == nil {
			return rec, nil
		} else if err != nil {
			return nil, err
		}
	}
	if ok, err := n.store.HasVersion(ref); err != nil {
		return nil, err
	} else if ok {
		return n.store.Version(ref)
	}
	if n.cfg.RegistryOnly {
		return nil, fmt.Errorf("%s: %w", ref, ErrRegistryOnly)
	}
	res, err := n.Pull(ctx, ref, PullOptions{Grant: grant})
	if err != nil {
		return nil, err
	}
	return res.Record, nil
}

// readVersion reads a small version whole, refusing one over max bytes.
func (n *Node) readVersion(ctx context.Context, rec *exchange.VersionRecord, max int64) ([]byte, error) {
	if rec.Size > max {
		return nil, fmt.Errorf("%w %s: %d bytes is over the %d a %s may have", nii.ErrInvalid, rec.Ref, rec.Size, max, kindWord(rec.Meta.Kind))
	}
	var b bytes.Buffer
	if _, err := n.store.WriteTo(ctx, rec, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func kindWord(k string) string {
	if k == "" {
		return "dataset"
	}
	return k
}

// stdMatches reports whether a conforms_to value names standard std (any
// version when the value names none).
func stdMatches(conformsTo string, std nii.Ref) bool {
	r, err := nii.ParseRef(conformsTo)
	if err != nil || r.Dataset != std.Dataset {
		return false
	}
	return r.Version == 0 || std.Version == 0 || r.Version == std.Version
}

// mappingEntry is a mapping the catalog lists.
type mappingEntry struct {
	registry.Entry
	standard nii.Ref
}

// planSource is one dataset a merge of a standard reads, and how.
type planSource struct {
	entry   registry.Entry // the dataset's publisher entry
	conform bool           // its metadata's conforms_to names the standard
	// mapping is the chosen mapping, nil when none is usable (the
	// identity mapping applies if conform).
	mapping *mappingEntry
	choice  string // one of the Choice constants
	why     string
	// candidates are every mapping the catalog lists for the dataset and
	// standard, the chosen one included.
	candidates []mappingEntry
}

// Mapping choices, as the API and CLI show them.
const (
	ChoicePublisher  = "publisher"  // the dataset's publisher's own mapping
	ChoiceHarmoniser = "harmoniser" // a trusted harmoniser's mapping
	ChoiceIdentity   = "identity"   // none needed: the dataset conforms directly
	ChoiceNone       = "none"       // no usable mapping: not merged
)

// plan lists, from the catalog alone (nothing is pulled), every dataset
// that conforms to std or has a mapping to it, and the mapping this node
// would apply to each: the publisher's own, then the trusted harmonisers'
// in the order configured, else the identity mapping if the dataset
// declares conformance. Datasets with only untrusted mappings are listed
// with ChoiceNone.
func (n *Node) plan(std nii.Ref) []*planSource {
	var data, maps []registry.Entry
	n.catalog.EachLiveKind(nii.KindMapping, func(e registry.Entry) { maps = append(maps, e) })
	// Only the data claims that conform, or that a mapping to std applies
	// to, are read from the store (planFor keeps no other).
	n.catalog.EachLiveWhere(func(l registry.LiveClaim) bool {
		if l.Kind != nii.KindData {
			return false
		}
		if stdMatches(l.ConformsTo, std) {
			return true
		}
		for _, m := range maps {
			if stdMatches(m.Advert.Meta.ConformsTo, std) && nii.MatchDataset(m.Advert.Meta.AppliesTo, l.Dataset) {
				return true
			}
		}
		return false
	}, func(e registry.Entry) { data = append(data, e) })
	var mappings []mappingEntry
	for _, e := range maps {
		ref, err := nii.ParseRef(e.Advert.Meta.ConformsTo)
		if err != nil || !stdMatches(e.Advert.Meta.ConformsTo, std) {
			continue
		}
		mappings = append(mappings, mappingEntry{Entry: e, standard: ref})
	}
	var out []*planSource
	for _, e := range data {
		if ps := n.planFor(e, std, mappings); ps != nil {
			out = append(out, ps)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].entry.Advert.Dataset.String() < out[j].entry.Advert.Dataset.String()
	})
	return out
}

// planFor is the plan of one dataset (its publisher entry e) for std,
// given the catalog's mappings to std; nil when the dataset neither
// conforms to std nor has a mapping to it.
func (n *Node) planFor(e registry.Entry, std nii.Ref, mappings []mappingEntry) *planSource {
	d := e.Advert.Dataset
	ps := &planSource{entry: e, conform: stdMatches(e.Advert.Meta.ConformsTo, std)}
	for _, m := range mappings {
		if nii.MatchDataset(m.Advert.Meta.AppliesTo, d) {
			ps.candidates = append(ps.candidates, m)
		}
	}
	if !ps.conform && len(ps.candidates) == 0 {
		return nil
	}
	n.chooseMapping(ps)
	return ps
}

// chooseMapping applies the preference order to ps's candidates.
func (n *Node) chooseMapping(ps *planSource) {
	d := ps.entry.Advert.Dataset
	// newest first within an org
	sort.SliceStable(ps.candidates, func(i, j int) bool {
		return ps.candidates[i].Advert.Meta.Modified.After(ps.candidates[j].Advert.Meta.Modified)
	})
	pick := func(org string) *mappingEntry {
		for i := range ps.candidates {
			if ps.candidates[i].Advert.Dataset.Org == org {
				return &ps.candidates[i]
			}
		}
		return nil
	}
	if m := pick(d.Org); m != nil {
		ps.mapping, ps.choice, ps.why = m, ChoicePublisher, "the publisher's own mapping"
		return
	}
	for _, h := range n.cfg.Harmony.TrustedHarmonisers {
		if m := pick(h); m != nil {
			ps.mapping, ps.choice = m, ChoiceHarmoniser
			ps.why = fmt.Sprintf("%s is a trusted harmoniser here ([harmony] trusted_harmonisers)", h)
			return
		}
	}
	if ps.conform {
		ps.choice, ps.why = ChoiceIdentity, "it declares conformance to the standard: read with the identity mapping"
		return
	}
	var orgs []string
	for _, c := range ps.candidates {
		if !slices.Contains(orgs, c.Advert.Dataset.Org) {
			orgs = append(orgs, c.Advert.Dataset.Org)
		}
	}
	ps.choice = ChoiceNone
	ps.why = fmt.Sprintf("its only mappings are from %s, not trusted here: add the org to [harmony] trusted_harmonisers to use them", strings.Join(orgs, ", "))
}

// MappingName is the dataset name a mapping of dataset d to standard std
// is published under by org: "NAME--map--STDORG-STDNAME" when org
// publishes d, "ORG-NAME--map--STDORG-STDNAME" for a harmoniser. A name
// over nii.MaxSlugLen is cut and given a hash of the whole, so two
// mappings never share a name by accident.
func MappingName(org string, d, std nii.DatasetID) string {
	base := d.Name
	if d.Org != org {
		base = d.Org + "-" + d.Name
	}
	name := base + "--map--" + std.Org + "-" + std.Name
	if len(name) <= nii.MaxSlugLen {
		return name
	}
	h := nii.HashOf([]byte(name)).String()[:8]
	return strings.TrimRight(name[:nii.MaxSlugLen-9], "-") + "-" + h
}

// loadMapping reads and parses a mapping version this node holds.
func (n *Node) loadMapping(ctx context.Context, rec *exchange.VersionRecord) (*harmony.Mapping, error) {
	b, err := n.readVersion(ctx, rec, harmony.MaxMappingSize)
	if err != nil {
		return nil, err
	}
	m, err := harmony.ParseMapping(b)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", rec.Ref, err)
	}
	return m, nil
}

// versionReader reads a held version's content chunk by chunk, each
// verified against its hash, with no goroutine.
type versionReader struct {
	ctx    context.Context
	n      *Node
	ref    nii.Ref
	chunks []nii.ChunkRef
	i      int
	buf    []byte
}

func (n *Node) openVersion(ctx context.Context, rec *exchange.VersionRecord) (io.ReadCloser, error) {
	m, err := n.store.OpenManifest(rec)
	if err != nil {
		return nil, err
	}
	return &versionReader{ctx: ctx, n: n, ref: rec.Ref, chunks: m.Chunks}, nil
}

func (r *versionReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.i >= len(r.chunks) {
			return 0, io.EOF
		}
		if err := r.ctx.Err(); err != nil {
			return 0, err
		}
		c := r.chunks[r.i]
		b, err := r.n.store.Chunk(c.Hash)
		if err != nil {
			return 0, fmt.Errorf("%s chunk %d of %d: %w", r.ref, r.i+1, len(r.chunks), err)
		}
		if len(b) != int(c.Size) {
			return 0, fmt.Errorf("%s chunk %d: %w: size %d, manifest says %d", r.ref, r.i+1, nii.ErrCorrupt, len(b), c.Size)
		}
		r.buf = b
		r.i++
	}
	k := copy(p, r.buf)
	r.buf = r.buf[k:]
	return k, nil
}

func (r *versionReader) Close() error { r.chunks, r.buf = nil, nil; return nil }
