//go:build linux

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/nii-uk/nii"
)

// fakeExportDaemon listens on home's export socket and answers one
// connection with what answer returns for the request it read.
func fakeExportDaemon(t *testing.T, home string, answer func(req []byte) [][]byte) {
	t.Helper()
	path := filepath.Join(home, ExportSocket)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		buf, oob := make([]byte, MaxExportMessage), make([]byte, 64)
		n, _, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		for _, m := range answer(buf[:n]) {
			if _, err := c.Write(m); err != nil {
				return
			}
		}
	}()
}

func tempFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// A daemon from before pulls through the export socket refuses the
// request's "pull" field as unknown, as its strict decoding did: PullTo
// then says ErrNoFastPath, so that the CLI pulls over HTTP instead.
func TestPullToOlderDaemon(t *testing.T) {
	home := t.TempDir()
	fakeExportDaemon(t, home, func(req []byte) [][]byte {
		// The older daemon's request, and its decoding.
		var old struct {
			Token   string `json:"token"`
			Ref     string `json:"ref"`
			NoFsync bool   `json:"no_fsync,omitempty"`
		}
		dec := json.NewDecoder(bytes.NewReader(req))
		dec.DisallowUnknownFields()
		err := dec.Decode(&old)
		if err == nil {
			t.Error("the request decoded without its pull field")
			err = errors.New("no pull field")
		}
		_, e := ErrorFor(fmt.Errorf("%w: export request: %v", nii.ErrInvalid, err))
		b, _ := json.Marshal(ExportResult{Error: &e})
		return [][]byte{b}
	})
	c := &Client{Home: home, Token: "t"}
	_, err := c.PullTo(context.Background(), PullRequest{Ref: "greenwich/spend"}, tempFile(t), false, nil)
	if !errors.Is(err, ErrNoFastPath) {
		t.Fatalf("PullTo against an older daemon: %v, want ErrNoFastPath", err)
	}
}

// PullTo sends the pull's fields, passes each progress message on, and
// returns the answer after them; an answer without the pull's summary
// is an error.
func TestPullToProgressThenAnswer(t *testing.T) {
	sum := &PullSummary{FetchedChunks: 3, CopiedChunks: 3}
	for _, tc := range []struct {
		name   string
		pulled *PullSummary
		ok     bool
	}{{"with summary", sum, true}, {"without", nil, false}} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			var got ExportRequest
			fakeExportDaemon(t, home, func(req []byte) [][]byte {
				if err := json.Unmarshal(req, &got); err != nil {
					t.Error(err)
				}
				var out [][]byte
				for _, p := range []PullProgress{{Done: 1, Total: 9}, {Done: 9, Total: 9}} {
					b, _ := json.Marshal(ExportResult{Progress: &p})
					out = append(out, b)
				}
				b, _ := json.Marshal(ExportResult{Ref: "greenwich/spend@1", Size: 9, Pulled: tc.pulled})
				return append(out, b)
			})
			c := &Client{Home: home, Token: "secret"}
			var seen []PullProgress
			res, err := c.PullTo(context.Background(), PullRequest{Ref: "greenwich/spend", Grant: "g", AllowUnverified: true}, tempFile(t), true,
				func(done, total int64) { seen = append(seen, PullProgress{done, total}) })
			want := ExportRequest{Token: "secret", Ref: "greenwich/spend", NoFsync: true, Pull: &ExportPull{Grant: "g", AllowUnverified: true}}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("the daemon read %+v, want %+v", got, want)
			}
			if !reflect.DeepEqual(seen, []PullProgress{{1, 9}, {9, 9}}) {
				t.Fatalf("progress passed on: %v", seen)
			}
			if tc.ok != (err == nil) || tc.ok && !reflect.DeepEqual(res.Pulled, sum) {
				t.Fatalf("answer %+v, %v", res, err)
			}
		})
	}
}
