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
	"strings"

	"github.com/nii-uk/nii"
	"golang.org/x/sys/unix"
)

// ExportTo has the daemon write version r into f, an empty file opened for
// writing, through the export socket (export.go): every chunk verified,
// pwritten at its offset. f is not synced: the caller syncs and renames it
// (node.FillFileAtomic). ErrNoFastPath means the socket is not there or
// does not admit this client, and nothing was written: use Content.
func (c *Client) ExportTo(ctx context.Context, r nii.Ref, f *os.File, noFsync bool) (*ExportResult, error) {
	return c.fillFile(ctx, "export "+r.String(), ExportRequest{Ref: r.String(), NoFsync: noFsync}, f, nil)
}

// PullTo pulls a version as Pull does and has the daemon write it into f
// as ExportTo does, each chunk fetched written as it arrives
// (ExportRequest.Pull), calling progress as the pull goes.
// ErrNoFastPath means the socket is not there, does not admit this
// client, or belongs to a daemon from before pulls through it: nothing
// was pulled or written, and the caller pulls over the HTTP API.
func (c *Client) PullTo(ctx context.Context, req PullRequest, f *os.File, noFsync bool, progress func(done, total int64)) (*ExportResult, error) {
	res, err := c.fillFile(ctx, "pull "+req.Ref, ExportRequest{Ref: req.Ref, NoFsync: noFsync,
		Pull: &ExportPull{Grant: req.Grant, AllowUnverified: req.AllowUnverified}}, f, progress)
	var remote *RemoteError
	if errors.As(err, &remote) && remote.Code == CodeInvalid && strings.Contains(remote.APIError.Error, `unknown field "pull"`) {
		return nil, fmt.Errorf("%w: the daemon does not pull through it", ErrNoFastPath)
	}
	if err == nil && res.Pulled == nil {
		return nil, errors.New("pull " + req.Ref + ": an answer without the pull's summary")
	}
	return res, err
}

// fillFile sends req, with the admin token, and f's descriptor over the
// export socket, passes progress messages to progress, and returns the
// daemon's answer.
func (c *Client) fillFile(ctx context.Context, what string, req ExportRequest, f *os.File, progress func(done, total int64)) (*ExportResult, error) {
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
	// Giving up closes the connection, which cancels the daemon's work.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req.Token = c.Token
	msg, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	_, _, err = conn.WriteMsgUnix(msg, unix.UnixRights(int(f.Fd())), nil)
	runtime.KeepAlive(f)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: send the request to %s: %w", what, path, err)
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := conn.Read(buf)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			return nil, fmt.Errorf("%s: the node closed %s without an answer: %w (its log says why)", what, path, err)
		}
		var res ExportResult
		if err := json.Unmarshal(buf[:n], &res); err != nil {
			return nil, fmt.Errorf("%s: an answer that is not an export result: %w", what, err)
		}
		if res.Progress != nil && res.Error == nil && res.Ref == "" {
			if progress != nil {
				progress(res.Progress.Done, res.Progress.Total)
			}
			continue
		}
		if res.Error != nil {
			return nil, &RemoteError{Status: StatusOf(res.Error.Code), APIError: *res.Error}
		}
		if res.Ref == "" {
			return nil, errors.New(what + ": an answer without the version written")
		}
		return &res, nil
	}
}
