package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nii-uk/nii/node/api"
)

// httpGet fetches a URL of a node's API and returns status and body.
func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// setConfig sets key = value in a home's config.toml table [table].
func setConfig(t *testing.T, home, table, line string) {
	t.Helper()
	p := filepath.Join(home, "config.toml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if hdr := "[" + table + "]\n"; strings.Contains(s, hdr) {
		s = strings.Replace(s, hdr, hdr+line+"\n", 1)
	} else {
		s += "\n" + hdr + line + "\n"
	}
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestImpostorKeptOutOfPublicViews is issue 12's impostor story with real
// processes: an enrolled greenwich, an unenrolled node claiming greenwich,
// a registry and another borough that trust the federation's issuer. No
// public view of the registry lists or merges the impostor's records unless
// asked for unverified ones; pulling its data needs --allow-unverified;
// once it has left and its adverts expired, nothing of it is listed.
func TestImpostorKeptOutOfPublicViews(t *testing.T) {
	admin := t.TempDir()
	key, pub := filepath.Join(admin, "keys", "london.key"), filepath.Join(admin, "keys", "london.pub")
	mustNii(t, filepath.Join(admin, "none"), "keygen", "--out", key) // into a directory that does not exist yet

	reg, greenwich, lambeth := initHome(t, "registry"), initHome(t, "greenwich"), initHome(t, "lambeth")
	impostor := filepath.Join(t.TempDir(), "impostor")
	mustNii(t, impostor, "init", "--org", "greenwich", "--name", "Not Greenwich", "--federation", "london")
	for _, h := range []string{reg, greenwich, lambeth} {
		mustNii(t, h, "trust", "add", pub)
	}
	setConfig(t, reg, "catalog", `unverified_expiry = "3s"`)
	startDaemon(t, reg, "--registry-only")
	join := status(t, reg).Addresses["gossip"]
	startDaemon(t, greenwich, "--join", join)
	startDaemon(t, lambeth, "--join", join)
	fake := startDaemon(t, impostor, "--join", join)

	st := status(t, reg)
	if st.Security.Mode != api.ModeVerified || st.Security.Anchors != 1 {
		t.Fatalf("the registry's security: %+v", st.Security)
	}
	var ist api.Status
	json.Unmarshal([]byte(mustNii(t, impostor, "status", "--json")), &ist)
	if ist.Security.Mode != api.ModeOpen || len(ist.Security.Warnings) == 0 || !strings.Contains(mustNii(t, impostor, "status"), "OPEN") {
		t.Fatalf("a node with no anchors does not say it is open: %+v", ist.Security)
	}
	mustNii(t, greenwich, "enrol", "--key", key, "--org", "greenwich", "--node", string(status(t, greenwich).ID))
	// Lambeth pulls from greenwich below; an anchored greenwich serves
	// content to enrolled members only (members only on libp2p, issue 10),
	// so lambeth is enrolled too. The impostor is not.
	lambethCred := filepath.Join(admin, "lambeth.cred")
	mustNii(t, filepath.Join(admin, "none"), "enrol", "--key", key, "--org", "lambeth", "--node", string(status(t, lambeth).ID), "--federation", "london", "-o", lambethCred)
	mustNii(t, lambeth, "credential", "install", lambethCred)

	mustNii(t, greenwich, "publish", realFile(t, "trafford.csv"), "--name", "spend", "--title", "Greenwich spend", "--licence", "OGL-UK-3.0", "-q")
	mustNii(t, impostor, "publish", realFile(t, "lambeth.csv"), "--name", "spend", "--title", "Fake spend", "--licence", "OGL-UK-3.0", "-q")
	mustNii(t, impostor, "publish", realFile(t, "lambeth.csv"), "--name", "budget", "--title", "Fake budget", "--licence", "OGL-UK-3.0", "-q")

	pollNii(t, reg, "the registry holds both of the impostor's claims, apart", func(out string) bool {
		var res api.CatalogResult
		return json.Unmarshal([]byte(out), &res) == nil && res.Total == 2
	}, "search", "--unverified", "--json")
	pollNii(t, reg, "the registry lists greenwich's spend, verified", func(out string) bool {
		var res api.CatalogResult
		return json.Unmarshal([]byte(out), &res) == nil && res.Total == 1 && res.Hits[0].Verified
	}, "search", "--json")

	// nii search and the catalog API: the impostor is not listed; asked
	// for, its claims carry claim IDs.
	var res api.CatalogResult
	json.Unmarshal([]byte(mustNii(t, reg, "search", "--json")), &res)
	if res.Total != 1 || res.Hits[0].Meta.Title != "Greenwich spend" || res.Hits[0].Claim != "" {
		t.Fatalf("search lists: %+v", res.Hits)
	}
	json.Unmarshal([]byte(mustNii(t, reg, "search", "--unverified", "--json")), &res)
	for _, h := range res.Hits {
		if h.Verified || h.Claim == "" || !strings.HasPrefix(h.Meta.Title, "Fake") {
			t.Fatalf("an unverified hit without its claim ID: %+v", h)
		}
	}
	if r := run(t, reg, "show", "greenwich/budget"); r.code == 0 || !strings.Contains(r.stderr, "unverified") {
		t.Fatalf("show of the impostor-only dataset: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	var cd api.CatalogDataset
	if json.Unmarshal([]byte(mustNii(t, reg, "show", "greenwich/budget", "--unverified", "--json")), &cd); cd.Verified || cd.Meta.Title != "Fake budget" {
		t.Fatalf("show --unverified: %+v", cd)
	}
	base := st.Addresses["api"]
	if code, body := httpGet(t, base+"/api/v1/catalog"); code != 200 || strings.Contains(body, "Fake") || !strings.Contains(body, "Greenwich spend") {
		t.Fatalf("catalog API: %d %s", code, body)
	}

	// CKAN: one package per dataset, never the impostor's; package_show
	// of its only dataset is not found; asked for, its claims have names
	// and ids of their own.
	code, body := httpGet(t, base+"/api/3/action/package_search?rows=100")
	var ck struct {
		Result struct {
			Count   int `json:"count"`
			Results []struct {
				ID, Name, Title string
			} `json:"results"`
		} `json:"result"`
	}
	if json.Unmarshal([]byte(body), &ck); code != 200 || ck.Result.Count != 1 || strings.Contains(body, "Fake") {
		t.Fatalf("package_search: %d %s", code, body)
	}
	if code, body := httpGet(t, base+"/api/3/action/package_show?id=greenwich-budget"); code != 404 {
		t.Fatalf("package_show of the impostor-only dataset: %d %s", code, body)
	}
	if code, body := httpGet(t, base+"/api/3/action/package_show?id=greenwich-spend"); code != 200 || strings.Contains(body, "Fake") {
		t.Fatalf("package_show greenwich-spend: %d %s", code, body)
	}
	_, body = httpGet(t, base+"/api/3/action/package_search?"+url.Values{"fq": {"verified:false"}}.Encode())
	if !strings.Contains(body, `"greenwich-spend--claim-`) || !strings.Contains(body, `"greenwich-budget--claim-`) || !strings.Contains(body, "[unverified claim] Fake") {
		t.Fatalf("package_search fq=verified:false: %s", body)
	}

	// DCAT, both serialisations: one dataset, one title, public access only.
	for _, ext := range []string{"jsonld", "ttl"} {
		code, body := httpGet(t, base+"/catalog."+ext)
		if code != 200 || strings.Contains(body, "Fake") || strings.Count(body, "Greenwich spend") != 1 || strings.Contains(body, "greenwich/budget") {
			t.Fatalf("catalog.%s: %d\n%s", ext, code, body)
		}
		code, body = httpGet(t, base+"/api/v1/datasets/greenwich/spend/dcat."+ext)
		if code != 200 || strings.Contains(body, "Fake") {
			t.Fatalf("greenwich/spend dcat.%s: %d\n%s", ext, code, body)
		}
	}

	// Pulling the impostor's data needs --allow-unverified, and says why.
	pollNii(t, lambeth, "lambeth sees the impostor's claim", func(out string) bool {
		var res api.CatalogResult
		return json.Unmarshal([]byte(out), &res) == nil && res.Total == 2
	}, "search", "--unverified", "--json")
	r := run(t, lambeth, "pull", "greenwich/budget", "-q")
	if r.code == 0 || !strings.Contains(r.stderr, "--allow-unverified") || !strings.Contains(r.stderr, "impostor") {
		t.Fatalf("pull of an unverified publisher's dataset: exit %d\n%s", r.code, r.stderr)
	}
	r = run(t, lambeth, "pull", "greenwich/budget", "-q", "--allow-unverified", "--json")
	var sum api.PullSummary
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sum) != nil || sum.PublisherVerified || !strings.Contains(r.stderr, "warning") {
		t.Fatalf("pull --allow-unverified: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	json.Unmarshal([]byte(mustNii(t, lambeth, "pull", "greenwich/spend", "-q", "--json")), &sum)
	if !sum.PublisherVerified || sum.Version.Publisher != status(t, greenwich).ID {
		t.Fatalf("pull greenwich/spend took it from %s (verified %v)", sum.Version.Publisher, sum.PublisherVerified)
	}
	if r := run(t, lambeth, "follow", "greenwich/budget"); r.code == 0 {
		t.Fatalf("follow of an unverified publisher's dataset without --allow-unverified succeeded")
	}

	// The impostor leaves; once its adverts expire nothing of it is listed.
	fake.stop(t, syscall.SIGTERM)
	pollNii(t, reg, "the registry expires the departed impostor's adverts", func(out string) bool {
		var res api.CatalogResult
		return json.Unmarshal([]byte(out), &res) == nil && res.Total == 0
	}, "search", "--unverified", "--json")
	for _, u := range []string{"/api/3/action/package_search?fq=verified:false", "/catalog.ttl", "/api/v1/catalog?verified=false"} {
		if _, body := httpGet(t, base+u); strings.Contains(body, "Fake") || strings.Contains(body, "claim-") {
			t.Fatalf("%s still lists the departed impostor:\n%s", u, body)
		}
	}
}
