package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestDeps keeps the API's package light: a third-party Go client must not
// link the node's storage or networking.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err) // no toolchain to ask
	}
	for _, p := range strings.Fields(string(out)) {
		for _, banned := range []string{"badger", "libp2p", "memberlist"} {
			if strings.Contains(p, banned) {
				t.Errorf("node/api links %s", p)
			}
		}
	}
}

// serve answers every request with the API error for err, as the node's
// handlers do.
func serve(t *testing.T, err error) *api.Client {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, body := api.ErrorFor(err)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	return &api.Client{Base: srv.URL}
}

// refusal is an error with a reason, as auth.Denial is.
type refusal struct{}

func (refusal) Error() string         { return "refused (expired): expired yesterday" }
func (refusal) Is(target error) bool  { return target == nii.ErrRefused }
func (refusal) RefusalReason() string { return "expired" }

// TestEveryKindCrosses checks every row of the error table both ways: an
// error of each kind, answered as the node answers it, is that kind (and no
// other) on the client side.
func TestEveryKindCrosses(t *testing.T) {
	for _, kind := range nii.Kinds {
		t.Run(kind.Error(), func(t *testing.T) {
			err := fmt.Errorf("dataset x/y: %w: and what to do", kind)
			_, gotErr := serve(t, err).Status(context.Background())
			var re *api.RemoteError
			if !errors.As(gotErr, &re) || re.Error() != err.Error() {
				t.Fatalf("got %v (%T), want a RemoteError saying %q", gotErr, gotErr, err)
			}
			if !errors.Is(gotErr, kind) || nii.KindOf(gotErr) != kind {
				t.Fatalf("code %q (HTTP %d): kind %v, want %v", re.Code, re.Status, nii.KindOf(gotErr), kind)
			}
			if re.Status != api.StatusOf(re.Code) {
				t.Errorf("HTTP %d for code %q, StatusOf says %d", re.Status, re.Code, api.StatusOf(re.Code))
			}
		})
	}
	t.Run("no kind", func(t *testing.T) {
		_, err := serve(t, errors.New("disk on fire")).Status(context.Background())
		var re *api.RemoteError
		if !errors.As(err, &re) || re.Code != api.CodeInternal || re.Status != 500 || nii.KindOf(err) != nil {
			t.Fatalf("got %v (%+v), want internal of no kind", err, re)
		}
	})
	t.Run("reason", func(t *testing.T) {
		_, err := serve(t, fmt.Errorf("pull x/y@1: %w", refusal{})).Status(context.Background())
		if !errors.Is(err, nii.ErrRefused) || nii.ReasonOf(err) != "expired" {
			t.Fatalf("got %v, reason %q; want refused (expired)", err, nii.ReasonOf(err))
		}
	})
	t.Run("not json", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		t.Cleanup(srv.Close)
		_, err := (&api.Client{Base: srv.URL}).Status(context.Background())
		if !errors.Is(err, nii.ErrNotFound) {
			t.Fatalf("a bare 404: %v, want not found", err)
		}
	})
}

// TestCallTimeout: a node that never answers a plain call is given up on
// after the client's Timeout, with an error saying so.
func TestCallTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(srv.Close)
	cl := &api.Client{Base: srv.URL, Timeout: 50 * time.Millisecond}
	_, err := cl.Status(context.Background())
	if !errors.Is(err, nii.ErrUnavailable) || !strings.Contains(err.Error(), "did not answer within 50ms") {
		t.Fatalf("got %v, want unavailable: did not answer within 50ms", err)
	}
}

// TestStreamsHaveNoCallTimeout: a content stream is bounded by its stall
// deadline, not the per-call timeout, so a long export works; one that
// stops sending fails with a stall error.
func TestStreamsHaveNoCallTimeout(t *testing.T) {
	const body = "a,b\n1,2\n"
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", api.TrailerError)
		w.Header().Set(api.HeaderRef, "x/y@1")
		w.Header().Set(api.HeaderSize, strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, body[:3])
		w.(http.Flusher).Flush()
		if strings.Contains(r.URL.Path, "/versions/2/") { // stalls
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, body[3:])
	}))
	t.Cleanup(srv.Close)
	ref := func(v uint64) nii.Ref { return nii.Ref{Dataset: nii.DatasetID{Org: "x", Name: "y"}, Version: v} }

	cl := &api.Client{Base: srv.URL, Timeout: time.Nanosecond, Stall: time.Minute}
	var got strings.Builder
	if _, n, err := cl.Content(context.Background(), ref(1), &got); err != nil || got.String() != body || n != int64(len(body)) {
		t.Fatalf("export with a 1 ns call timeout: %q, %d, %v", got.String(), n, err)
	}
	cl.Stall = 50 * time.Millisecond
	_, _, err := cl.Content(context.Background(), ref(2), io.Discard)
	if !errors.Is(err, nii.ErrUnavailable) || !strings.Contains(err.Error(), "no progress for 50ms") {
		t.Fatalf("stalled export: %v, want unavailable: no progress for 50ms", err)
	}
}

// TestDeadDaemonSaysWhy: when a home's api.addr leads nowhere, the error
// says what the home tells of why: the daemon's process is gone, with the
// runtime's crash report if it left one, or it runs and does not answer.
func TestDeadDaemonSaysWhy(t *testing.T) {
	// A listener that hangs up on every connection: nothing answers HTTP.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// The pid of a process that has exited.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid

	home := t.TempDir()
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(home, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(api.ConfigFile, "org = \"x\"\n")
	write(api.AddrFile, "http://"+ln.Addr().String()+"\n")
	status := func() error {
		t.Helper()
		cl, err := api.Dial(home)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.Status(context.Background())
		if !errors.Is(err, api.ErrNotRunning) || !errors.Is(err, nii.ErrUnavailable) {
			t.Fatalf("got %v, want ErrNotRunning", err)
		}
		return err
	}

	write(api.LockFile, strconv.Itoa(dead)+"\n")
	if err := status(); !strings.Contains(err.Error(), "is gone") || !strings.Contains(err.Error(), "its log") {
		t.Errorf("dead, no crash report: %v", err)
	}
	write(api.CrashFile, "\nfatal error: unexpected fault address 0x7f00\nsignal SIGBUS: bus error\n")
	if err := status(); !strings.Contains(err.Error(), "unexpected fault address") || !strings.Contains(err.Error(), api.CrashFile) {
		t.Errorf("dead with a crash report: %v", err)
	}
	write(api.LockFile, strconv.Itoa(os.Getpid())+"\n")
	if err := status(); !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("alive, not answering: %v", err)
	}

	// No api.addr at all, but a crash report: Dial says it crashed.
	if err := os.Remove(filepath.Join(home, api.AddrFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Dial(home); !errors.Is(err, api.ErrNotRunning) || !strings.Contains(err.Error(), "fatal error") {
		t.Errorf("Dial with no daemon after a crash: %v", err)
	}
}
