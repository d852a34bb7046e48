package node

import (
	"os"

	"golang.org/x/sys/unix"
)

// writeBehind is the file a large atomic write fills: every writeBehindStep
// bytes it asks the kernel to start writing the step back
// (sync_file_range, SYNC_FILE_RANGE_WRITE, which does not wait), so the
// disk works while the rest arrives and the closing fsync has little left
// to wait for.
type writeBehind struct {
	f          *os.File
	off, begun int64
}

const writeBehindStep = 8 << 20

func newWriteBehind(f *os.File) *writeBehind { return &writeBehind{f: f} }

func (w *writeBehind) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.off += int64(n)
	if w.off-w.begun >= writeBehindStep {
		// Advisory: an error here only loses the head start.
		unix.SyncFileRange(int(w.f.Fd()), w.begun, w.off-w.begun, unix.SYNC_FILE_RANGE_WRITE)
		w.begun = w.off
	}
	return n, err
}
