package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/nii-uk/nii"
	"golang.org/x/sys/unix"
)

// ExportTo has the daemon write version r into f, an empty file opened for
// writing, through the export socket (export.go): every chunk verified,
// pwritten at its offset. f is not synced: the caller syncs and renames it
// (node.FillFileAtomic). ErrNoFastPath means the socket is not there or
// does not admit this client, and nothing was written: use Content.
func (c *Client) ExportTo(ctx context.Context, r nii.Ref, f *os.File, noFsync bool) (*ExportResult, error) {
	if c.Home == "" {
		return nil, ErrNoFastPath
	}
	path := filepath.Join(c.Home, ExportSocket)
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		// Missing (an older or a stopped daemon: the HTTP path says
		// which), refused, not ours, or a path too long for sun_path.
		return nil, fmt.Errorf("%w: %v", ErrNoFastPath, err)
	}
	defer conn.Close()
	// Giving up closes the connection, which cancels the daemon's export.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	msg, err := json.Marshal(ExportRequest{Token: c.Token, Ref: r.String(), NoFsync: noFsync})
	if err != nil {
		return nil, err
	}
	_, _, err = conn.WriteMsgUnix(msg, unix.UnixRights(int(f.Fd())), nil)
	runtime.KeepAlive(f)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("export %s: send the request to %s: %w", r, path, err)
	}
	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("export %s: the node closed %s without an answer: %w (its log says why)", r, path, err)
	}
	var res ExportResult
	if err := json.Unmarshal(buf[:n], &res); err != nil {
		return nil, fmt.Errorf("export %s: an answer that is not an export result: %w", r, err)
	}
	if res.Error != nil {
		return nil, &RemoteError{Status: StatusOf(res.Error.Code), APIError: *res.Error}
	}
	if res.Ref == "" {
		return nil, errors.New("export " + r.String() + ": an answer without the version written")
	}
	return &res, nil
}
