package node

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestFillFileAtomicDurability checks that Durable fsyncs the file once
// before the rename and PageCache (nii export --no-fsync) does not, that
// both leave the whole file under its name, and that a failed fill leaves
// nothing and syncs nothing.
func TestFillFileAtomicDurability(t *testing.T) {
	var synced []string
	real := syncFile
	syncFile = func(f *os.File) error { synced = append(synced, f.Name()); return real(f) }
	t.Cleanup(func() { syncFile = real })

	dir := t.TempDir()
	want := []byte("ons_code,amount\nE09000011,512.00\n")
	fill := func(f *os.File) error { _, err := f.Write(want); return err }
	for _, c := range []struct {
		name  string
		d     Durability
		syncs int
	}{{"durable", Durable, 1}, {"page-cache", PageCache, 0}} {
		synced = nil
		path := filepath.Join(dir, c.name+".csv")
		if err := FillFileAtomic(path, 0o644, c.d, fill); err != nil {
			t.Fatal(err)
		}
		if len(synced) != c.syncs {
			t.Fatalf("%s: %d fsyncs (%v), want %d", c.name, len(synced), synced, c.syncs)
		}
		if c.syncs == 1 && (filepath.Dir(synced[0]) != dir || synced[0] == path) {
			t.Fatalf("%s: synced %s, want the temporary file beside %s", c.name, synced[0], path)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != string(want) {
			t.Fatalf("%s: read back %q, %v", c.name, got, err)
		}
	}

	synced = nil
	boom := errors.New("the daemon went away")
	path := filepath.Join(dir, "failed.csv")
	if err := FillFileAtomic(path, 0o644, Durable, func(f *os.File) error { f.Write(want[:5]); return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed fill: %v, want %v", err, boom)
	}
	if len(synced) != 0 {
		t.Fatalf("a failed fill was synced: %v", synced)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed fill left %s: %v", path, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("want only the two good files in %s, found %d entries", dir, len(entries))
	}
}
