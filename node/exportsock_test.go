//go:build linux

package node_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange/chunker"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
)

// exportSocket exports ref through the export socket into a file of dir,
// as nii export -o does, and returns the file's path and the result.
func exportSocket(t *testing.T, c *api.Client, ref nii.Ref, path string, perm os.FileMode) (*api.ExportResult, error) {
	t.Helper()
	var res *api.ExportResult
	err := node.FillFileAtomic(path, perm, node.Durable, func(f *os.File) error {
		var err error
		res, err = c.ExportTo(context.Background(), ref, f, false)
		return err
	})
	return res, err
}

// The daemon fills the file the client hands it with exactly the version's
// bytes (checked against an independent SHA-256 of the source), for sizes
// around the chunker's bounds and one of many chunks, open and restricted.
func TestExportSocketWritesExactBytes(t *testing.T) {
	tn := startNode(t, newHome(t, "greenwich"))
	if fi, err := os.Stat(filepath.Join(tn.home, api.ExportSocket)); err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export socket: %v, %v; want a socket of mode 0600", fi, err)
	}
	p := chunker.Default()
	dir := t.TempDir()
	for i, n := range []int{0, 1, p.Min + 1, p.Max + 1, 9<<20 + 7} {
		access := nii.AccessOpen
		if i%2 == 1 {
			access = nii.AccessRestricted
		}
		name := fmt.Sprintf("file-%d", i)
		data := randBytes(uint64(n)+11, n)
		tn.publish(t, name, data, node.PublishRequest{Meta: nii.Metadata{Title: name, Access: access}})
		out := filepath.Join(dir, name)
		res, err := exportSocket(t, tn.client, nii.Ref{Dataset: nii.DatasetID{Org: "greenwich", Name: name}}, out, 0o600)
		if err != nil {
			t.Fatalf("size %d (%s): %v", n, access, err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != sha256.Sum256(data) || res.Size != int64(n) || res.Ref != "greenwich/"+name+"@1" {
			t.Fatalf("size %d (%s): wrote %d bytes (result %+v), not the source's", n, access, len(got), res)
		}
	}
}

// The socket does nothing for a caller without the admin token: the file
// it sent stays empty, and the answer says which check failed.
func TestExportSocketRefusesWithoutAdminToken(t *testing.T) {
	tn := startNode(t, newHome(t, "greenwich"))
	tn.publish(t, "spend", randBytes(1, 1<<20), node.PublishRequest{})
	ref := nii.Ref{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend"}}
	for _, tok := range []string{"", "not-the-token", tn.client.Token + "x"} {
		c := *tn.client
		c.Token = tok
		f, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ExportTo(context.Background(), ref, f, false)
		fi, _ := f.Stat()
		f.Close()
		if !errors.Is(err, nii.ErrUnauthorized) || errors.Is(err, api.ErrNoFastPath) {
			t.Errorf("token %q: %v, want unauthorized", tok, err)
		}
		if fi.Size() != 0 {
			t.Errorf("token %q: the daemon wrote %d bytes", tok, fi.Size())
		}
	}
	// And with the token it works, on the same socket.
	if _, err := exportSocket(t, tn.client, ref, filepath.Join(t.TempDir(), "ok"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The daemon refuses a descriptor it would misuse: a file not empty, not
// open for writing, or not a regular file.
func TestExportSocketRefusesBadFiles(t *testing.T) {
	tn := startNode(t, newHome(t, "greenwich"))
	tn.publish(t, "spend", randBytes(1, 1<<20), node.PublishRequest{})
	ref := nii.Ref{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend"}}
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	os.WriteFile(full, []byte("someone's data"), 0o644)
	rw, _ := os.OpenFile(full, os.O_RDWR, 0)
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644)
	ro, _ := os.Open(filepath.Join(dir, "empty"))
	pr, pw, _ := os.Pipe()
	defer pr.Close()
	for name, f := range map[string]*os.File{"not empty": rw, "read-only": ro, "a pipe": pw} {
		_, err := tn.client.ExportTo(context.Background(), ref, f, false)
		f.Close()
		if !errors.Is(err, nii.ErrInvalid) {
			t.Errorf("%s: %v, want a refusal (invalid)", name, err)
		}
	}
	if b, _ := os.ReadFile(full); string(b) != "someone's data" {
		t.Fatalf("the daemon wrote over a file: %q", b)
	}
}

// A chunk damaged on disk fails the export through the socket, clearly,
// and leaves no file.
func TestCorruptChunkFailsExportSocket(t *testing.T) {
	home, rec := publishCorrupt(t)
	tn := startNode(t, home)
	out := filepath.Join(t.TempDir(), "copy.csv")
	_, err := exportSocket(t, tn.client, rec.Ref, out, 0o644)
	if err == nil || !errors.Is(err, nii.ErrCorrupt) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("export over a corrupt chunk: %v, want an error saying corrupt", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
		t.Fatalf("a failed export left files behind: %v", entries)
	}
}

// Without the socket (a daemon from before it, or where there is none) the
// client says so, and the HTTP path writes the same bytes.
func TestExportWithoutSocketUsesContent(t *testing.T) {
	tn := startNode(t, newHome(t, "greenwich"))
	data := randBytes(3, 3<<20)
	tn.publish(t, "spend", data, node.PublishRequest{})
	ref := nii.Ref{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend"}}
	if err := os.Remove(filepath.Join(tn.home, api.ExportSocket)); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := tn.client.ExportTo(context.Background(), ref, f, false); !errors.Is(err, api.ErrNoFastPath) {
		t.Fatalf("no socket: %v, want ErrNoFastPath", err)
	}
	var buf bytes.Buffer
	if _, _, err := tn.client.Content(context.Background(), ref, io.Writer(&buf)); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("the HTTP path: %v, %d bytes", err, buf.Len())
	}
}
