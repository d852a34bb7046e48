//go:build linux

package node_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

// PullInto writes the version into the file as the chunks arrive, and the
// chunks not fetched from the store: the file is the published bytes
// whether everything was fetched, nothing was (the version was held), or
// the pull was refused (nothing is written, and the file stays empty).
func TestPullInto(t *testing.T) {
	nodes := nodetest.Federation(t, 2, nodetest.Options{})
	block := randBytes(5, 3<<20)
	data := append(append(append([]byte{}, block...), randBytes(6, 5<<20)...), block...)
	ref := publishData(t, nodes[0], "big", data, nii.AccessOpen)
	publishData(t, nodes[0], "secret", []byte("restricted content"), nii.AccessRestricted)
	waitListed(t, nodes[1], "org0/big", 1)
	waitListed(t, nodes[1], "org0/secret", 1)
	ctx := context.Background()
	pullIntoBy := func(t *testing.T, by *node.Node, ref nii.Ref, noFsync bool) (string, int, error) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "out")
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		res, out, err := by.PullInto(ctx, ref, node.PullOptions{}, f, noFsync)
		if err != nil {
			return path, 0, err
		}
		if want, _ := nodes[0].Store().Version(ref); out.Size != int64(len(data)) || want == nil || out.Manifest != want.Manifest {
			t.Fatalf("PullInto answered %+v", out)
		}
		return path, res.CopiedChunks, nil
	}
	pullInto := func(t *testing.T, ref nii.Ref, noFsync bool) (string, int, error) {
		t.Helper()
		return pullIntoBy(t, nodes[1], ref, noFsync)
	}
	check := func(t *testing.T, path string) {
		t.Helper()
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("the file is %d bytes (%v), not the published %d", len(got), err, len(data))
		}
	}
	rec, err := nodes[0].Store().Version(*ref)
	if err != nil {
		t.Fatal(err)
	}

	path, copied, err := pullInto(t, *ref, false)
	if err != nil {
		t.Fatal(err)
	}
	check(t, path)
	if copied != rec.Chunks {
		t.Fatalf("a first pull wrote %d of %d chunks as they arrived", copied, rec.Chunks)
	}

	path, copied, err = pullInto(t, *ref, true)
	if err != nil {
		t.Fatal(err)
	}
	check(t, path)
	if copied != 0 {
		t.Fatalf("a pull of a version held wrote %d chunks as they arrived, from nowhere", copied)
	}

	// The publisher "pulling" its own version: nothing fetched, the
	// whole file from its store.
	path, copied, err = pullIntoBy(t, nodes[0], *ref, false)
	if err != nil {
		t.Fatal(err)
	}
	check(t, path)
	if copied != 0 {
		t.Fatalf("the publisher's own pull wrote %d chunks as they arrived", copied)
	}

	path, _, err = pullInto(t, nii.Ref{Dataset: nii.DatasetID{Org: "org0", Name: "secret"}}, false)
	if !errors.Is(err, nii.ErrRefused) {
		t.Fatalf("a restricted pull without a grant: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("a refused pull left %v bytes in the file (%v)", fi.Size(), err)
	}

	// A file with something in it is refused before anything is pulled.
	f, err := os.CreateTemp(t.TempDir(), "full")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("keep me")
	if _, _, err := nodes[1].PullInto(ctx, *ref, node.PullOptions{}, f, false); !errors.Is(err, nii.ErrInvalid) {
		t.Fatalf("PullInto a file that is not empty: %v", err)
	}
}
