package node_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

// copyTree copies a stopped node's home, as a cold backup does.
func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		return os.WriteFile(dst, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A publisher's home is cold-copied, it publishes @3, and the copy is
// restored: its next publish becomes @4, not a second @3, because it
// learns from the federation what it published before; 'nii status' shows
// that it did; @3 (from a replica) and @4 can both be pulled.
func TestRestoredHomeDoesNotForkHistory(t *testing.T) {
	dir := t.TempDir()
	var cfgs []node.Config
	var nodes []*node.Node
	for i, org := range []string{"greenwich", "lambeth", "southwark"} {
		cfg := nodetest.Config(dir, org, nodetest.Options{})
		cfgs = append(cfgs, cfg)
		nodes = append(nodes, nodetest.Start(t, cfg))
		if i > 0 {
			nodetest.Join(t, nodes[i], nodes[0])
		}
	}
	pub, lambeth, southwark := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	d := nii.DatasetID{Org: "greenwich", Name: "spend"}
	v := [][]byte{nil, randBytes(21, 100<<10), randBytes(22, 100<<10), randBytes(23, 100<<10), randBytes(24, 100<<10)}
	publishData(t, pub, "spend", v[1], nii.AccessOpen)
	publishData(t, pub, "spend", v[2], nii.AccessOpen)
	waitListed(t, lambeth, "greenwich/spend", 2)

	// The cold backup.
	pub.Close()
	backup := filepath.Join(t.TempDir(), "backup")
	copyTree(t, cfgs[0].Home, backup)

	cfgs[0].Gossip.Join = []string{lambeth.GossipAddr()}
	pub = nodetest.Restart(t, cfgs[0])
	publishData(t, pub, "spend", v[3], nii.AccessOpen)
	waitListed(t, lambeth, "greenwich/spend", 3)
	if _, err := lambeth.Pull(ctx, nii.Ref{Dataset: d, Version: 3}, node.PullOptions{}); err != nil {
		t.Fatalf("lambeth pulls @3: %v", err)
	}

	// The disk is lost; the backup is restored.
	pub.Close()
	if err := os.RemoveAll(cfgs[0].Home); err != nil {
		t.Fatal(err)
	}
	copyTree(t, backup, cfgs[0].Home)
	pub = nodetest.Restart(t, cfgs[0])
	ref := publishData(t, pub, "spend", v[4], nii.AccessOpen)
	if ref.Version != 4 {
		t.Fatalf("the restored publisher published @%d, want @4", ref.Version)
	}
	st, err := pub.Status()
	if err != nil || !st.History.Synced || st.History.Adopted == 0 {
		t.Fatalf("status after the restore: %+v %v; want it synced, with its own records adopted", st.History, err)
	}
	for _, n := range []*node.Node{lambeth, southwark} {
		waitListed(t, n, "greenwich/spend", 4)
	}
	for _, ver := range []uint64{3, 4} {
		r := nii.Ref{Dataset: d, Version: ver}
		if _, err := southwark.Pull(ctx, r, node.PullOptions{}); err != nil {
			t.Fatalf("southwark pulls @%d: %v", ver, err)
		}
		if got := exportAll(t, southwark, r); !bytes.Equal(got, v[ver]) {
			t.Fatalf("southwark's @%d is not what was published as @%d", ver, ver)
		}
	}
	if _, err := lambeth.Pull(ctx, nii.Ref{Dataset: d, Version: 4}, node.PullOptions{}); err != nil {
		t.Fatalf("lambeth pulls @4 (it holds the first @3): %v", err)
	}
}

// A node that had peers and cannot reach any waits sync_wait, then refuses
// to publish, saying why, rather than risk reusing a version.
func TestPublishRefusedUntilHistoryKnown(t *testing.T) {
	nodes := nodetest.Federation(t, 2, nodetest.Options{})
	cfg := nodes[0].Config()
	nodes[1].Close()
	nodes[0].Close()
	cfg.Gossip.SyncWait = "200ms"
	n := nodetest.Restart(t, cfg)
	start := time.Now()
	_, err := n.Publish(context.Background(), bytes.NewReader([]byte("a\n1\n")), node.PublishRequest{Name: "x"})
	if err == nil || !bytesContains(err.Error(), "has not yet heard from any member") {
		t.Fatalf("publish with no member reachable: %v", err)
	}
	t.Logf("refused after %v", time.Since(start))
}

func bytesContains(s, sub string) bool { return bytes.Contains([]byte(s), []byte(sub)) }
