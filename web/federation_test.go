package web_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
)

// TestFederationFollowToGo opens the federation page of a node whose
// follow is behind: the pull of the new version failed after its
// manifest was checked (the follower's disk refused the write), so the
// page shows the version held and the latest, the bytes still to go —
// equal to the new chunks of the publisher's version 2 against its
// version 1 — and the error in words.
func TestFederationFollowToGo(t *testing.T) {
	tb := newTab(t)
	nodes := nodetest.Federation(t, 2, nodetest.Options{})
	pub, fol := nodes[0], nodes[1]
	var refuse atomic.Bool // the follower's disk is full while set
	fol.Store().SetSpaceCheck(func(need int64) error {
		if refuse.Load() {
			return &node.NoSpaceError{Home: fol.Config().Home, Free: 1 << 20, Need: uint64(need) + 512<<20, Write: uint64(need), Floor: 512 << 20}
		}
		return nil
	})
	rows := func(edit string) string {
		var b strings.Builder
		b.WriteString("date,supplier,amount\n")
		for i := 0; b.Len() < 3<<20; i++ {
			if i%5000 == 0 && edit != "" {
				fmt.Fprintf(&b, "2026-01-01,%s %d,1\n", edit, i)
				continue
			}
			fmt.Fprintf(&b, "2026-01-%02d,Supplier %d Ltd,%d.%02d\n", 1+i%28, i%733, i%9000, i%100)
		}
		return b.String()
	}
	publish(t, pub, "spend", "spend.csv", rows(""), nii.Metadata{Title: "Spend", Access: nii.AccessOpen})
	d := nii.DatasetID{Org: "org0", Name: "spend"}
	nodetest.WaitFor(t, 30*time.Second, "the follower lists the dataset", func() bool { _, err := fol.LookupDataset(d); return err == nil })
	if _, err := fol.StartFollowing(d, ""); err != nil {
		t.Fatal(err)
	}
	follow := func() node.Follow {
		fs, err := fol.Follows()
		if err != nil || len(fs) != 1 {
			t.Fatalf("follows %v %v", fs, err)
		}
		return fs[0]
	}
	nodetest.WaitFor(t, 30*time.Second, "version 1 synced", func() bool { f := follow(); return f.Version == 1 && f.State == api.FollowSynced })
	refuse.Store(true)
	publish(t, pub, "spend", "spend.csv", rows("Edited"), nii.Metadata{Title: "Spend", Access: nii.AccessOpen})
	nodetest.WaitFor(t, 30*time.Second, "the pull of version 2 fails for space", func() bool { f := follow(); return f.Advertised == 2 && f.Failures > 0 })

	// The independent figure, from the publisher's own manifests.
	chunks := func(v uint64) []nii.ChunkRef {
		rec, err := pub.Store().Version(nii.Ref{Dataset: d, Version: v})
		if err != nil {
			t.Fatal(err)
		}
		m, err := pub.Store().OpenManifest(rec)
		if err != nil {
			t.Fatal(err)
		}
		return m.Chunks
	}
	seen := map[nii.Hash]bool{}
	for _, c := range chunks(1) {
		seen[c.Hash] = true
	}
	var want int64
	for _, c := range chunks(2) {
		if !seen[c.Hash] {
			seen[c.Hash] = true
			want += int64(c.Size)
		}
	}
	tb.open(fol.APIAddr() + "/federation")
	row := `#follows tr[data-dataset="org0/spend"]`
	if got := tb.attr(row+" .nii-bytes-togo", "data-bytes"); got != strconv.FormatInt(want, 10) || want == 0 {
		t.Errorf("bytes to go shown %s, want %d", got, want)
	}
	if held, latest := tb.text(row+" .nii-held"), tb.text(row+" .nii-latest"); held != "1" || latest != "2" {
		t.Errorf("held %q, latest %q", held, latest)
	}
	if got := tb.text(`#follows .nii-follow-error[data-dataset="org0/spend"]`); !strings.Contains(got, "disk is too full") || !strings.Contains(got, "no space left") {
		t.Errorf("last error shown as %q", got)
	}
	tb.check("federation-follow")
}
