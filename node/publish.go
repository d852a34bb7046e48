package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/registry/opendata"
	"github.com/nii-uk/nii/registry/table"
)

// PublishRequest is what a data officer supplies with a file.
type PublishRequest struct {
	Name     string // dataset name; the org is the node's
	Filename string // the file's base name, for media type and DCAT
	// Meta holds the officer's fields (title, description, licence,
	// keywords, themes, access, conforms-to, kind, optionally media type).
	// Fields left empty are carried over from the previous version.
	Meta nii.Metadata
	// Lineage is a merged dataset's lineage (PublishMerged sets it; a
	// merged dataset cannot be published otherwise).
	Lineage *nii.Lineage
	// Table, if set, is the file's table description, known already (a
	// merged CSV): the file is not profiled.
	Table *nii.Table
	// Ingest, if set, stores the content itself and returns its chunks
	// (PublishMerged chunks each source's rows apart); the reader is then
	// not read, and Meta.MediaType must be set.
	Ingest func(ctx context.Context) ([]nii.ChunkRef, int64, error)
	// Size, if known (> 0), is the file's size: a publish that would take
	// the disk below its floor ([store] min_free) is refused before a byte
	// is stored. Unknown, the floor is checked as chunks are written.
	Size int64
}

// ErrRegistryOnly is returned when a registry-only node is asked to hold
// data. It is of kind nii.ErrConflict.
var ErrRegistryOnly = nii.Errorf(nii.ErrConflict, "this is a registry-only node: it holds no data")

// Publish stores r as the next version of org/name and returns its record.
// The version becomes visible atomically once all its chunks and its signed
// manifest are stored; on any error nothing new is visible.
func (n *Node) Publish(ctx context.Context, r io.Reader, req PublishRequest) (*exchange.VersionRecord, error) {
	if n.cfg.RegistryOnly {
		return nil, ErrRegistryOnly
	}
	if n.store == nil {
		return nil, errors.New("node not started")
	}
	ds := nii.DatasetID{Org: n.cfg.Org, Name: req.Name}
	if err := ds.Validate(); err != nil {
		return nil, err
	}
	if err := n.disk.check(req.Size); err != nil {
		n.log.Warn("publish refused", slog.String(nii.LogDataset, ds.String()), slog.String(nii.LogErr, err.Error()))
		return nil, fmt.Errorf("publish %s: %w", ds, err)
	}
	// Every chunk stored or found held is leased until the version is
	// committed (or the publish fails), so GC spares them meanwhile; on
	// failure a collection reclaims what was stored.
	lease := n.store.NewLease()
	defer lease.Release()
	ctx = exchange.WithLease(ctx, lease)
	rec, err := n.publish(ctx, r, ds, req)
	if err != nil && !errors.Is(err, nii.ErrInvalid) && !errors.Is(err, nii.ErrRefused) {
		lease.Release()
		n.kickGC()
	}
	return rec, err
}

func (n *Node) publish(ctx context.Context, r io.Reader, ds nii.DatasetID, req PublishRequest) (*exchange.VersionRecord, error) {
	if err := n.awaitHistory(ctx); err != nil {
		return nil, err
	}
	prev, err := n.store.Latest(ds)
	if err != nil && !errors.Is(err, nii.ErrNotFound) {
		return nil, err
	}
	meta := req.Meta
	if prev != nil && meta.Kind == "" {
		meta.Kind = prev.Meta.Kind
	}
	inherit(&meta, prev, req.Name)
	meta.Normalize()
	if prev != nil && prev.Meta.Kind != meta.Kind {
		return nil, fmt.Errorf("%w dataset %s: it is a %s, and a version cannot make it a %s; publish under another name", nii.ErrInvalid, ds, kindWord(prev.Meta.Kind), kindWord(meta.Kind))
	}
	if r, err = checkKind(r, &meta, req); err != nil {
		return nil, fmt.Errorf("publish %s: %w", ds, err)
	}
	if err := meta.Validate(); err != nil {
		return nil, err
	}
	lic, err := opendata.CheckLicence(meta.Licence)
	if err != nil {
		return nil, err
	}
	meta.Licence = lic
	meta.Publisher = n.cfg.Org
	meta.PublisherName = n.cfg.OrgName
	if req.Filename != "" {
		meta.Filename = req.Filename
	}

	var prof *table.Profiler
	ingest := req.Ingest
	if ingest == nil {
		br := bufio.NewReaderSize(r, 64<<10)
		head, err := br.Peek(4096)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("read %s: %w", req.Filename, err)
		}
		if req.Meta.MediaType == "" {
			meta.MediaType = table.DetectMediaType(req.Filename, head)
		}
		var src io.Reader = br
		if table.IsTabular(meta.MediaType) && req.Table == nil {
			prof = table.NewProfiler()
			src = io.TeeReader(br, prof)
		}
		ingest = func(ctx context.Context) ([]nii.ChunkRef, int64, error) { return n.store.Ingest(ctx, src) }
	}

	start := time.Now()
	chunks, size, err := ingest(ctx)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", ds, err)
	}
	meta.ByteSize = size
	meta.Table = req.Table
	if prof != nil {
		t, err := prof.Result()
		if err != nil {
			// A .csv that does not parse is still published, as a file.
			n.log.Warn("not profiled as a table", slog.String(nii.LogDataset, ds.String()), slog.String(nii.LogErr, err.Error()))
		} else {
			meta.Table = t
		}
	}

	rec, err := n.store.Publish(ds, func(version uint64) (*nii.SignedManifest, error) {
		// Never a number the federation has seen from this node: a home
		// restored from a backup lacks the versions published since.
		version = max(version, n.nextAdvertised(ds))
		now := time.Now().UTC()
		meta.Modified = now
		if prev == nil || meta.Issued.IsZero() {
			meta.Issued = now
		}
		m := &nii.Manifest{
			Dataset:   ds,
			Version:   version,
			Publisher: n.id,
			Created:   now,
			Size:      size,
			Chunker:   n.store.ChunkParams().String(),
			Chunks:    chunks,
			Meta:      meta,
			Lineage:   req.Lineage,
		}
		sm, _, err := nii.SignManifest(m, n.key)
		return sm, err
	})
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", ds, err)
	}
	n.transfer.published(size, time.Since(start))
	n.log.Info("published", slog.String(nii.LogDataset, rec.Ref.String()), slog.Int64(nii.LogBytes, size),
		slog.Int(nii.LogChunks, len(chunks)), slog.Duration(nii.LogTook, time.Since(start)))
	// The version is committed; advertising it can fail without undoing
	// that, and a restart re-advertises (advertiseHeld).
	if err := n.advertise(rec); err != nil {
		n.log.Error("advertise", slog.String(nii.LogDataset, rec.Ref.String()), slog.String(nii.LogErr, err.Error()))
	}
	return rec, nil
}

// checkKind checks a publish against its kind: a standard must be a valid
// Table Schema (harmony.ParseStandard says why not); a mapping must parse,
// and its metadata takes the standard and patterns it names; a merged
// dataset comes only with its lineage (from PublishMerged), and nothing
// else has one. Standards and mappings are small, so they are read whole
// here and returned as the reader to store.
func checkKind(r io.Reader, meta *nii.Metadata, req PublishRequest) (io.Reader, error) {
	if (req.Lineage != nil) != (meta.Kind == nii.KindMerged) {
		if req.Lineage == nil {
			return nil, fmt.Errorf("%w: a merged dataset is made by 'nii merge STANDARD --publish ORG/NAME', which records its lineage", nii.ErrInvalid)
		}
		return nil, fmt.Errorf("%w: a lineage belongs to a merged dataset", nii.ErrInvalid)
	}
	readAll := func(max int64, what string) ([]byte, error) {
		b, err := io.ReadAll(io.LimitReader(r, max+1))
		if err != nil {
			return nil, err
		}
		if int64(len(b)) > max {
			return nil, fmt.Errorf("%w: a %s is at most %d bytes", nii.ErrInvalid, what, max)
		}
		return b, nil
	}
	switch meta.Kind {
	case nii.KindStandard:
		b, err := readAll(harmony.MaxStandardSize, "standard")
		if err != nil {
			return nil, err
		}
		if _, err := harmony.ParseStandard(b); err != nil {
			return nil, fmt.Errorf("refused as a standard: %w", err)
		}
		meta.ConformsTo = ""
		return bytes.NewReader(b), nil
	case nii.KindMapping:
		b, err := readAll(harmony.MaxMappingSize, "mapping")
		if err != nil {
			return nil, err
		}
		m, err := harmony.ParseMapping(b)
		if err != nil {
			return nil, fmt.Errorf("refused as a mapping: %w", err)
		}
		meta.ConformsTo, meta.AppliesTo = m.Standard.String(), m.AppliesTo
		return bytes.NewReader(b), nil
	}
	return r, nil
}

// inherit fills fields the officer left empty from the previous version, so
// "nii publish q2.csv --name spend" keeps version 1's title and licence.
func inherit(m *nii.Metadata, prev *exchange.VersionRecord, name string) {
	if prev != nil {
		p := prev.Meta
		if m.Title == "" {
			m.Title = p.Title
		}
		if m.Description == "" {
			m.Description = p.Description
		}
		if m.Licence == "" {
			m.Licence = p.Licence
		}
		if len(m.Keywords) == 0 {
			m.Keywords = p.Keywords
		}
		if len(m.Themes) == 0 {
			m.Themes = p.Themes
		}
		if m.Access == "" {
			m.Access = p.Access
		}
		if m.ConformsTo == "" {
			m.ConformsTo = p.ConformsTo
		}
		m.Issued = p.Issued
	}
	if m.Title == "" {
		m.Title = name
	}
}
