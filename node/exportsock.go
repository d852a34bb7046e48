package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
)

// ExportInto writes version ref into f, as for a descriptor a client of
// the export socket sent (node/api/export.go): every chunk verified as for the
// HTTP export, the bulk written directly (Store.WriteDirect) where the
// file system allows, since the client fsyncs next, and otherwise with
// pwrite and the write-back started as it goes; with nii export
// --no-fsync, into the page cache alone. The client syncs and renames
// the file; this only fills it. f must be an empty regular file open for
// writing: the daemon never writes over data it was not asked to.
func (n *Node) ExportInto(ctx context.Context, ref nii.Ref, f *os.File, noFsync bool) (*api.ExportResult, error) {
	if err := checkExportFile(f); err != nil {
		return nil, err
	}
	rec, err := n.store.Version(ref)
	if err != nil {
		return nil, err
	}
	var size int64
	if noFsync {
		// The client will not fsync: the page cache is the fastest place
		// to leave the bytes, and starting write-back now would only make
		// these writes wait for the disk.
		size, err = n.store.WriteAt(ctx, rec, f)
	} else {
		// The client fsyncs next: write the bulk directly, so that there
		// is little left to sync (exchange/directio.go).
		size, err = n.store.WriteDirect(ctx, rec, f)
		if errors.Is(err, errors.ErrUnsupported) {
			size, err = n.store.WriteAt(ctx, rec, WriteBehindAt(f))
		}
	}
	if err != nil {
		n.log.Error("export failed", slog.String(nii.LogDataset, rec.Ref.String()), slog.String(nii.LogErr, err.Error()))
		return nil, err
	}
	if size != rec.Size {
		return nil, fmt.Errorf("%w: export %s wrote %d bytes, the manifest says %d", nii.ErrCorrupt, rec.Ref, size, rec.Size)
	}
	return &api.ExportResult{Ref: rec.Ref.String(), Size: size, Manifest: rec.Manifest}, nil
}
