package node

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// writeBehind fills a file from offset 0 with pwrite(2) (so it ignores,
// and leaves alone, the file's own offset), and every
// writeBehindStep bytes asks the kernel to start writing the step back
// (sync_file_range, SYNC_FILE_RANGE_WRITE, which does not wait), so the
// disk works while the rest arrives and the closing fsync has little left
// to wait for.
type writeBehind struct {
	f          *os.File
	off, begun int64
}

const writeBehindStep = 8 << 20

// WriteBehind is the writer of a large file that is fsynced when it is
// whole: WriteFileAtomic's, and the export socket's.
func WriteBehind(f *os.File) io.Writer { return &writeBehind{f: f} }

func (w *writeBehind) Write(b []byte) (int, error) {
	n, err := w.f.WriteAt(b, w.off)
	w.off += int64(n)
	if w.off-w.begun >= writeBehindStep {
		// Advisory: an error here only loses the head start.
		unix.SyncFileRange(int(w.f.Fd()), w.begun, w.off-w.begun, unix.SYNC_FILE_RANGE_WRITE)
		w.begun = w.off
	}
	return n, err
}

// writeBehindAt is writeBehind for writes at any offset, from several
// goroutines (the export socket's, exchange.Store.WriteAt): every
// writeBehindStep bytes written, one of them asks the kernel to start
// writing back whatever of the file is dirty.
type writeBehindAt struct {
	f       *os.File
	written atomic.Int64
	kicked  atomic.Int64
}

// WriteBehindAt is WriteBehind for writers at offsets.
func WriteBehindAt(f *os.File) io.WriterAt { return &writeBehindAt{f: f} }

func (w *writeBehindAt) WriteAt(b []byte, off int64) (int, error) {
	n, err := w.f.WriteAt(b, off)
	total := w.written.Add(int64(n))
	if k := w.kicked.Load(); total-k >= writeBehindStep && w.kicked.CompareAndSwap(k, total) {
		// Advisory, as above; offset 0 and length 0 mean the whole file.
		unix.SyncFileRange(int(w.f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
	return n, err
}

// ChmodAsCreated gives f the mode a file created with perm gets: perm less
// the process's umask (createTemp's rule), for a file created narrower
// until its contents said how widely it may be read ('nii pull -o FILE'
// creates 0600, and widens only once the pull says the data is open).
func ChmodAsCreated(f *os.File, perm os.FileMode) error {
	return f.Chmod(perm.Perm() &^ umask())
}

// umask is the process's umask, read from /proc/self/status (Linux 4.7
// and later), where reading it does not set it as umask(2) does. Where
// that cannot be read (an older kernel, no /proc), it is umask(2)'s,
// set back at once: the CLI creates no file meanwhile.
func umask() os.FileMode {
	if m, err := procUmask(); err == nil {
		return m
	}
	m := unix.Umask(0o077)
	unix.Umask(m)
	return os.FileMode(m) & os.ModePerm
}

func procUmask() (os.FileMode, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				return 0, fmt.Errorf("umask %q: %w", v, err)
			}
			return os.FileMode(m) & os.ModePerm, nil
		}
	}
	return 0, errors.New("no Umask line in /proc/self/status")
}
