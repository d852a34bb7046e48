package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFileAtomic creates path from what fill writes, through a temporary
// file in the same directory that is synced and renamed into place only if
// fill succeeds. Readers see the old file or the whole new one; on error no
// file and no temporary is left behind. The file is created with perm less
// the process's umask, as open(2) creates files: perm is what the caller
// allows (0o666 for a file anyone may read, 0o600 for a secret), and the
// user's umask may only narrow it.
func WriteFileAtomic(path string, perm os.FileMode, fill func(w io.Writer) error) error {
	return FillFileAtomic(path, perm, Durable, func(f *os.File) error { return fill(WriteBehind(f)) })
}

// Durability says whether FillFileAtomic fsyncs the file before renaming
// it into place.
type Durability bool

const (
	// Durable: fsync, then rename. After the rename the whole file
	// survives a crash or a power loss. The default everywhere.
	Durable Durability = true
	// PageCache: rename without the fsync, as cp, curl -o and rsync (without
	// --fsync) leave a file: while the machine runs, readers see the old
	// file or the whole new one, but a power loss soon after may leave the
	// name on an empty or partial file. For scratch copies, when speed
	// matters more (nii export --no-fsync).
	PageCache Durability = false
)

// FillFileAtomic is WriteFileAtomic with the temporary file itself handed
// to fill, empty and open for reading and writing: for a caller that has
// another process write it (nii export passes its descriptor to the
// daemon). Whatever fill leaves in the file is synced (if d is Durable)
// and renamed into place if fill returns nil; otherwise the file is
// removed.
func FillFileAtomic(path string, perm os.FileMode, d Durability, fill func(f *os.File) error) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory: give a file name", path)
	}
	f, err := createTemp(filepath.Dir(path), "."+filepath.Base(path)+".nii-tmp-", perm.Perm())
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if d == Durable {
		if err := syncFile(f); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return nil
}

// syncFile is (*os.File).Sync; a variable so that a test can see whether
// FillFileAtomic called it.
var syncFile = (*os.File).Sync

func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	return WriteFileAtomic(path, perm, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// createTemp is os.CreateTemp with the mode given to open(2), so that the
// kernel applies the umask (os.CreateTemp always uses 0600, and a Chmod
// after it would ignore the umask).
func createTemp(dir, prefix string, perm os.FileMode) (*os.File, error) {
	for range 100 {
		b := make([]byte, 8)
		rand.Read(b)
		f, err := os.OpenFile(filepath.Join(dir, prefix+hex.EncodeToString(b)), os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("create a temporary file in %s: too many collisions", dir)
}
