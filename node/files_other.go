//go:build !linux

package node

import (
	"errors"
	"io"
	"os"
)

// WriteBehind returns the writer of a large file that is fsynced when it
// is whole (files_linux.go starts its write-back early; here it is f).
func WriteBehind(f *os.File) io.Writer { return f }

// WriteBehindAt is WriteBehind for writers at offsets.
func WriteBehindAt(f *os.File) io.WriterAt { return f }

// ChmodAsCreated is Linux only (files_linux.go): only the export socket's
// pull, Linux only too, calls it.
func ChmodAsCreated(f *os.File, perm os.FileMode) error { return errors.ErrUnsupported }
