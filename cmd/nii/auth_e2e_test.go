package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
)

// TestGrantsWorkflow is issue 5's admin and user story with real
// processes: keygen, trust, enrol, grant, pull with and without the grant,
// inspect, revoke (spreading by gossip), audit.
func TestGrantsWorkflow(t *testing.T) {
	adminDir := t.TempDir()
	key := filepath.Join(adminDir, "london-admin.key")
	nohome := filepath.Join(adminDir, "no-node")
	mustNii(t, nohome, "keygen", "--out", key)
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("issuer key mode: %v %v", fi.Mode(), err)
	}
	pub := filepath.Join(adminDir, "london-admin.pub")
	if r := run(t, nohome, "keygen", "--out", key); r.code == 0 {
		t.Fatal("keygen overwrote a key")
	}

	greenwich, lambeth, southwark := initHome(t, "greenwich"), initHome(t, "lambeth"), initHome(t, "southwark")
	for _, h := range []string{greenwich, southwark} {
		mustNii(t, h, "trust", "add", pub) // no daemon yet: written to config
	}
	startDaemon(t, greenwich)
	join := status(t, greenwich).Addresses["gossip"]
	startDaemon(t, lambeth, "--join", join)
	startDaemon(t, southwark, "--join", join)
	mustNii(t, lambeth, "trust", "add", pub) // a running daemon: through its API
	if out := mustNii(t, lambeth, "trust", "list", "--json"); !strings.Contains(out, "london-admin") {
		t.Fatalf("trust list: %s", out)
	}

	// Enrol greenwich in place; lambeth's credential travels as a file.
	mustNii(t, greenwich, "enrol", "--key", key, "--org", "greenwich", "--node", string(status(t, greenwich).ID), "--name", "Royal Borough of Greenwich")
	cred := filepath.Join(adminDir, "lambeth.cred")
	mustNii(t, nohome, "enrol", "--key", key, "--org", "lambeth", "--node", string(status(t, lambeth).ID), "--federation", "london", "-o", cred)
	mustNii(t, lambeth, "credential", "install", cred)
	var ci api.CredentialInfo
	json.Unmarshal([]byte(mustNii(t, lambeth, "credential", "--json")), &ci)
	if !ci.Valid || ci.Org != "lambeth" {
		t.Fatalf("lambeth's credential: %+v", ci)
	}

	mustNii(t, greenwich, "publish", realFile(t, "trafford.csv"), "--name", "spend-2024", "--access", "restricted", "--title", "Spend 2024")
	pollNii(t, lambeth, "lambeth sees greenwich/spend-2024 verified", func(out string) bool {
		var cd api.CatalogDataset
		return json.Unmarshal([]byte(out), &cd) == nil && cd.Verified && cd.Version == 1
	}, "show", "greenwich/spend-2024", "--json")

	grant := filepath.Join(adminDir, "lambeth-spend.jwt")
	mustNii(t, nohome, "grant", "issue", "--key", key, "--to", "lambeth", "--datasets", "greenwich/spend-*",
		"--actions", "read,sync", "--ttl", "1h", "--federation", "london", "-o", grant)

	out := filepath.Join(t.TempDir(), "spend.csv")
	mustNii(t, lambeth, "pull", "greenwich/spend-2024", "--grant", "@"+grant, "-o", out, "--quiet")
	want, _ := os.ReadFile(realFile(t, "trafford.csv"))
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Fatal("the pulled file differs")
	}
	pollNii(t, southwark, "southwark lists the dataset", func(o string) bool { return strings.Contains(o, "spend-2024") }, "show", "greenwich/spend-2024", "--json")
	// Southwark trusts the admin but is not enrolled: it sees the catalog,
	// and greenwich, which has anchors, serves it no content.
	if r := run(t, southwark, "pull", "greenwich/spend-2024", "--quiet"); r.code == 0 || !strings.Contains(r.stderr, auth.ReasonNotMember) {
		t.Fatalf("southwark, unenrolled: exit %d %s", r.code, r.stderr)
	}

	var rep auth.Report
	json.Unmarshal([]byte(mustNii(t, lambeth, "grant", "inspect", "@"+grant, "--json")), &rep)
	jti, _ := rep.Claims["jti"].(string)
	if !rep.Valid || jti == "" {
		t.Fatalf("inspect: %+v", rep)
	}
	json.Unmarshal([]byte(mustNii(t, lambeth, "grant", "inspect", "@"+grant, "--dataset", "greenwich/planning", "--json")), &rep)
	if rep.Valid || rep.Reason != auth.ReasonDataset {
		t.Fatalf("inspect for another dataset: %+v", rep)
	}

	// Revoke on greenwich; lambeth learns of it by gossip.
	mustNii(t, greenwich, "grant", "revoke", "--key", key, jti)
	pollNii(t, lambeth, "the revocation reaches lambeth", func(o string) bool {
		var r auth.Report
		return json.Unmarshal([]byte(o), &r) == nil && r.Reason == auth.ReasonRevoked
	}, "grant", "inspect", "@"+grant, "--json")
	mustNii(t, greenwich, "publish", realFile(t, "lambeth.csv"), "--name", "spend-2024", "--access", "restricted")
	pollNii(t, lambeth, "lambeth sees v2", func(o string) bool {
		var cd api.CatalogDataset
		return json.Unmarshal([]byte(o), &cd) == nil && cd.Version == 2
	}, "show", "greenwich/spend-2024", "--json")
	if r := run(t, lambeth, "pull", "greenwich/spend-2024", "--grant", "@"+grant, "--quiet"); r.code == 0 || !strings.Contains(r.stderr, auth.ReasonRevoked) {
		t.Fatalf("lambeth after revocation: exit %d %s", r.code, r.stderr)
	}

	var page api.AuditPage
	json.Unmarshal([]byte(mustNii(t, greenwich, "audit", "--json", "--limit", "1000")), &page)
	seen := map[string]bool{}
	for _, r := range page.Records {
		seen[r.Org+" "+r.Result+" "+r.Reason] = true
	}
	for _, w := range []string{"lambeth allowed granted", " refused not_member", "lambeth refused revoked"} {
		if !seen[w] {
			t.Errorf("audit lacks %q: %v", w, seen)
		}
	}
	if r := run(t, greenwich, "audit"); r.code != 0 || !strings.Contains(r.stdout, "granted") {
		t.Fatalf("audit table: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// TestTrustAddOfflineListsKeyOnce: 'nii trust add' with no daemon running
// makes the daemon's own config edit, so adding a key twice leaves one
// [[trust]] entry (it used to append a copy each time).
func TestTrustAddOfflineListsKeyOnce(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "london-admin.key")
	mustNii(t, filepath.Join(dir, "no-node"), "keygen", "--out", key)
	home := initHome(t, "greenwich")
	mustNii(t, home, "trust", "add", auth.PublicPath(key))
	mustNii(t, home, "trust", "add", "--name", "london", auth.PublicPath(key))
	cfg, err := node.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(home, node.ConfigFile))
	if len(cfg.Trust) != 1 || cfg.Trust[0].Name != "london" || bytes.Count(b, []byte("[[trust]]")) != 1 {
		t.Fatalf("after two offline adds: %+v\n%s", cfg.Trust, b)
	}
	// "--", since a key ID may begin with "-" (TestKeyIDWithADash).
	mustNii(t, home, "trust", "remove", "--", cfg.Trust[0].KID)
	if cfg, err := node.LoadConfig(home); err != nil || len(cfg.Trust) != 0 {
		t.Fatalf("after remove: %+v %v", cfg.Trust, err)
	}
}

// TestKeyIDWithADash: an argument that begins with "-" (a key ID does, 1
// time in 64) is taken for a flag; the error says to put it after "--",
// and after "--" it is the argument.
func TestKeyIDWithADash(t *testing.T) {
	home := initHome(t, "greenwich")
	r := run(t, home, "trust", "remove", "-1Jb5uN-vcZfzx7YJfw32I5bCLSUZe_9NC8S5_3fzvk")
	if r.code == 0 || !strings.Contains(r.stderr, `goes after "--": nii trust remove -- ARG`) {
		t.Fatalf("trust remove of a key ID with a dash: exit %d, %s", r.code, r.stderr)
	}
	r = run(t, home, "trust", "remove", "--", "-1Jb5uN-vcZfzx7YJfw32I5bCLSUZe_9NC8S5_3fzvk")
	if r.code == 0 || strings.Contains(r.stderr, "flag") || !strings.Contains(r.stderr, "-1Jb5uN") {
		t.Fatalf("trust remove -- KID of a key not trusted: exit %d, %s", r.code, r.stderr)
	}
}
