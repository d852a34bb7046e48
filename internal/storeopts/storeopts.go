// Package storeopts says how a node's badger store is opened: one set of
// options, used by the node and by the tests and benchmarks that speak for
// it, so that a figure measured with "the node's options" is the node's.
package storeopts

import (
	"os"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// The store's sizes. Chunk bodies live in pack files, not in badger
// (docs/storage.md), so badger holds the chunk index, manifests, version
// records and the catalog: small keys and pointers. Badger's defaults (64
// MiB memtables, whose arenas are allocated whole; Snappy-compressed
// tables read through a 256 MiB block cache) are sized for a database of
// values: at 100,000 catalog entries they cost 83 MB of memtable arena
// and, once the catalog has been read, up to the cache's size in
// decompressed blocks (docs/benchmarks.md, "Badger sized for what it
// holds"). Tables are not compressed, so no block cache is needed: badger
// reads blocks straight from the memory-mapped tables, which the kernel's
// page cache holds, outside the Go heap (badger's own advice for
// uncompressed, unencrypted tables). Tables written compressed before
// stay readable: the manifest records each table's compression.
const (
	MemTableSize = 16 << 20

	// low_memory's, for small VMs.
	lowMemTableSize   = 8 << 20
	lowIndexCacheSize = 4 << 20
	lowValueLogSize   = 64 << 20
)

// Badger returns the options for the store in dir. The caller adds its
// logger and, when it must not write, read-only mode.
//
// A node killed while its memtable was filling leaves the memtable's
// write-ahead log (*.mem) behind, and badger replays it on the next open
// into a memtable of the size configured now. A log written with a larger
// memtable (an older nii used badger's 64 MiB default; a node may have run
// without low_memory) does not fit, and badger panics ("Arena too small").
// A log badger created with the current size is exactly twice that size;
// any other (one written with another size, or one already replayed,
// which badger cuts to its data) was written with at most the largest
// memtable nii has used, or half its own size if that is more, and for
// this open the memtable is raised to that. The next clean start is back
// to the configured size.
func Badger(dir string, lowMemory bool) badger.Options {
	opts := badger.DefaultOptions(dir).
		// Values over 1 KiB (manifests, adverts with full metadata) go to
		// the value log rather than the LSM tree (docs/storage.md).
		WithValueThreshold(1 << 10).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(true).
		WithMemTableSize(MemTableSize).
		WithCompression(options.None).
		WithBlockCacheSize(0)
	if lowMemory {
		opts = opts.WithMemTableSize(lowMemTableSize).WithNumMemtables(2).
			WithIndexCacheSize(lowIndexCacheSize).WithValueLogFileSize(lowValueLogSize).WithNumCompactors(2)
	}
	if need := leftoverMemTableSize(dir, opts.MemTableSize); need > opts.MemTableSize {
		opts = opts.WithMemTableSize(need)
	}
	return opts
}

// largestMemTableSize is the largest memtable any nii has written with:
// badger's default, which nii used until it set its own.
const largestMemTableSize = 64 << 20

// leftoverMemTableSize is the memtable the write-ahead logs left in dir
// need to be replayed into, or 0 if those logs were written with size (or
// there are none).
func leftoverMemTableSize(dir string, size int64) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0 // a new store, or one badger's open will report on
	}
	var need int64
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".mem") {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() == 2*size {
			continue
		}
		need = max(need, largestMemTableSize, fi.Size()/2)
	}
	return need
}
