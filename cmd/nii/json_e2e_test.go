package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nii-uk/nii/node/api"
)

// parseJSON fails the test unless out is one JSON value with every key of
// want (checked at the top level).
func parseJSON(t *testing.T, what, out string, keys ...string) map[string]any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%s --json is not JSON: %v\n%s", what, err, out)
	}
	m, _ := v.(map[string]any)
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Fatalf("%s --json lacks %q:\n%s", what, k, out)
		}
	}
	return m
}

// TestEveryCommandSpeaksJSON runs every command with --json, as a script
// would, and parses what it prints; and checks the CLI's rough edges of
// issue 12 one by one.
func TestEveryCommandSpeaksJSON(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "new", "dir", "admin.key") // keygen makes the missing directories
	parseJSON(t, "keygen", mustNii(t, filepath.Join(dir, "none"), "keygen", "--out", key, "--json"), "key", "public", "kid")
	if fi, err := os.Stat(filepath.Dir(key)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("keygen's directory: %v %v", fi, err)
	}
	pub := strings.TrimSuffix(key, ".key") + ".pub"

	gw := filepath.Join(dir, "greenwich")
	m := parseJSON(t, "init", mustNii(t, gw, "init", "--org", "greenwich", "--federation", "london", "--gossip-key", "new", "--json"), "id", "gossip_key")
	gossipKey := m["gossip_key"].(string)
	lb := filepath.Join(dir, "lambeth")
	mustNii(t, lb, "init", "--org", "lambeth", "--federation", "london", "--gossip-key", gossipKey)
	parseJSON(t, "trust add", mustNii(t, gw, "trust", "add", pub, "--json"), "kid")
	mustNii(t, lb, "trust", "add", pub)
	parseJSON(t, "version", mustNii(t, gw, "version", "--json"), "version")

	startDaemon(t, gw)
	st := status(t, gw)
	startDaemon(t, lb, "--join", st.Addresses["gossip"])
	if !st.Security.GossipEncrypted || st.Security.Mode != api.ModeVerified {
		t.Fatalf("a keyed, anchored node's status: %+v", st.Security)
	}
	for _, a := range st.P2PAddrs {
		if !strings.HasSuffix(a, "/p2p/"+string(st.ID)) {
			t.Fatalf("status --json address %q cannot be dialled as printed", a)
		}
	}
	lbCred := parseJSON(t, "enrol", mustNii(t, filepath.Join(dir, "none"), "enrol", "--key", key, "--org", "lambeth", "--node", string(status(t, lb).ID),
		"--federation", "london", "--json"), "id", "token", "expires")
	// Lambeth pulls below from an anchored greenwich, which serves content
	// to enrolled members only: install the credential just issued.
	lbCredFile := filepath.Join(dir, "lambeth.cred")
	if err := os.WriteFile(lbCredFile, []byte(lbCred["token"].(string)), 0o600); err != nil {
		t.Fatal(err)
	}
	mustNii(t, lb, "credential", "install", lbCredFile)
	parseJSON(t, "enrol (installed)", mustNii(t, gw, "enrol", "--key", key, "--org", "greenwich", "--node", string(st.ID), "--json"), "org", "valid")
	parseJSON(t, "credential", mustNii(t, gw, "credential", "--json"), "installed", "valid")

	// publish: --json, licences checked, a warning without one.
	file := realFile(t, "trafford.csv")
	r := run(t, gw, "publish", file, "--name", "spend", "--licence", "Open-Ish", "-q")
	if r.code == 0 || !strings.Contains(r.stderr, "SPDX") {
		t.Fatalf("an unknown licence: exit %d %s", r.code, r.stderr)
	}
	r = run(t, gw, "publish", file, "--name", "nolicence", "-q", "--json")
	if r.code != 0 || !strings.Contains(r.stderr, "no licence") {
		t.Fatalf("publish without a licence does not warn: exit %d %s", r.code, r.stderr)
	}
	parseJSON(t, "publish", r.stdout, "ref", "manifest", "meta")
	pm := parseJSON(t, "publish", mustNii(t, gw, "publish", file, "--name", "spend", "--licence", "other:https://example.org/licence", "-q", "--json"), "ref", "manifest")
	if pm["meta"].(map[string]any)["licence"] != "other:https://example.org/licence" {
		t.Fatalf("other:URL licence: %v", pm["meta"])
	}
	mustNii(t, gw, "publish", file, "--name", "restricted", "--licence", "OGL-UK-3.0", "--access", "restricted", "-q")

	var ds []api.DatasetInfo
	if err := json.Unmarshal([]byte(mustNii(t, gw, "datasets", "--json")), &ds); err != nil || len(ds) != 3 {
		t.Fatalf("datasets --json: %v %+v", err, ds)
	}
	parseJSON(t, "show", mustNii(t, gw, "show", "greenwich/spend", "--json"), "id", "manifest")
	parseJSON(t, "show @1", mustNii(t, gw, "show", "greenwich/spend@1", "--json"), "ref", "meta")
	parseJSON(t, "export", mustNii(t, gw, "export", "greenwich/spend@1", "-o", filepath.Join(dir, "out.csv"), "--json"), "ref", "bytes")
	parseJSON(t, "search", mustNii(t, gw, "search", "--json"), "total", "hits")
	var peers []any
	if err := json.Unmarshal([]byte(mustNii(t, gw, "peers", "--json")), &peers); err != nil {
		t.Fatalf("peers --json: %v", err)
	}
	var trusts []any
	if err := json.Unmarshal([]byte(mustNii(t, gw, "trust", "list", "--json")), &trusts); err != nil || len(trusts) != 1 {
		t.Fatalf("trust list --json: %v %v", err, trusts)
	}

	// Grants: lifetime cap and the * pattern refused at issue time, with
	// reasons; then --json on issue, inspect, revoke.
	if r := run(t, gw, "grant", "issue", "--key", key, "--to", "lambeth", "--datasets", "greenwich/*", "--ttl", "876000h"); r.code == 0 || !strings.Contains(r.stderr, "lifetime_too_long") {
		t.Fatalf("a 100-year grant: exit %d %s", r.code, r.stderr)
	}
	if r := run(t, gw, "grant", "issue", "--key", key, "--to", "lambeth", "--datasets", "*"); r.code == 0 || !strings.Contains(r.stderr, "*/*") {
		t.Fatalf("a * pattern: exit %d %s", r.code, r.stderr)
	}
	if r := run(t, filepath.Join(dir, "none"), "grant", "issue", "--help"); !strings.Contains(r.stdout, "--federation") || !strings.Contains(r.stdout, "no node home") {
		t.Fatalf("grant issue's usage does not say --federation is needed without a home:\n%s", r.stdout)
	}
	g := parseJSON(t, "grant issue", mustNii(t, gw, "grant", "issue", "--key", key, "--to", "lambeth", "--datasets", "greenwich/*", "--actions", "read,sync", "--json"), "id", "token")
	tokFile := filepath.Join(dir, "grant.jwt")
	os.WriteFile(tokFile, []byte(g["token"].(string)), 0o600)
	parseJSON(t, "grant inspect", mustNii(t, gw, "grant", "inspect", "@"+tokFile, "--json"), "valid", "claims")

	// follow and pull, with --json, on the other borough.
	pollNii(t, lb, "lambeth sees greenwich's datasets", func(out string) bool {
		var res api.CatalogResult
		return json.Unmarshal([]byte(out), &res) == nil && res.Total >= 2
	}, "search", "--json")
	parseJSON(t, "follow", mustNii(t, lb, "follow", "greenwich/restricted", "--grant", "@"+tokFile, "--json"), "dataset", "state")
	parseJSON(t, "pull", mustNii(t, lb, "pull", "greenwich/spend", "-q", "--json"), "version", "publisher_verified")
	table := mustNii(t, lb, "datasets")
	for _, line := range strings.Split(strings.TrimSpace(table), "\n") {
		if strings.Contains(line, "kB") || strings.Contains(line, " MB") {
			t.Errorf("a size not in IEC units: %s", line)
		}
	}
	// A person reports a problem on lambeth's page of greenwich's dataset:
	// lambeth relays it, greenwich's officer lists and closes it.
	lbAPI := status(t, lb).Addresses["api"]
	if !strings.HasPrefix(lbAPI, "http") {
		lbAPI = "http://" + lbAPI
	}
	resp, err := http.Post(lbAPI+"/api/v1/datasets/greenwich/spend/problems", "application/json", strings.NewReader(`{"message":"June is counted twice"}`))
	if err != nil {
		t.Fatal(err)
	}
	var receipt api.ProblemReceipt
	err = json.NewDecoder(resp.Body).Decode(&receipt)
	resp.Body.Close()
	if err != nil || !receipt.Relayed || receipt.Publisher != st.ID {
		t.Fatalf("report through lambeth: %s %+v %v", resp.Status, receipt, err)
	}
	var probs api.ProblemList
	if err := json.Unmarshal([]byte(mustNii(t, gw, "problems", "--json")), &probs); err != nil || len(probs.Problems) != 1 || probs.Problems[0].ID != receipt.ID || probs.Problems[0].Message != "June is counted twice" {
		t.Fatalf("problems --json on greenwich: %+v %v", probs, err)
	}
	if out := mustNii(t, gw, "problems"); !strings.Contains(out, receipt.ID) || !strings.Contains(out, "June is counted twice") {
		t.Fatalf("problems:\n%s", out)
	}
	parseJSON(t, "problems close", mustNii(t, gw, "problems", "close", receipt.ID, "--json"), "id", "state", "closed")
	if out := mustNii(t, gw, "problems", "--state", "open"); !strings.Contains(out, "no problem reports") {
		t.Fatalf("open problems after close:\n%s", out)
	}
	var aud map[string]any
	if err := json.Unmarshal([]byte(mustNii(t, gw, "audit", "--json")), &aud); err != nil {
		t.Fatalf("audit --json: %v", err)
	}
	parseJSON(t, "grant revoke", mustNii(t, gw, "grant", "revoke", "--key", key, g["id"].(string), "--json"), "revokes", "submitted")

	// withdraw --json, and show of a withdrawn dataset says so.
	parseJSON(t, "withdraw", mustNii(t, gw, "withdraw", "greenwich/nolicence", "--json"), "withdrawn")
	shown := mustNii(t, gw, "show", "greenwich/nolicence")
	if !strings.Contains(shown, "withdrawn on ") || !strings.Contains(shown, "by node "+string(st.ID)) || strings.Contains(shown, "0001-01-01") || strings.Contains(shown, "@0") {
		t.Fatalf("show of a withdrawn dataset:\n%s", shown)
	}
}
