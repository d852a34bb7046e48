package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/registry/gossip"
)

// pollNii runs a command until its output satisfies ok or the deadline
// passes: convergeWithin, since what e2e tests wait for is mostly the
// federation agreeing.
func pollNii(t *testing.T, home string, what string, ok func(out string) bool, args ...string) string {
	t.Helper()
	return pollNiiIn(t, "", convergeWithin(t), home, what, ok, args...)
}

// convergeWithin bounds how long an e2e test waits for the federation to
// agree, from the timing profile its daemons run (the default, lan)
// rather than a guess: a record whose broadcast a member missed reaches
// it at a push/pull. With two daemons every round pairs them; with three,
// two rounds miss a given pair about one time in sixteen
// (docs/testing.md).
func convergeWithin(t *testing.T) time.Duration {
	t.Helper()
	tm, err := gossip.ProfileTiming("")
	if err != nil {
		t.Fatal(err)
	}
	return 2 * tm.PushPull
}

// pollNiiIn is pollNii in network namespace ns, for up to within.
func pollNiiIn(t *testing.T, ns string, within time.Duration, home string, what string, ok func(out string) bool, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r := runIn(t, ns, home, args...)
		if r.code == 0 && ok(r.stdout) {
			return r.stdout
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s; last: exit %d\n%s%s", what, r.code, r.stdout, r.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFederationOfProcesses runs a publisher, another borough and a
// registry-only node as separate processes joined by gossip.
func TestFederationOfProcesses(t *testing.T) {
	reg := initHome(t, "registry")
	startDaemon(t, reg, "--registry-only")
	var st api.Status
	json.Unmarshal([]byte(mustNii(t, reg, "status", "--json")), &st)
	join := st.Addresses["gossip"]

	greenwich := initHome(t, "greenwich")
	startDaemon(t, greenwich, "--join", join)
	lambeth := initHome(t, "lambeth")
	startDaemon(t, lambeth, "--join", join)

	mustNii(t, greenwich, "publish", realFile(t, "trafford.csv"), "--name", "spend", "--title", "Spend over £500",
		"--licence", "OGL-UK-3.0", "--keyword", "spend", "--theme", "finance")
	mustNii(t, lambeth, "publish", realFile(t, "lambeth.csv"), "--name", "spend", "--title", "Lambeth spend over £500",
		"--keyword", "spend", "--theme", "finance")
	mustNii(t, greenwich, "publish", realFile(t, "trafford.csv"), "--name", "old-spend", "--title", "Old spend")

	// The registry and the other borough both find everything.
	for _, home := range []string{reg, lambeth} {
		pollNii(t, home, "search finds both boroughs' spend", func(out string) bool {
			var res api.CatalogResult
			return json.Unmarshal([]byte(out), &res) == nil && res.Total == 2
		}, "search", "spend", "--theme", "finance", "--json")
	}
	out := mustNii(t, reg, "search", "--publisher", "lambeth", "--json")
	var res api.CatalogResult
	json.Unmarshal([]byte(out), &res)
	if res.Total != 1 || res.Hits[0].ID != "lambeth/spend" || res.Hits[0].Meta.Table == nil {
		t.Fatalf("search --publisher lambeth: %s", out)
	}
	human := mustNii(t, lambeth, "search", "spend")
	if !strings.Contains(human, "greenwich/spend") || !strings.Contains(human, "unverified") {
		t.Fatalf("search table:\n%s", human)
	}

	var cd api.CatalogDataset
	json.Unmarshal([]byte(mustNii(t, reg, "show", "greenwich/spend", "--json")), &cd)
	if cd.Version != 1 || cd.Manifest.IsZero() || cd.Verified || !cd.Online || len(cd.Providers) != 1 || cd.Local != nil {
		t.Fatalf("show on the registry: %+v", cd)
	}

	var peers []api.PeerInfo
	json.Unmarshal([]byte(mustNii(t, lambeth, "peers", "--json")), &peers)
	orgs := map[string]string{}
	for _, p := range peers {
		orgs[p.Org] = p.State
	}
	if len(peers) != 2 || orgs["greenwich"] != "alive" || orgs["registry"] != "alive" {
		t.Fatalf("peers: %+v", peers)
	}

	// Withdraw: the federation stops listing it.
	if r := run(t, lambeth, "withdraw", "greenwich/old-spend"); r.code == 0 {
		t.Fatal("lambeth withdrew greenwich's dataset")
	}
	mustNii(t, greenwich, "withdraw", "greenwich/old-spend")
	pollNii(t, reg, "the registry drops the withdrawn dataset", func(out string) bool {
		var res api.CatalogResult
		return json.Unmarshal([]byte(out), &res) == nil && res.Total == 0
	}, "search", "old", "--json")

	// The registry holds no data.
	if r := run(t, reg, "publish", realFile(t, "lambeth.csv"), "--name", "x"); r.code == 0 || !strings.Contains(r.stderr, "registry-only") {
		t.Fatalf("publish on a registry-only node: exit %d %s", r.code, r.stderr)
	}
}
