package storeopts

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestBadgerReplaysALargerMemtable kills (by copying its files while it
// runs, which is what a SIGKILL leaves on disk) a store whose memtable log
// was written with a larger memtable than the one it is reopened with —
// badger's 64 MiB default, which nii used before, and the node's 16 MiB
// reopened with low_memory — and checks that it opens with every entry.
// Without raising the memtable to fit, badger panics in Open ("Arena too
// small").
func TestBadgerReplaysALargerMemtable(t *testing.T) {
	for _, c := range []struct {
		name      string
		written   badger.Options
		lowMemory bool
	}{
		{"badger default, then the node's", badger.DefaultOptions(""), false},
		{"the node's, then low_memory", Badger("", false), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			live, killed := t.TempDir(), t.TempDir()
			// A small value log: copyDir copies its preallocated length.
			db, err := badger.Open(c.written.WithDir(live).WithValueDir(live).WithLogger(nil).WithValueLogFileSize(8 << 20))
			if err != nil {
				t.Fatal(err)
			}
			// Small entries stay in the memtable: three quarters of the
			// writer's memtable, more than the smaller one's arena holds
			// and less than makes the writer flush.
			n := writeSmall(t, db, c.written.MemTableSize*3/4)
			if err := db.Sync(); err != nil {
				t.Fatal(err)
			}
			copyDir(t, live, killed)
			db.Close()
			if mems, _ := filepath.Glob(filepath.Join(killed, "*.mem")); len(mems) == 0 {
				t.Fatal("no memtable log left behind: the test kills nothing")
			}

			opts := Badger(killed, c.lowMemory).WithLogger(nil)
			if opts.MemTableSize <= Badger("", c.lowMemory).MemTableSize {
				t.Fatalf("memtable %d MiB: not raised for a log written with %d MiB", opts.MemTableSize>>20, c.written.MemTableSize>>20)
			}
			db, err = badger.Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := count(t, db); got != n {
				t.Errorf("reopened store holds %d entries, wrote %d", got, n)
			}
			db.Close()
			if again := Badger(killed, c.lowMemory); again.MemTableSize != Badger("", c.lowMemory).MemTableSize {
				t.Errorf("after a clean close the memtable stays raised (%d MiB)", again.MemTableSize>>20)
			}
		})
	}
}

// TestBadgerKeepsItsSizeForItsOwnLogs checks the common case: a log left
// by a node killed with the current options replays into the configured
// memtable, not a raised one.
func TestBadgerKeepsItsSizeForItsOwnLogs(t *testing.T) {
	live, killed := t.TempDir(), t.TempDir()
	db, err := badger.Open(Badger(live, false).WithLogger(nil).WithValueLogFileSize(8 << 20))
	if err != nil {
		t.Fatal(err)
	}
	n := writeSmall(t, db, 1<<20)
	copyDir(t, live, killed)
	db.Close()
	opts := Badger(killed, false).WithLogger(nil)
	if opts.MemTableSize != MemTableSize {
		t.Fatalf("memtable %d MiB for the node's own log, want %d", opts.MemTableSize>>20, MemTableSize>>20)
	}
	if db, err = badger.Open(opts); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := count(t, db); got != n {
		t.Errorf("reopened store holds %d entries, wrote %d", got, n)
	}
}

// writeSmall writes 900-byte entries (under the 1 KiB value threshold, so
// they stay in the memtable) until about bytes are written, and returns
// how many.
func writeSmall(t *testing.T, db *badger.DB, bytes int64) int {
	t.Helper()
	wb := db.NewWriteBatch()
	n := 0
	val := make([]byte, 900)
	for written := int64(0); written < bytes; written += 916 {
		key := binary.BigEndian.AppendUint64([]byte("k"), uint64(n))
		if err := wb.Set(key, val); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	return n
}

func count(t *testing.T, db *badger.DB) int {
	t.Helper()
	n := 0
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		src, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBadgerReadsTablesWrittenCompressed opens a store whose tables were
// written by badger's defaults (Snappy, as every node before
// internal/storeopts wrote them) with the node's options (no compression,
// no block cache) and checks every value reads back as written: badger
// must take each table's compression from its manifest, not from the
// options.
func TestBadgerReadsTablesWrittenCompressed(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithValueLogFileSize(8 << 20))
	if err != nil {
		t.Fatal(err)
	}
	value := func(i int) []byte { return fmt.Appendf(nil, "value %d %s", i, strings.Repeat("compressible ", i%50)) }
	const n = 20_000
	wb := db.NewWriteBatch()
	for i := range n {
		if err := wb.Set(binary.BigEndian.AppendUint64([]byte("k"), uint64(i)), value(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil { // flushes the memtable to a compressed table
		t.Fatal(err)
	}
	if ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(ssts) == 0 {
		t.Fatal("no table written: the test reads nothing compressed")
	}
	for _, low := range []bool{false, true} {
		db, err := badger.Open(Badger(dir, low).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		err = db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.DefaultIteratorOptions)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				i := int(binary.BigEndian.Uint64(it.Item().Key()[1:]))
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				if !bytes.Equal(v, value(i)) {
					return fmt.Errorf("key %d reads %q", i, v)
				}
				got++
			}
			return nil
		})
		db.Close()
		if err != nil {
			t.Fatalf("low_memory %v: %v", low, err)
		}
		if got != n {
			t.Fatalf("low_memory %v: read %d entries, wrote %d", low, got, n)
		}
	}
}
