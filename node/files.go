package node

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFileAtomic creates path (mode perm) from what fill writes, through a
// temporary file in the same directory that is synced and renamed into place
// only if fill succeeds. Readers see the old file or the whole new one; on
// error no file and no temporary is left behind.
func WriteFileAtomic(path string, perm os.FileMode, fill func(w io.Writer) error) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory: give a file name", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".nii-tmp-*")
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
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
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

func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	return WriteFileAtomic(path, perm, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}
