package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

func publishData(t *testing.T, n *node.Node, name string, data []byte, access nii.Access) *nii.Ref {
	t.Helper()
	rec, err := n.Publish(context.Background(), bytes.NewReader(data), node.PublishRequest{Name: name, Filename: name + ".bin",
		Meta: nii.Metadata{Title: name, Access: access}})
	if err != nil {
		t.Fatal(err)
	}
	return &rec.Ref
}

func exportAll(t *testing.T, n *node.Node, ref nii.Ref) []byte {
	t.Helper()
	rec, err := n.Store().Version(ref)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := n.Store().WriteTo(context.Background(), rec, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// waitListed waits until n lists version v of ds, within the time an
// advert takes at most to reach every member (nodetest.Bound, from n's
// gossip settings and its count of members).
func waitListed(t *testing.T, n *node.Node, ds string, v uint64) {
	t.Helper()
	st, err := n.Status()
	if err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, nodetest.Bound(n.Config().Gossip.Timing, st.Members), n.Config().Org+" lists "+ds, func() bool { return sees(n, ds, v) })
}

func TestPullThreeNodes(t *testing.T) {
	size := 100 << 20
	if testing.Short() {
		size = 8 << 20
	}
	nodes := nodetest.Federation(t, 3, nodetest.Options{})
	data := randBytes(42, size)
	ref := publishData(t, nodes[0], "big", data, nii.AccessOpen)
	waitListed(t, nodes[1], "org0/big", 1)
	res, err := nodes[1].Pull(context.Background(), nii.Ref{Dataset: ref.Dataset}, node.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Ref.Version != 1 || res.FetchedBytes != int64(size) || res.HeldChunks != 0 {
		t.Fatalf("pull result: %+v", res)
	}
	if !bytes.Equal(exportAll(t, nodes[1], *ref), data) {
		t.Fatal("pulled content differs from the published file")
	}
	// Node 1 is now a replica; node 2 pulls with the publisher stopped.
	nodetest.WaitFor(t, 15*time.Second, "node 2 sees the replica", func() bool {
		cd, err := nodes[2].LookupDataset(ref.Dataset)
		return err == nil && len(cd.Providers) == 2
	})
	nodes[0].Close()
	nodetest.WaitFor(t, 15*time.Second, "the publisher is seen offline", func() bool {
		cd, _ := nodes[2].LookupDataset(ref.Dataset)
		return cd != nil && !cd.Online
	})
	res, err = nodes[2].Pull(context.Background(), *ref, node.PullOptions{})
	if err != nil {
		t.Fatalf("pull from the replica with the publisher down: %v", err)
	}
	if res.Providers[nodes[1].ID()] != int64(size) {
		t.Fatalf("bytes by provider: %v", res.Providers)
	}
	if !bytes.Equal(exportAll(t, nodes[2], *ref), data) {
		t.Fatal("content pulled from the replica differs")
	}
	// A pull of what is already held fetches nothing.
	res, err = nodes[2].Pull(context.Background(), *ref, node.PullOptions{})
	if err != nil || res.FetchedChunks != 0 {
		t.Fatalf("second pull: %+v %v", res, err)
	}
}

func TestPullErrors(t *testing.T) {
	nodes := nodetest.Federation(t, 2, nodetest.Options{})
	publishData(t, nodes[0], "secret", []byte("restricted content"), nii.AccessRestricted)
	publishData(t, nodes[0], "open", []byte("open content"), nii.AccessOpen)
	waitListed(t, nodes[1], "org0/secret", 1)
	waitListed(t, nodes[1], "org0/open", 1)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		ref  string
		want error
	}{
		{"unknown dataset", "org0/nope", nii.ErrNotFound},
		{"unknown version", "org0/open@7", exchange.ErrNoProvider},
		{"restricted without a grant", "org0/secret", nii.ErrRefused},
	} {
		ref, _ := nii.ParseRef(tc.ref)
		_, err := nodes[1].Pull(ctx, ref, node.PullOptions{})
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if recs, _ := nodes[1].Store().Versions(nil); len(recs) != 0 {
		t.Fatalf("failed pulls left versions: %v", recs)
	}
}

func TestFollowPullsNewVersionsAsDeltas(t *testing.T) {
	nodes := nodetest.Federation(t, 2, nodetest.Options{})
	v1 := spendCSV(60_000, nil) // ~4 MB
	publishData(t, nodes[0], "spend", v1, nii.AccessOpen)
	waitListed(t, nodes[1], "org0/spend", 1)
	if _, err := nodes[1].StartFollowing(nii.DatasetID{Org: "org0", Name: "spend"}, ""); err != nil {
		t.Fatal(err)
	}
	synced := func(v uint64) func() bool {
		return func() bool {
			fs, _ := nodes[1].Follows()
			return len(fs) == 1 && fs[0].Version == v && fs[0].State == node.FollowSynced
		}
	}
	nodetest.WaitFor(t, 15*time.Second, "version 1 synced", synced(1))
	fs, _ := nodes[1].Follows()
	afterV1 := fs[0].FetchedBytes
	for v := uint64(2); v <= 3; v++ {
		edited := spendCSV(60_000, func(i int) string {
			if i == 20_000*int(v-1) {
				return fmt.Sprintf("Edited supplier v%d", v)
			}
			return ""
		})
		publishData(t, nodes[0], "spend", edited, nii.AccessOpen)
		nodetest.WaitFor(t, 15*time.Second, fmt.Sprintf("version %d synced", v), synced(v))
		if got := exportAll(t, nodes[1], nii.Ref{Dataset: nii.DatasetID{Org: "org0", Name: "spend"}, Version: v}); !bytes.Equal(got, edited) {
			t.Fatalf("version %d differs after follow", v)
		}
	}
	fs, _ = nodes[1].Follows()
	delta := fs[0].FetchedBytes - afterV1
	t.Logf("v1 %d bytes; v2+v3 moved %d bytes", len(v1), delta)
	if delta > int64(len(v1))/4 {
		t.Fatalf("two one-row edits moved %d bytes of a %d-byte file", delta, len(v1))
	}
	if err := nodes[1].StopFollowing(nii.DatasetID{Org: "org0", Name: "spend"}); err != nil {
		t.Fatal(err)
	}
	if fs, _ := nodes[1].Follows(); len(fs) != 0 {
		t.Fatalf("follows after unfollow: %+v", fs)
	}
}

func TestTwentyConcurrentPullers(t *testing.T) {
	nodes := nodetest.Federation(t, 21, nodetest.Options{Configure: func(i int, c *node.Config) { c.Replica.Disable = true }})
	data := randBytes(7, 3<<20)
	ref := publishData(t, nodes[0], "popular", data, nii.AccessOpen)
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Off the test goroutine: a deadline that passes is this
			// puller's error, not a t.Fatal.
			deadline := time.Now().Add(nodetest.Bound(nodetest.FastTiming, len(nodes)))
			for !sees(n, "org0/popular", 1) {
				if time.Now().After(deadline) {
					errs[i] = fmt.Errorf("%s does not list org0/popular@1 after %v (the bound from the gossip settings)", n.Config().Org, nodetest.Bound(nodetest.FastTiming, len(nodes)))
					return
				}
				time.Sleep(10 * time.Millisecond) // polling interval
			}
			_, errs[i] = n.Pull(context.Background(), *ref, node.PullOptions{})
		}()
	}
	wg.Wait()
	for i, err := range errs[:20] {
		if err != nil {
			t.Errorf("puller %d: %v", i+1, err)
		} else if !bytes.Equal(exportAll(t, nodes[i+1], *ref), data) {
			t.Errorf("puller %d: content differs", i+1)
		}
	}
}
