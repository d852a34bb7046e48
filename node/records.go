package node

import (
	"errors"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
)

// The node's own small records in badger (follows, watches): one CBOR
// value a key, under a prefix per kind.

// putRecord stores v under key.
func (n *Node) putRecord(key []byte, v any) error {
	b, err := nii.Marshal(v)
	if err != nil {
		return err
	}
	return n.db.Update(func(txn *badger.Txn) error { return txn.Set(key, b) })
}

// updateRecord stores v under key only if key still exists, so a loop
// that updates a record never resurrects one removed meanwhile.
func (n *Node) updateRecord(key []byte, v any) error {
	b, err := nii.Marshal(v)
	if err != nil {
		return err
	}
	return n.db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get(key); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			}
			return err
		}
		return txn.Set(key, b)
	})
}

// listRecords decodes every record under prefix, in key order.
func listRecords[T any](db *badger.DB, prefix []byte) ([]T, error) {
	var out []T
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var v T
			if err := it.Item().Value(func(b []byte) error { return nii.Unmarshal(b, &v) }); err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}
