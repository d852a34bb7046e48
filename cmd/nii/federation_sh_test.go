package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nii-uk/nii/node/api"
)

// fedScript runs deploy/local/federation.sh with args, its homes in dir and
// the test's nii binary, on free ports.
func fedScript(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "deploy", "local", "federation.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), "NII_FED_DIR="+dir, "NII_BIN="+niiBin, "NII_BASE_PORT=0", "NII_TIMEOUT=45")
	return cmd
}

// startFederationScript runs 'federation.sh n' and waits, with a deadline,
// until it says the federation is up. It returns the script's process, a
// channel that gets its exit, and the daemons' pids and homes.
func startFederationScript(t *testing.T, dir string, n int) (*exec.Cmd, chan error, map[int]string) {
	t.Helper()
	cmd := fedScript(t, dir, strconv.Itoa(n))
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	up := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "is up") {
				select {
				case up <- sc.Text():
				default:
				}
			}
		}
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		// Whatever happened, leave no daemon behind.
		fedScript(t, dir, "stop").Run()
		cmd.Process.Kill()
	})
	select {
	case <-up:
	case err := <-done:
		done <- err
		t.Fatalf("federation.sh %d exited early: %v\n%s", n, err, stderr)
	case <-time.After(90 * time.Second):
		t.Fatalf("federation.sh %d not up within 90s\n%s", n, stderr)
	}
	b, err := os.ReadFile(filepath.Join(dir, "pids"))
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		pid, home, _ := strings.Cut(line, " ")
		p, err := strconv.Atoi(pid)
		if err != nil {
			t.Fatalf("pids file: %q", b)
		}
		pids[p] = home
	}
	if len(pids) != n {
		t.Fatalf("pids file lists %d daemons, want %d: %q", len(pids), n, b)
	}
	return cmd, done, pids
}

// waitExit waits, with a deadline, for the script to exit 0.
func waitExit(t *testing.T, done chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("federation.sh after %s: %v", what, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("federation.sh still running 30s after %s", what)
	}
}

// assertGone checks that none of the daemons is still running.
func assertGone(t *testing.T, pids map[int]string) {
	t.Helper()
	for pid, home := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("daemon %d (%s) still exists after stop: %v", pid, home, err)
		}
	}
}

// TestFederationScript runs deploy/local/federation.sh 3: three separate
// daemons that all see each other, stopped by 'federation.sh stop'.
func TestFederationScript(t *testing.T) {
	dir := t.TempDir()
	_, done, pids := startFederationScript(t, dir, 3)
	for _, home := range pids {
		st := status(t, home)
		if st.Members != 3 || st.Federation != "local" {
			t.Fatalf("%s: %d members, federation %q", home, st.Members, st.Federation)
		}
	}
	// The nodes are a working federation: one publishes, another finds it.
	var homes []string
	for _, h := range pids {
		homes = append(homes, h)
	}
	mustNii(t, homes[0], "publish", realFile(t, "lambeth.csv"), "--name", "spend", "--keyword", "spend")
	pollNii(t, homes[1], "another node lists the dataset", func(out string) bool {
		var res api.CatalogResult
		return json.Unmarshal([]byte(out), &res) == nil && res.Total == 1
	}, "search", "spend", "--json")
	// A third node's CKAN API finds it, as a harvester would, and its
	// resource URL downloads the exact bytes; then that node pulls it.
	org := status(t, homes[0]).Org
	base := status(t, homes[2]).Addresses["api"]
	var found struct {
		Success bool `json:"success"`
		Result  struct {
			Count   int `json:"count"`
			Results []struct {
				Name      string `json:"name"`
				Resources []struct {
					URL  string `json:"url"`
					Size int64  `json:"size"`
				} `json:"resources"`
			} `json:"results"`
		} `json:"result"`
	}
	// The third node learns of the dataset through gossip: the same bound
	// as pollNii's.
	deadline := time.Now().Add(convergeWithin(t))
	for {
		resp, err := http.Get(base + "/api/3/action/package_search?q=spend&fq=organization:" + org)
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&found)
			resp.Body.Close()
		}
		if found.Success && found.Result.Count == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CKAN package_search on %s never found %s/spend: %+v (%v)", homes[2], org, found, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	want, _ := os.ReadFile(realFile(t, "lambeth.csv"))
	pkg := found.Result.Results[0]
	if pkg.Name != org+"-spend" || len(pkg.Resources) != 1 || pkg.Resources[0].Size != int64(len(want)) {
		t.Fatalf("CKAN package: %+v", pkg)
	}
	resp, err := http.Get(pkg.Resources[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, want) {
		t.Fatalf("the CKAN resource URL gave %d bytes, not the published file", len(got))
	}
	out := filepath.Join(t.TempDir(), "spend.csv")
	mustNii(t, homes[2], "pull", org+"/spend", "-o", out, "--quiet")
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Fatal("the pulled file differs")
	}

	if out, err := fedScript(t, dir, "stop").CombinedOutput(); err != nil {
		t.Fatalf("federation.sh stop: %v\n%s", err, out)
	}
	waitExit(t, done, "stop")
	assertGone(t, pids)
	if _, err := os.Stat(filepath.Join(dir, "pids")); !os.IsNotExist(err) {
		t.Fatalf("pids file after stop: %v", err)
	}
}

// TestFederationScriptCtrlC checks the script's own trap: SIGINT (Ctrl-C)
// to the script stops every daemon it started.
func TestFederationScriptCtrlC(t *testing.T) {
	dir := t.TempDir()
	cmd, done, pids := startFederationScript(t, dir, 2)
	cmd.Process.Signal(os.Interrupt)
	waitExit(t, done, "SIGINT")
	assertGone(t, pids)
}
