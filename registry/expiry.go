package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
)

// Expiry of departed, unverified origins. A node that claims an org it
// cannot prove (an impostor, or a member not yet enrolled) keeps its
// records in every catalog after it leaves, listed as offline, for ever.
// Package node asks Origins which origins are unverified and gone, and
// Expire drops their records. The watermark is kept and the seq reached is
// remembered (key rx/<origin>), so that anti-entropy does not fetch the
// records back from a member that has not expired them yet; records the
// origin signs later (it came back) are accepted as usual.

var prefixExpired = []byte("rx/")

func expiredKey(origin nii.NodeID) []byte { return []byte(string(prefixExpired) + string(origin)) }

// RejectExpired: a record at or below the seq up to which its origin's
// records were expired.
const RejectExpired = "expired"

// OriginInfo is what the catalog knows of one origin.
type OriginInfo struct {
	ID nii.NodeID
	// Verified is set when any of its records' org claims is proven.
	Verified bool
	// Received is when the newest of its records held arrived.
	Received time.Time
	// Records counts the records held (adverts, replicas, tombstones).
	Records int
}

// OriginList describes every origin whose records the catalog holds, this
// node's own included.
func (c *Catalog) OriginList() []OriginInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	by := map[nii.NodeID]*OriginInfo{}
	for _, head := range c.entries {
		for r := head; r != nil; r = r.next {
			o := by[r.origin]
			if o == nil {
				o = &OriginInfo{ID: r.origin}
				by[r.origin] = o
			}
			o.Records++
			o.Verified = o.Verified || r.verified
			if t := time.Unix(0, r.received).UTC(); t.After(o.Received) {
				o.Received = t
			}
		}
	}
	out := make([]OriginInfo, 0, len(by))
	for _, o := range by {
		out = append(out, *o)
	}
	return out
}

// Expire drops every record of origin from the catalog (memory, index and
// store) and refuses its records up to the highest seq held from now on.
// This node's own records are never expired. It returns how many records
// were dropped.
func (c *Catalog) Expire(origin nii.NodeID) (int, error) {
	if origin == c.self {
		return 0, fmt.Errorf("%w: a node never expires its own records", nii.ErrInvalid)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	upTo := c.maxSeq[origin]
	var drop []nii.DatasetID
	for d := range c.entries {
		if c.rec(d, origin) != nil {
			drop = append(drop, d)
		}
	}
	err := c.db.Update(func(txn *badger.Txn) error {
		for _, prefix := range [][]byte{prefixAdvert, prefixDatasetIx} {
			p := []byte(string(prefix) + string(origin) + "/")
			it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
			var keys [][]byte
			for it.Rewind(); it.Valid(); it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			it.Close()
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
		}
		return txn.Set(expiredKey(origin), binary.BigEndian.AppendUint64(nil, upTo))
	})
	if err != nil {
		return 0, fmt.Errorf("expire origin %s: %w", origin.Short(), err)
	}
	for _, d := range drop {
		c.setEntry(d, origin, nil)
		c.index.Delete(c.docKey(origin, d))
	}
	delete(c.creds, origin)
	delete(c.perOrigin, origin)
	c.expired[origin] = upTo
	return len(drop), nil
}

// loadExpired reads the expired seqs. c.mu held (or not yet shared).
func (c *Catalog) loadExpired(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixExpired, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		origin := nii.NodeID(it.Item().Key()[len(prefixExpired):])
		err := it.Item().Value(func(b []byte) error {
			if len(b) != 8 {
				return errors.New("bad expired seq")
			}
			c.expired[origin] = binary.BigEndian.Uint64(b)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// expiredRecord reports whether a record of origin at seq was expired.
// c.mu held.
func (c *Catalog) expiredRecord(origin nii.NodeID, seq uint64) bool {
	upTo, ok := c.expired[origin]
	return ok && seq <= upTo
}
