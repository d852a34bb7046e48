package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
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
	return n.exportRecord(ctx, rec, f, noFsync)
}

// exportRecord is ExportInto for a version found.
func (n *Node) exportRecord(ctx context.Context, rec *exchange.VersionRecord, f *os.File, noFsync bool) (*api.ExportResult, error) {
	var (
		size int64
		err  error
	)
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

// PullInto pulls version ref (Pull) and writes it into f, as ExportInto
// would after the pull, but with each chunk fetched written into f as it
// arrives, from the verified bytes in hand (exchange.PullRequest.Copy),
// rather than read back from the packs it was just written to. The chunks
// not fetched (held already, assembled by delta, or fetched by another
// pull of the version running at the same time) are written from the
// store afterwards, verified as an export verifies them. A write into f
// that fails stops the copying, not the pull: the version is stored and
// the error says so. With noFsync the writes are left in the page cache;
// otherwise write-back is started as they go, since the client fsyncs
// next. f must be as for ExportInto.
func (n *Node) PullInto(ctx context.Context, ref nii.Ref, opt PullOptions, f *os.File, noFsync bool) (*exchange.PullResult, *api.ExportResult, error) {
	if err := checkExportFile(f); err != nil {
		return nil, nil, err
	}
	var w io.WriterAt = f
	if !noFsync {
		w = WriteBehindAt(f)
	}
	opt.Copy = fileCopy{WriterAt: w, f: f}
	res, err := n.Pull(ctx, ref, opt)
	if err != nil {
		return res, nil, err
	}
	rec := res.Record
	if res.CopyErr != nil {
		// The pull went on into the store without the file (other pulls
		// may have joined it): an export now can write the file whole.
		return res, nil, fmt.Errorf("pulled %s into the store, but %w (nii export %s -o FILE writes it from the store)", rec.Ref, res.CopyErr, rec.Ref)
	}
	if res.CopiedChunks == 0 {
		// Nothing came through the copy: the export as ExportInto
		// writes it (directly, where it can).
		out, err := n.exportRecord(ctx, rec, f, noFsync)
		return res, out, err
	}
	filled, err := n.store.WriteAtExcept(ctx, rec, w, res.Copied)
	if err != nil {
		n.log.Error("export failed", slog.String(nii.LogDataset, rec.Ref.String()), slog.String(nii.LogErr, err.Error()))
		return res, nil, err
	}
	if size := res.CopiedBytes + filled; size != rec.Size {
		return res, nil, fmt.Errorf("%w: pull %s wrote %d bytes into the file, the manifest says %d", nii.ErrCorrupt, rec.Ref, size, rec.Size)
	}
	return res, &api.ExportResult{Ref: rec.Ref.String(), Size: rec.Size, Manifest: rec.Manifest}, nil
}

// fileCopy is the file a pull writes its version into (PullInto).
type fileCopy struct {
	io.WriterAt
	f *os.File
}

func (c fileCopy) Reserve(size int64) error { return exchange.ReserveFile(c.f, size) }
