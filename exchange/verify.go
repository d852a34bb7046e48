package exchange

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
)

// Checking the store, and repairing what it finds.
//
// badger checksums what it writes, but it reads a value only when asked,
// and on open it cuts the newest value-log file at the first entry whose
// checksum fails, silently (docs/storage.md). A version can therefore lose
// chunks, or its manifest, while its record still lists it. Verify reads
// every version's manifest and every chunk it names and checks each
// against its hash; Repair fetches what a damaged version lacks from other
// providers, exactly as a pull would.

// Damage is what Verify found wrong with one version.
type Damage struct {
	Ref      nii.Ref    `json:"ref"`
	Manifest nii.Hash   `json:"manifest"`
	Missing  int        `json:"missing"`          // chunks named and not stored
	Corrupt  int        `json:"corrupt"`          // chunks stored that do not hash to their name (or cannot be read)
	Reason   string     `json:"reason,omitempty"` // the first problem, in words
	Found    time.Time  `json:"found"`
	bad      []nii.Hash // the missing and corrupt chunks
	record   bool       // the version record itself is unreadable
	manifest bool       // the manifest is missing or unreadable
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Versions int           `json:"versions"` // versions checked
	Chunks   int           `json:"chunks"`   // distinct chunks read and hashed
	Bytes    int64         `json:"bytes"`
	Damaged  []Damage      `json:"damaged"`
	Took     time.Duration `json:"took_ns"`
}

// damageSet is the store's memory of damaged versions, from the last
// Verify and until a Repair (or a later Verify) clears them. It is not
// persisted: the node verifies at every start.
type damageSet struct {
	mu sync.Mutex
	m  map[nii.Ref]Damage
}

// Damaged returns the damaged versions the last Verify found that have not
// been repaired since, by ref.
func (s *Store) Damaged() map[nii.Ref]Damage {
	s.damage.mu.Lock()
	defer s.damage.mu.Unlock()
	out := make(map[nii.Ref]Damage, len(s.damage.m))
	for r, d := range s.damage.m {
		out[r] = d
	}
	return out
}

// markDamaged records d (Corrupt chunks found while serving add to it).
func (s *Store) markDamaged(d Damage) {
	s.damage.mu.Lock()
	defer s.damage.mu.Unlock()
	if s.damage.m == nil {
		s.damage.m = map[nii.Ref]Damage{}
	}
	s.damage.m[d.Ref] = d
}

func (s *Store) clearDamaged(r nii.Ref) {
	s.damage.mu.Lock()
	defer s.damage.mu.Unlock()
	delete(s.damage.m, r)
}

// Verify checks every version: its record decodes, its manifest is stored
// and opens to the record's hash, and every chunk it names is stored and
// hashes to its name. Each distinct chunk is read once. The damaged
// versions it finds replace those of the last Verify (Damaged).
func (s *Store) Verify(ctx context.Context) (*VerifyReport, error) {
	start := time.Now()
	rep := &VerifyReport{Damaged: []Damage{}}
	type verdict struct{ missing, corrupt bool }
	seen := map[nii.Hash]verdict{}
	refs, bad, err := s.versionKeys()
	if err != nil {
		return nil, err
	}
	var damaged []Damage
	for _, d := range bad {
		damaged = append(damaged, d)
	}
	for _, r := range refs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rep.Versions++
		rec, err := s.Version(r)
		if err != nil {
			damaged = append(damaged, Damage{Ref: r, record: true, Reason: "version record unreadable: " + err.Error()})
			continue
		}
		d := Damage{Ref: r, Manifest: rec.Manifest}
		m, err := s.OpenManifest(rec)
		if err != nil {
			d.manifest, d.Reason = true, "manifest: "+err.Error()
			damaged = append(damaged, d)
			continue
		}
		for _, c := range m.Chunks {
			v, ok := seen[c.Hash]
			if !ok {
				b, err := s.Chunk(c.Hash)
				switch {
				case errors.Is(err, nii.ErrNotFound):
					v.missing = true
				case err != nil:
					if errors.Is(err, badger.ErrDBClosed) {
						return nil, err
					}
					v.corrupt = true
				case len(b) != int(c.Size):
					v.corrupt = true
				default:
					rep.Chunks++
					rep.Bytes += int64(len(b))
				}
				seen[c.Hash] = v
			}
			if v.missing || v.corrupt {
				if v.missing {
					d.Missing++
				} else {
					d.Corrupt++
				}
				if d.Reason == "" {
					what := "missing"
					if v.corrupt {
						what = "corrupt"
					}
					d.Reason = fmt.Sprintf("chunk %s %s", c.Hash, what)
				}
				d.bad = append(d.bad, c.Hash)
			}
		}
		if len(d.bad) > 0 {
			damaged = append(damaged, d)
		}
	}
	now := time.Now().UTC()
	m := map[nii.Ref]Damage{}
	for i := range damaged {
		damaged[i].Found = now
		m[damaged[i].Ref] = damaged[i]
	}
	s.damage.mu.Lock()
	s.damage.m = m
	s.damage.mu.Unlock()
	sort.Slice(damaged, func(i, j int) bool { return damaged[i].Ref.String() < damaged[j].Ref.String() })
	rep.Damaged = append(rep.Damaged, damaged...)
	rep.Took = time.Since(start)
	return rep, nil
}

// versionKeys lists the refs of every version key, reading no values, and
// the keys that do not parse.
func (s *Store) versionKeys() ([]nii.Ref, []Damage, error) {
	var refs []nii.Ref
	var bad []Damage
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixVersion})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			rest := k[len(prefixVersion):]
			if len(rest) < 8+3 {
				continue
			}
			d, err := nii.ParseDatasetID(string(rest[:len(rest)-9]))
			if err != nil {
				continue // not a ref: nothing to repair it from
			}
			refs = append(refs, nii.Ref{Dataset: d, Version: binary.BigEndian.Uint64(rest[len(rest)-8:])})
		}
		return nil
	})
	return refs, bad, err
}

// NoteCorrupt records that serving found chunk h of the version ref
// corrupt or unreadable: the version is damaged until repaired.
func (s *Store) NoteCorrupt(ref nii.Ref, manifest nii.Hash, h nii.Hash, err error) {
	s.damage.mu.Lock()
	defer s.damage.mu.Unlock()
	if s.damage.m == nil {
		s.damage.m = map[nii.Ref]Damage{}
	}
	d, ok := s.damage.m[ref]
	if !ok {
		d = Damage{Ref: ref, Manifest: manifest, Found: time.Now().UTC(), Reason: "while serving: " + err.Error()}
	}
	for _, b := range d.bad {
		if b == h {
			return
		}
	}
	d.bad = append(d.bad, h)
	d.Corrupt++
	s.damage.m[ref] = d
}

// Repair fetches what the damaged version d lacks from req's providers
// (which must not include this node) and makes it whole: the corrupt
// chunks are deleted first, then the manifest (which must hash to d's, or
// to the one the publisher advertises) and every missing chunk are fetched
// and verified as a pull fetches them. On success the version is no longer
// Damaged.
func Repair(ctx context.Context, f Fetcher, s *Store, d Damage, req PullRequest) (*PullResult, error) {
	if d.Manifest.IsZero() {
		d.Manifest = req.Manifest
	} else if req.Manifest.IsZero() {
		req.Manifest = d.Manifest
	} else if req.Manifest != d.Manifest {
		return nil, fmt.Errorf("repair %s: %w: the publisher advertises manifest %s, this node holds %s", d.Ref, nii.ErrConflict, req.Manifest, d.Manifest)
	}
	req.Ref = d.Ref
	x, err := NewFetch(ctx, f, req)
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", d.Ref, err)
	}
	if err := s.deleteChunks(d.bad); err != nil {
		return nil, fmt.Errorf("repair %s: %w", d.Ref, err)
	}
	res, _, err := s.flights.do(ctx, x.Hash, req.Progress, func(f *flight) (*PullResult, error) {
		return x.repairInto(ctx, s, f.report)
	})
	if err != nil {
		return res, fmt.Errorf("repair %s: %w", d.Ref, err)
	}
	s.clearDamaged(d.Ref)
	return res, nil
}

// repairInto is into for a version that may already be committed: it
// fetches the missing chunks and (re)writes the manifest and record.
func (x *Fetch) repairInto(ctx context.Context, s *Store, progress func(done, total int64)) (*PullResult, error) {
	m := x.Manifest
	res := &PullResult{Manifest: m}
	lease := s.NewLease()
	defer lease.Release()
	lease.addRefs(m.Chunks)
	// The damage found may be only what was seen (a manifest unreadable,
	// a chunk while serving): every chunk of the version is checked now,
	// and those that fail deleted, so that they are fetched again.
	var bad []nii.Hash
	for _, c := range m.Chunks {
		if b, err := s.Chunk(c.Hash); errors.Is(err, nii.ErrCorrupt) || (err == nil && len(b) != int(c.Size)) {
			bad = append(bad, c.Hash)
		}
	}
	if err := s.deleteChunks(bad); err != nil {
		return nil, err
	}
	need, held, err := s.missing(m.Chunks)
	if err != nil {
		return nil, err
	}
	res.HeldChunks = held
	total := sizeOf(need)
	var report func(int64)
	if progress != nil {
		report = func(done int64) { progress(done, total) }
	}
	err = x.store(ctx, s, need, nil, report)
	res.FetchedChunks, res.FetchedBytes, res.Providers = x.stats.chunks, x.stats.bytes, x.stats.providers
	res.Dropped, res.MaxInFlight = x.stats.dropped, x.stats.peak
	if err != nil {
		return res, err
	}
	rec, err := s.recommit(x.Signed)
	if err != nil {
		return res, err
	}
	res.Record = rec
	return res, nil
}

// recommit writes a verified manifest and its version record again,
// whatever the store holds under them (a repair), after checking every
// chunk is stored. A readable record for another manifest is ErrExists.
func (s *Store) recommit(sm *nii.SignedManifest) (*VersionRecord, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	m, h, err := sm.Open()
	if err != nil {
		return nil, err
	}
	if rec, err := s.Version(m.Ref()); err == nil && rec.Manifest != h {
		return nil, fmt.Errorf("%s: %w with another manifest", m.Ref(), nii.ErrExists)
	}
	// Clear the way: a record or manifest that cannot be read is deleted,
	// then commitLocked writes both afresh.
	_, recErr := s.Version(m.Ref())
	_, manErr := s.Manifest(h)
	err = s.db.Update(func(txn *badger.Txn) error {
		if manErr != nil {
			if err := txn.Delete(manifestKey(h)); err != nil {
				return err
			}
		}
		if recErr != nil || manErr != nil {
			return txn.Delete(versionKey(m.Dataset, m.Version))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", m.Ref(), err)
	}
	return s.commitLocked(sm, true)
}

// deleteChunks deletes the given chunk keys (corrupt ones, before a
// repair rewrites them), adjusting the counts by what was deleted.
func (s *Store) deleteChunks(hs []nii.Hash) error {
	_, err := s.deleteChunkEntries(hs, nil)
	return err
}
