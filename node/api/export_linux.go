package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	if errors.As(err, &remote) && remote.Code == CodeInvalid {
		// A daemon from before pulls through the socket: it knows no
		// "pull", and took requests of at most 4 KiB.
		if msg := remote.APIError.Error; strings.Contains(msg, `unknown field "pull"`) || strings.Contains(msg, "export request longer than 4096 bytes") {
			return nil, fmt.Errorf("%w: the daemon does not pull through it", ErrNoFastPath)
		}
	}
	if err != nil {
		return nil, err
	}
	if res.Pulled == nil {
		return nil, errors.New("pull " + req.Ref + ": an answer without the pull's summary")
	}
	if res.MetaTrimmed {
		r, err := nii.ParseRef(res.Ref)
		if err != nil {
			return nil, fmt.Errorf("pull %s: the answer names %q: %w", req.Ref, res.Ref, err)
		}
		v, err := c.Version(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("pull %s: the file is written, but reading the version's metadata: %w", req.Ref, err)
		}
		res.Pulled.Version = *v
	}
	return res, nil
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
	buf := make([]byte, MaxExportAnswer+1)
	for {
		n, _, flags, _, err := conn.ReadMsgUnix(buf, nil)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil || n == 0 {
			if err == nil {
				err = io.EOF
			}
			return nil, fmt.Errorf("%s: the node closed %s without an answer: %w (it stopped or crashed: its log says why; run the command again)", what, path, err)
		}
		if flags&unix.MSG_TRUNC != 0 || n > MaxExportAnswer {
			return nil, fmt.Errorf("%s: an answer longer than %d bytes", what, MaxExportAnswer)
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
