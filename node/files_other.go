//go:build !linux

package node

import (
	"io"
	"os"
)

// WriteBehind returns the writer of a large file that is fsynced when it
// is whole (files_linux.go starts its write-back early; here it is f).
func WriteBehind(f *os.File) io.Writer { return f }

// WriteBehindAt is WriteBehind for writers at offsets.
func WriteBehindAt(f *os.File) io.WriterAt { return f }
