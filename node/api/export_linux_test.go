//go:build linux

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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
			read := make(chan ExportRequest, 1) // the socket is no sync point for the race detector
			fakeExportDaemon(t, home, func(req []byte) [][]byte {
				var got ExportRequest
				if err := json.Unmarshal(req, &got); err != nil {
					t.Error(err)
				}
				read <- got
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
			if got := <-read; !reflect.DeepEqual(got, want) {
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

// bigMeta is metadata whose JSON is longer than an answer may be: the
// most columns, with long names, and the longest description.
func bigMeta() nii.Metadata {
	m := nii.Metadata{Title: "wide", Access: nii.AccessRestricted, Description: strings.Repeat("d", nii.MaxDescriptionLen), Table: &nii.Table{}}
	for i := range nii.MaxColumns {
		m.Table.Columns = append(m.Table.Columns, nii.Column{Name: fmt.Sprintf("%0120d", i), Type: "string"})
	}
	return m
}

// An answer too long for the socket leaves the version's table and
// description out and says so; the rest of the summary, the access
// above all, stays.
func TestMarshalAnswerTrims(t *testing.T) {
	res := &ExportResult{Ref: "greenwich/wide@1", Size: 9, Pulled: &PullSummary{FetchedChunks: 2, Version: VersionInfo{Ref: "greenwich/wide@1", Meta: bigMeta()}}}
	if full, _ := json.Marshal(res); len(full) <= MaxExportAnswer {
		t.Fatalf("the test's answer is only %d bytes", len(full))
	}
	b, err := MarshalAnswer(res)
	if err != nil || len(b) > MaxExportAnswer {
		t.Fatalf("MarshalAnswer: %d bytes, %v", len(b), err)
	}
	var got ExportResult
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	m := got.Pulled.Version.Meta
	if !got.MetaTrimmed || m.Table != nil || m.Description != "" || m.Access != nii.AccessRestricted || m.Title != "wide" || got.Pulled.FetchedChunks != 2 {
		t.Fatalf("trimmed answer: %+v, meta %+v", got, m)
	}
	if res.Pulled.Version.Meta.Table == nil {
		t.Fatal("MarshalAnswer trimmed the caller's summary")
	}
	small := &ExportResult{Ref: "greenwich/x@1", Pulled: &PullSummary{Version: VersionInfo{Meta: nii.Metadata{Description: "kept"}}}}
	if b, _ := MarshalAnswer(small); strings.Contains(string(b), "meta_trimmed") || !strings.Contains(string(b), "kept") {
		t.Fatalf("a short answer was trimmed: %s", b)
	}
}

// Given a trimmed answer, PullTo reads the version's whole metadata over
// HTTP, so a caller sees the summary POST /api/v1/pull would give.
func TestPullToReadsTrimmedMeta(t *testing.T) {
	full := VersionInfo{Ref: "greenwich/wide@1", Version: 1, Meta: bigMeta()}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != VersionPath(nii.Ref{Dataset: nii.DatasetID{Org: "greenwich", Name: "wide"}, Version: 1}) {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(full)
	}))
	defer srv.Close()
	home := t.TempDir()
	fakeExportDaemon(t, home, func([]byte) [][]byte {
		b, err := MarshalAnswer(&ExportResult{Ref: full.Ref, Size: 9, Pulled: &PullSummary{Version: full}})
		if err != nil {
			t.Error(err)
		}
		return [][]byte{b}
	})
	c := &Client{Home: home, Token: "t", Base: srv.URL, HTTP: srv.Client()}
	res, err := c.PullTo(context.Background(), PullRequest{Ref: "greenwich/wide"}, tempFile(t), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Pulled.Version, full) {
		t.Fatalf("the summary's version after a trimmed answer: %d columns, description %d bytes",
			len(res.Pulled.Version.Meta.Table.Columns), len(res.Pulled.Version.Meta.Description))
	}
}
