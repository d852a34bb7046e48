package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
	"golang.org/x/sys/unix"
)

// exportSocket is the daemon's end of the export socket
// (node/api/export.go): a SOCK_SEQPACKET Unix socket in the home, mode
// 0600, where the CLI sends a file descriptor for the daemon to fill with
// a version's verified bytes.
type exportSocket struct {
	ln     *net.UnixListener
	path   string
	ctx    context.Context // cancelled by close: exports in flight stop
	cancel context.CancelFunc
	once   sync.Once
}

// exportRequestWait bounds how long a connection may take to send its one
// request.
const exportRequestWait = 10 * time.Second

// startExportSocket listens on the home's export socket. Failing to is not
// fatal: the CLI falls back to the HTTP API, and the log says why.
func (n *Node) startExportSocket() {
	path := filepath.Join(n.cfg.Home, api.ExportSocket)
	ln, err := listenOwnerOnly(path)
	if err != nil {
		n.log.Warn("export socket not available: nii export uses the HTTP API", slog.String(nii.LogErr, err.Error()))
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &exportSocket{ln: ln, path: path, ctx: ctx, cancel: cancel}
	n.exportSock = s
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				if ctx.Err() == nil {
					n.log.Error("export socket stopped", slog.String(nii.LogErr, err.Error()))
				}
				return
			}
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.serveExport(ctx, c)
			}()
		}
	}()
}

// listenOwnerOnly listens on a SOCK_SEQPACKET socket at path that only
// this user can connect to: bound under a temporary name, made 0600, then
// renamed into place, so it is never reachable with wider permissions. A
// socket left at path by a daemon that died is replaced (the home's lock
// says no other daemon runs here).
func listenOwnerOnly(path string) (*net.UnixListener, error) {
	tmp := path + ".tmp"
	os.Remove(tmp)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: tmp, Net: "unixpacket"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // the name changes below: close removes it
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	return ln, nil
}

// close stops accepting, cancels the exports in flight and removes the
// socket; the node's WaitGroup waits for their goroutines.
func (s *exportSocket) close() {
	s.once.Do(func() {
		s.cancel()
		s.ln.Close()
		os.Remove(s.path)
	})
}

// serveExport answers one connection: one request, one answer.
func (n *Node) serveExport(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	res := n.exportRequest(ctx, c)
	b, err := api.MarshalAnswer(res)
	if err == nil {
		c.SetWriteDeadline(time.Now().Add(exportRequestWait))
		_, err = c.Write(b)
	}
	if err != nil && ctx.Err() == nil {
		n.log.Debug("export socket: answer not delivered", slog.String(nii.LogErr, err.Error()))
	}
}

// exportRequest reads the request and its descriptor, checks the admin
// token, and exports. Every descriptor received is closed before it
// returns; none is used before the token is checked.
func (n *Node) exportRequest(ctx context.Context, c *net.UnixConn) *api.ExportResult {
	fail := func(err error) *api.ExportResult {
		_, e := api.ErrorFor(err)
		return &api.ExportResult{Error: &e}
	}
	c.SetReadDeadline(time.Now().Add(exportRequestWait))
	buf := make([]byte, api.MaxExportMessage+1)
	oob := make([]byte, unix.CmsgSpace(4*4)) // room for a few, to close what a bad client sends
	k, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	fds := receivedFDs(oob[:oobn])
	defer func() {
		for _, fd := range fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	if err != nil {
		return fail(fmt.Errorf("%w: export request: %v", nii.ErrInvalid, err))
	}
	if flags&unix.MSG_TRUNC != 0 || k > api.MaxExportMessage {
		return fail(nii.Errorf(nii.ErrInvalid, "export request longer than %d bytes", api.MaxExportMessage))
	}
	if flags&unix.MSG_CTRUNC != 0 {
		return fail(nii.Errorf(nii.ErrInvalid, "export request with more descriptors than one"))
	}
	req, ref, err := api.ParseExportRequest(buf[:k])
	if err != nil {
		return fail(err)
	}
	if subtle.ConstantTimeCompare([]byte(req.Token), []byte(n.apiToken)) != 1 {
		return fail(nii.Errorf(nii.ErrUnauthorized, "export: wrong admin token (the nii CLI reads it from the home's %s)", TokenFile))
	}
	if len(fds) != 1 {
		return fail(nii.Errorf(nii.ErrInvalid, "export request with %d file descriptors: want the one file to write", len(fds)))
	}
	// Named so that its errors read "write output: …".
	f := os.NewFile(uintptr(fds[0]), "output")
	fds[0] = -1 // f owns it now
	defer f.Close()

	// The client hanging up (Ctrl-C) cancels the export: the socket is
	// read until it closes, which it does once the answer is sent.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.SetReadDeadline(time.Time{})
	watch := make(chan struct{})
	go func() {
		defer close(watch)
		c.Read(make([]byte, 1))
		cancel()
	}()
	var res *api.ExportResult
	if req.Pull != nil {
		res, err = n.pullRequest(ctx, c, ref, req, f)
	} else {
		res, err = n.ExportInto(ctx, ref, f, req.NoFsync)
	}
	// Stop the watcher before returning: wake its read, wait for it.
	c.SetReadDeadline(time.Now())
	<-watch
	if err != nil {
		return fail(err)
	}
	return res
}

// pullRequest runs a pull through the export socket (PullInto) and
// returns its answer. The pull's progress goes to the client from a
// goroutine of its own, so a client slow to read never holds the pull up:
// the first report at once, then the newest at most every
// api.PullProgressEvery, and the last one, if not yet sent, before the
// answer. The goroutine stops before pullRequest returns.
func (n *Node) pullRequest(ctx context.Context, c *net.UnixConn, ref nii.Ref, req api.ExportRequest, f *os.File) (*api.ExportResult, error) {
	var (
		mu   sync.Mutex
		cur  *api.PullProgress // nil until the pull reports
		kick = make(chan struct{}, 1)
		quit = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		var sent api.PullProgress
		send := func() bool {
			mu.Lock()
			p := cur
			mu.Unlock()
			if p == nil || *p == sent {
				return true
			}
			b, err := json.Marshal(api.ExportResult{Progress: p})
			if err == nil {
				c.SetWriteDeadline(time.Now().Add(exportRequestWait))
				_, err = c.Write(b)
			}
			sent = *p
			return err == nil // else the answer, if it can still go, says the rest
		}
		for {
			select {
			case <-quit:
				send()
				return
			case <-kick:
			}
			if !send() {
				return
			}
			select {
			case <-quit:
				send()
				return
			case <-time.After(api.PullProgressEvery):
			}
		}
	}()
	opt := PullOptions{Grant: req.Pull.Grant, AllowUnverified: req.Pull.AllowUnverified, Progress: func(done, total int64) {
		mu.Lock()
		cur = &api.PullProgress{Done: done, Total: total}
		mu.Unlock()
		select {
		case kick <- struct{}{}:
		default:
		}
	}}
	res, out, err := n.PullInto(ctx, ref, opt, f, req.NoFsync)
	close(quit)
	<-done
	if err != nil {
		return nil, err
	}
	out.Pulled = n.pullSummary(ref, res, req.Pull.AllowUnverified)
	return out, nil
}

// receivedFDs returns the descriptors in a message's control data.
func receivedFDs(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

// checkExportFile refuses a descriptor that is not an empty regular file
// open for writing (and not in append mode, which pwrite would ignore).
func checkExportFile(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("%w: export: the descriptor sent: %v", nii.ErrInvalid, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nii.Errorf(nii.ErrInvalid, "export: the descriptor sent is not a regular file")
	}
	if st.Size != 0 {
		return nii.Errorf(nii.ErrInvalid, "export: the file sent is not empty (%d bytes): send a new one", st.Size)
	}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("%w: export: the descriptor sent: %v", nii.ErrInvalid, err)
	}
	if acc := fl & unix.O_ACCMODE; acc != unix.O_WRONLY && acc != unix.O_RDWR {
		return nii.Errorf(nii.ErrInvalid, "export: the file sent is not open for writing")
	}
	if fl&unix.O_APPEND != 0 {
		return nii.Errorf(nii.ErrInvalid, "export: the file sent is open in append mode")
	}
	return nil
}
