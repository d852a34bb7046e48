package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
)

// TestFollowBytesToGo: a follow whose pull of a new version fails after
// the manifest was checked (the follower's disk refuses the write) reports
// the chunks of that version its store lacks and their bytes — equal to
// the publisher's manifests' own difference — in the API and on the
// federation page, with the error in words; once the disk takes it, the
// follow syncs and nothing is to go.
func TestFollowBytesToGo(t *testing.T) {
	nodes := nodetest.Federation(t, 2, nodetest.Options{})
	pub, fol := nodes[0], nodes[1]
	// The follower's disk, for this test: full while refuse is set. Set
	// before the follower pulls anything, so no pull reads it meanwhile.
	var refuse atomic.Bool
	fol.Store().SetSpaceCheck(func(need int64) error {
		if refuse.Load() {
			return &node.NoSpaceError{Home: fol.Config().Home, Free: 1 << 20, Need: uint64(need) + 512<<20, Write: uint64(need), Floor: 512 << 20}
		}
		return nil
	})
	d := nii.DatasetID{Org: "org0", Name: "spend"}
	publishData(t, pub, "spend", spendCSV(30_000, nil), nii.AccessOpen)
	waitListed(t, fol, "org0/spend", 1)
	if _, err := fol.StartFollowing(d, ""); err != nil {
		t.Fatal(err)
	}
	follow := func() api.Follow {
		t.Helper()
		var fs []api.Follow
		getJSON(t, fol.APIAddr()+"/api/v1/follows", &fs)
		if len(fs) != 1 {
			t.Fatalf("follows %+v", fs)
		}
		return fs[0]
	}
	nodetest.WaitFor(t, 30*time.Second, "version 1 synced", func() bool { f := follow(); return f.Version == 1 && f.State == api.FollowSynced })
	if tg := follow().ToGo; tg == nil || tg.BytesToGo != 0 || tg.ChunksToGo != 0 || tg.Version != 1 {
		t.Fatalf("synced at version 1, to go: %+v", tg)
	}

	refuse.Store(true)
	edited := spendCSV(30_000, func(i int) string {
		if i%3000 == 0 {
			return fmt.Sprintf("Edited supplier %d", i)
		}
		return ""
	})
	publishData(t, pub, "spend", edited, nii.AccessOpen)
	nodetest.WaitFor(t, 30*time.Second, "the pull of version 2 failed for space", func() bool {
		f := follow()
		return f.Advertised == 2 && f.Failures > 0 && f.ToGo != nil && f.ToGo.Version == 2
	})
	f := follow()
	// The independent figure: version 2's distinct chunks that are not
	// version 1's, from the publisher's own manifests.
	want, wantChunks := newChunkBytes(t, pub, nii.Ref{Dataset: d, Version: 1}, nii.Ref{Dataset: d, Version: 2})
	if want == 0 {
		t.Fatal("the edit made no new chunk")
	}
	if f.Version != 1 || f.ToGo.BytesToGo != want || f.ToGo.ChunksToGo != wantChunks {
		t.Errorf("held %d, to go %d bytes in %d chunks; want version 1 and %d bytes in %d chunks", f.Version, f.ToGo.BytesToGo, f.ToGo.ChunksToGo, want, wantChunks)
	}
	rec2, err := pub.Store().Version(nii.Ref{Dataset: d, Version: 2})
	if err != nil {
		t.Fatal(err)
	}
	if f.ToGo.Manifest != rec2.Manifest || f.ToGo.Size != rec2.Size {
		t.Errorf("to go is of manifest %s (%d bytes), the publisher's version 2 is %s (%d)", f.ToGo.Manifest, f.ToGo.Size, rec2.Manifest, rec2.Size)
	}
	if f.ErrorCode != api.CodeUnavailable || !strings.Contains(f.LastError, "no space left") {
		t.Errorf("last error %q (%s)", f.LastError, f.ErrorCode)
	}

	// The federation page shows the same figures, and the error in words.
	req, _ := http.NewRequest("GET", fol.APIAddr()+"/federation", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, s := range []string{fmt.Sprintf(`data-bytes="%d"`, want), fmt.Sprintf("%d of %d chunks of version 2", wantChunks, f.ToGo.Chunks), "disk is too full", "no space left on the device"} {
		if !strings.Contains(string(page), s) {
			t.Errorf("the federation page lacks %q", s)
		}
	}

	// With space again the follow catches up and has nothing to go.
	refuse.Store(false)
	nodetest.WaitFor(t, 60*time.Second, "version 2 synced", func() bool { f := follow(); return f.Version == 2 && f.State == api.FollowSynced })
	if f := follow(); f.ToGo == nil || f.ToGo.BytesToGo != 0 || f.ToGo.Version != 2 || f.LastError != "" {
		t.Errorf("synced at version 2: %+v", f)
	}
	if n := fol.CountKeysForTest("fpend/"); n != 0 {
		t.Errorf("%d kept manifests of synced follows", n)
	}
}

// newChunkBytes sums the sizes of the distinct chunks of to's manifest
// that from's does not have, from n's store.
func newChunkBytes(t *testing.T, n *node.Node, from, to nii.Ref) (int64, int) {
	t.Helper()
	chunks := func(r nii.Ref) []nii.ChunkRef {
		rec, err := n.Store().Version(r)
		if err != nil {
			t.Fatal(err)
		}
		m, err := n.Store().OpenManifest(rec)
		if err != nil {
			t.Fatal(err)
		}
		return m.Chunks
	}
	old := map[nii.Hash]bool{}
	for _, c := range chunks(from) {
		old[c.Hash] = true
	}
	var sum int64
	k := 0
	for _, c := range chunks(to) {
		if !old[c.Hash] {
			old[c.Hash] = true
			sum += int64(c.Size)
			k++
		}
	}
	return sum, k
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
