package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
)

// exportInto writes version ref into f, a descriptor a client of the
// export socket sent (node/api/export.go): every chunk verified by the
// store's WriteTo as for the HTTP export, written with pwrite from offset
// 0 with the write-back started as it goes (unless the client will not
// fsync: nii export --no-fsync). The client syncs and renames
// the file; this only fills it. f must be an empty regular file open for
// writing: the daemon never writes over data it was not asked to.
func (n *Node) exportInto(ctx context.Context, ref nii.Ref, f *os.File, noFsync bool) (*api.ExportResult, error) {
	if err := checkExportFile(f); err != nil {
		return nil, err
	}
	rec, err := n.store.Version(ref)
	if err != nil {
		return nil, err
	}
	var w io.WriterAt = WriteBehindAt(f)
	if noFsync {
		// The client will not fsync: starting write-back now would only
		// make these writes wait for the disk.
		w = f
	}
	size, err := n.store.WriteAt(ctx, rec, w)
	if err != nil {
		n.log.Error("export failed", slog.String(nii.LogDataset, rec.Ref.String()), slog.String(nii.LogErr, err.Error()))
		return nil, err
	}
	if size != rec.Size {
		return nil, fmt.Errorf("%w: export %s wrote %d bytes, the manifest says %d", nii.ErrCorrupt, rec.Ref, size, rec.Size)
	}
	return &api.ExportResult{Ref: rec.Ref.String(), Size: size, Manifest: rec.Manifest}, nil
}
