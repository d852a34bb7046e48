package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
)

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// demoProc is a running 'nii demo' process.
type demoProc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
	info   DemoInfo
}

// startDemo runs 'nii demo --json' with extra flags and waits, with a
// deadline, for its readiness line.
func startDemo(t *testing.T, extra ...string) *demoProc {
	t.Helper()
	cmd := exec.Command(niiBin, append([]string{"demo", "--json"}, extra...)...)
	p := &demoProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		if sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(line), &p.info); err != nil {
			t.Fatalf("demo --json printed %q: %v", line, err)
		}
		t.Logf("nii demo ready in %v", time.Since(start).Round(time.Millisecond))
	case err := <-p.done:
		p.done <- err
		t.Fatalf("nii demo exited before it was ready: %v\n%s", err, p.stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("nii demo not ready within 60s\n%s", p.stderr)
	}
	return p
}

// stop signals the demo and waits, with a deadline, for a clean exit.
func (p *demoProc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("nii demo after %v: %v\n%s", sig, err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("nii demo did not stop within 30s of %v\n%s", sig, p.stderr)
	}
}

func demoNodeOf(t *testing.T, info DemoInfo, org string) DemoNode {
	t.Helper()
	for _, n := range info.Nodes {
		if n.Org == org {
			return n
		}
	}
	t.Fatalf("demo has no node %s: %+v", org, info.Nodes)
	return DemoNode{}
}

// TestDemoFederation runs 'nii demo' as a newcomer would, uses what it
// prints (the registry's API, the homes), and stops it with Ctrl-C.
func TestDemoFederation(t *testing.T) {
	p := startDemo(t)
	info := p.info
	if info.Kept || info.Registry.API == "" || !info.Registry.RegistryOnly || len(info.Nodes) != len(demoBoroughs) {
		t.Fatalf("demo info: %+v", info)
	}
	if _, err := os.Stat(info.Dir); err != nil {
		t.Fatalf("demo dir: %v", err)
	}
	// Every node starts in the verified mode with its gossip encrypted:
	// the demo shows the federation as it should run, without warnings.
	if strings.Contains(p.stderr.String(), "federation is open") {
		t.Errorf("nii demo started an open federation:\n%s", p.stderr)
	}
	for _, n := range append([]DemoNode{info.Registry}, info.Nodes...) {
		var st api.Status
		if err := getJSON(n.API+"/api/v1/status", &st); err != nil {
			t.Fatalf("%s status: %v", n.Org, err)
		}
		if st.Security.Mode != api.ModeVerified || !st.Security.GossipEncrypted || len(st.Security.Warnings) != 0 {
			t.Errorf("%s security: %+v; want verified, gossip encrypted, no warnings", n.Org, st.Security)
		}
	}

	// The registry's catalog lists every sample dataset, from all boroughs,
	// and the harmonisation step's standard, mappings and merged view.
	var want, samples []string
	for _, b := range demoBoroughs {
		for _, d := range b.datasets {
			samples = append(samples, b.org+"/"+d.name)
		}
	}
	want = append(append(append(want, samples...), info.Mappings...), info.Standard, info.Merged)
	resp, err := http.Get(info.Registry.API + "/api/v1/catalog?limit=100")
	if err != nil {
		t.Fatal(err)
	}
	var res api.CatalogResult
	err = json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("registry catalog: %v %v", resp.Status, err)
	}
	var got []string
	publishers := map[string]bool{}
	for _, h := range res.Hits {
		got = append(got, h.ID)
		publishers[h.Meta.Publisher] = true
		if h.Meta.Licence != demoLicence || ((h.Meta.Kind == nii.KindData || h.Meta.Kind == nii.KindMerged) && h.Meta.Table == nil) {
			t.Errorf("%s: not profiled as a table or no licence: %+v", h.ID, h.Meta)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) || len(publishers) != len(demoBoroughs) || res.Total != len(want) {
		t.Fatalf("registry lists %v from %v; want %v from %d publishers", got, publishers, want, len(demoBoroughs))
	}
	slices.Sort(samples)
	if !slices.Equal(sortedCopy(info.Datasets), samples) || len(info.Mappings) != 4 {
		t.Fatalf("demo --json lists datasets %v and mappings %v; want %v and four mappings", info.Datasets, info.Mappings, samples)
	}

	// The registry's pages, as printed, show the federation to a browser.
	for _, page := range []struct{ path, want string }{
		{"/", info.Datasets[0]},
		{"/standards", info.Standard},
		{"/federation", "lambeth"},
	} {
		req, _ := http.NewRequest(http.MethodGet, info.Registry.API+page.path, nil)
		req.Header.Set("Accept", "text/html")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), page.want) {
			t.Errorf("the registry's page %s: %s %s, want HTML naming %q", page.path, resp.Status, resp.Header.Get("Content-Type"), page.want)
		}
	}

	// The printed homes work with the CLI: search the registry, pull from
	// another borough.
	var sr api.CatalogResult
	if err := json.Unmarshal([]byte(mustNii(t, info.Registry.Home, "search", "spend", "--theme", "finance", "--publisher", "lambeth", "--json")), &sr); err != nil || sr.Total != 1 {
		t.Fatalf("search spend on the registry: %d hits, %v", sr.Total, err)
	}
	out := filepath.Join(t.TempDir(), "lambeth-spend.csv")
	// Open data: the file is created 0600 and widened once the pull says
	// it is open, to what the umask allows.
	umaskNii(t, "027", demoNodeOf(t, info, "greenwich").Home, "pull", "lambeth/spend", "-o", out, "-q")
	gotFile, _ := os.ReadFile(out)
	wantFile, _ := demoFiles.ReadFile("demodata/lambeth-spend.csv")
	if len(wantFile) == 0 || !bytes.Equal(gotFile, wantFile) {
		t.Fatalf("pulled lambeth/spend: %d bytes, not the %d-byte sample", len(gotFile), len(wantFile))
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("pull -o of open data under umask 027: %v, %v; want mode 0640", fi.Mode(), err)
	}

	// Restricted data, as the demo prints it: every borough is verified;
	// lambeth is refused without a grant and allowed with one from the
	// demo admin's key; the publisher's audit log says so.
	if len(info.Restricted) != 1 || info.AdminKey == "" {
		t.Fatalf("demo info: restricted %v, admin key %q", info.Restricted, info.AdminKey)
	}
	for _, n := range info.Nodes {
		if !n.Verified {
			t.Fatalf("%s is not enrolled", n.Org)
		}
	}
	var cd api.CatalogDataset
	json.Unmarshal([]byte(mustNii(t, info.Registry.Home, "show", "lambeth/spend", "--json")), &cd)
	if !cd.Verified {
		t.Fatalf("the registry shows lambeth/spend unverified: %+v", cd)
	}
	lambeth := demoNodeOf(t, info, "lambeth").Home
	restricted := info.Restricted[0]
	if r := run(t, lambeth, "pull", restricted, "-q"); r.code == 0 {
		t.Fatalf("lambeth pulled %s without a grant", restricted)
	}
	grant := filepath.Join(t.TempDir(), "lambeth.jwt")
	mustNii(t, lambeth, "grant", "issue", "--key", info.AdminKey, "--federation", info.Federation, "--to", "lambeth",
		"--datasets", restricted, "--actions", "read", "--ttl", "1h", "-o", grant)
	rfile := filepath.Join(t.TempDir(), "r.csv")
	umaskNii(t, "022", lambeth, "pull", restricted, "--grant", "@"+grant, "-o", rfile, "-q")
	if fi, err := os.Stat(rfile); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Fatalf("pull -o of restricted data under umask 022: %v, %v; want a file of mode 0600", fi, err)
	}
	var page api.AuditPage
	json.Unmarshal([]byte(mustNii(t, demoNodeOf(t, info, "greenwich").Home, "audit", "--json")), &page)
	if len(page.Records) < 2 {
		t.Fatalf("greenwich's audit log: %+v", page)
	}

	// Harmonised spend, as the demo prints it: the merge and the lineage
	// of the merged view gla keeps current.
	gla := demoNodeOf(t, info, demoMergerOrg).Home
	merged := filepath.Join(t.TempDir(), "london-spend.csv")
	var mr api.MergeResult
	if err := json.Unmarshal([]byte(mustNii(t, gla, "merge", info.Standard, "-o", merged, "--rejects", filepath.Join(t.TempDir(), "rejects.csv"), "--json")), &mr); err != nil {
		t.Fatal(err)
	}
	if len(mr.Sources) != 4 || mr.Rejected != 0 || mr.Rows != 760 {
		t.Fatalf("the demo's merge: %d sources, %d rows, %d rejected", len(mr.Sources), mr.Rows, mr.Rejected)
	}
	if r := run(t, lambeth, "show", info.Merged+"@1", "--lineage"); r.code != 0 || !strings.Contains(r.stdout, "every cite checked out") {
		t.Fatalf("show --lineage of the demo's merged view: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Ctrl-C: every node closes, the temporary homes go.
	p.stop(t, syscall.SIGINT)
	if _, err := os.Stat(info.Dir); !os.IsNotExist(err) {
		t.Fatalf("demo dir after Ctrl-C: %v", err)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// TestDemoKeepsDir checks --dir: the homes stay after exit, and a second
// demo on them starts the same nodes without publishing again.
func TestDemoKeepsDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	p := startDemo(t, "--dir", dir)
	if !p.info.Kept || p.info.Dir != dir {
		t.Fatalf("demo info: dir %q kept %v", p.info.Dir, p.info.Kept)
	}
	p.stop(t, syscall.SIGTERM)
	for _, org := range []string{demoRegistry, "lambeth"} {
		if _, err := os.Stat(filepath.Join(dir, org, node.ConfigFile)); err != nil {
			t.Fatalf("home %s after exit: %v", org, err)
		}
	}

	p = startDemo(t, "--dir", dir)
	var ds []api.DatasetInfo
	if err := json.Unmarshal([]byte(mustNii(t, filepath.Join(dir, "lambeth"), "datasets", "--json")), &ds); err != nil {
		t.Fatal(err)
	}
	held := map[string]uint64{}
	for _, d := range ds {
		held[d.ID] = d.Latest
	}
	if len(held) != 3 || held["lambeth/spend"] != 1 || held["lambeth/spend--map--lga-spend-over-500"] != 1 || held[demoStandard.String()] != 1 {
		t.Fatalf("lambeth after a second demo on the same dir: %+v", held)
	}
	p.stop(t, syscall.SIGTERM)
}

// getJSON decodes the JSON answer of a GET that must succeed.
func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
