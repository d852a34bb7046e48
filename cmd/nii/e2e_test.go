package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nii-uk/nii/internal/spenddata"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"go.uber.org/goleak"
)

// These tests run the real nii binary as separate processes, as a data
// officer would: init, run, publish, list, show, export, status.

var niiBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nii-e2e-")
	if err != nil {
		panic(err)
	}
	niiBin = filepath.Join(dir, "nii")
	build := exec.Command("go", "build", "-o", niiBin, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building nii:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	// The daemons are processes; what runs in this one (the CLI's commands
	// called in-process, the goroutines waiting for daemons) must be gone.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t *testing.T, home string, args ...string) result {
	t.Helper()
	return runIn(t, "", home, args...)
}

// niiCmd is the nii binary with args, run in network namespace ns (""
// for this process's own; see netns_e2e_test.go).
func niiCmd(ns string, args ...string) *exec.Cmd {
	if ns == "" {
		return exec.Command(niiBin, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", ns, niiBin}, args...)...)
}

// runIn is run in network namespace ns.
func runIn(t *testing.T, ns, home string, args ...string) result {
	t.Helper()
	cmd := niiCmd(ns, append([]string{"--home", home}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

func mustNii(t *testing.T, home string, args ...string) string {
	t.Helper()
	return mustNiiIn(t, "", home, args...)
}

// mustNiiIn is mustNii in network namespace ns.
func mustNiiIn(t *testing.T, ns, home string, args ...string) string {
	t.Helper()
	r := runIn(t, ns, home, args...)
	if r.code != 0 {
		t.Fatalf("nii %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// daemon is a running 'nii run' process.
type daemon struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan error
}

func startDaemon(t *testing.T, home string, extra ...string) *daemon {
	t.Helper()
	return startDaemonIn(t, "", "127.0.0.1", home, extra...)
}

// startDaemonIn starts 'nii run' in network namespace ns ("" for this
// process's), its gossip and libp2p listening on ip, its API on the
// namespace's loopback.
func startDaemonIn(t *testing.T, ns, ip, home string, extra ...string) *daemon {
	t.Helper()
	d, err := tryStartDaemonIn(t, ns, ip, home, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// restartDaemon starts home's daemon again on gossip address addr, the one
// it had, as a node with a configured port comes back (docs/registry.md,
// "Restarts"). addr was picked from the ephemeral range: if something took
// it since, the daemon comes back on a new one.
func restartDaemon(t *testing.T, home, addr string, extra ...string) *daemon {
	t.Helper()
	d, err := tryStartDaemonIn(t, "", "127.0.0.1", home, append(extra, "--gossip", addr)...)
	if err == nil {
		return d
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Fatal(err)
	}
	t.Logf("gossip address %s was taken meanwhile: restarting on a new one", addr)
	return startDaemon(t, home, extra...)
}

// tryStartDaemonIn is startDaemonIn, returning an error if the daemon
// exits before it answers or does not answer in time (it is killed at the
// test's end either way).
func tryStartDaemonIn(t *testing.T, ns, ip, home string, extra ...string) (*daemon, error) {
	t.Helper()
	// Every listener on port 0, picked by the daemon itself: a port found
	// free by listening and closing here could be taken before the daemon
	// binds it. A restarted daemon gets a new gossip port and rejoins
	// through --join (memberlist lets a member reclaim its name on a new
	// address, once its old incarnation is dead), unless the test gives it
	// back its old one (restartDaemon); no test restarts the member the
	// others join through.
	args := append([]string{"--home", home, "run", "--api", "127.0.0.1:0",
		"--gossip", ip + ":0", "--p2p", "/ip4/" + ip + "/tcp/0"}, extra...)
	cmd := niiCmd(ns, args...)
	d := &daemon{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("log of 'nii run' in %s (pid %d):\n%s", home, cmd.Process.Pid, d.stderr)
		}
	})
	// Poll, with a deadline, until the daemon answers through its home.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if r := runIn(t, ns, home, "status", "--json"); r.code == 0 {
			return d, nil
		}
		select {
		case err := <-d.done:
			d.done <- err
			return nil, fmt.Errorf("nii run exited early: %v\n%s", err, d.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("nii run did not come up in time\n%s", d.stderr)
}

// log is what the daemon has written to its stderr so far.
func (d *daemon) log() string { return d.stderr.String() }

func (d *daemon) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	d.cmd.Process.Signal(sig)
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-time.After(2 * node.DefaultShutdownGrace):
		// The daemon gives requests in flight its shutdown grace (the
		// default here), then closes: twice that is a hang.
		t.Fatalf("daemon did not stop within %v (twice its shutdown grace)", 2*node.DefaultShutdownGrace)
		return nil
	}
}

func initHome(t *testing.T, org string) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), org)
	mustNii(t, home, "init", "--org", org, "--name", "Royal Borough of Greenwich", "--federation", "london")
	return home
}

func realFile(t *testing.T, name string) string {
	t.Helper()
	// The shared spend files moved to internal/spenddata (issue 12's merge).
	return spenddata.Path(strings.TrimSuffix(name, ".csv"))
}

func TestDataOfficerWorkflow(t *testing.T) {
	home := initHome(t, "greenwich")
	d := startDaemon(t, home)

	q1, q2 := realFile(t, "trafford.csv"), realFile(t, "lambeth.csv")
	out := mustNii(t, home, "publish", q1, "--name", "spend", "--title", "Spend over £500, Q1 2024",
		"--licence", "OGL-UK-3.0", "--keyword", "spend", "--theme", "finance")
	if !strings.Contains(out, "published greenwich/spend@1") {
		t.Fatalf("publish said: %s", out)
	}
	out = mustNii(t, home, "publish", q2, "--name", "spend")
	if !strings.Contains(out, "published greenwich/spend@2") {
		t.Fatalf("second publish said: %s", out)
	}

	list := mustNii(t, home, "datasets")
	for _, want := range []string{"greenwich/spend", "@1", "@2", "2000", "Spend over £500, Q1 2024"} {
		if !strings.Contains(list, want) {
			t.Errorf("nii datasets lacks %q:\n%s", want, list)
		}
	}

	var v api.VersionInfo
	if err := json.Unmarshal([]byte(mustNii(t, home, "show", "greenwich/spend@1", "--json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Ref != "greenwich/spend@1" || v.Meta.Title != "Spend over £500, Q1 2024" || v.Meta.Licence != "OGL-UK-3.0" ||
		v.Meta.Table == nil || v.Meta.Table.Rows != 2000 || v.Meta.Filename != "trafford.csv" || v.Manifest.IsZero() {
		t.Fatalf("show --json: %+v", v)
	}
	human := mustNii(t, home, "show", "greenwich/spend")
	if !strings.Contains(human, "greenwich/spend@2") || !strings.Contains(human, "Invoice Nett Amount") {
		t.Fatalf("show (latest) says:\n%s", human)
	}

	copyPath := filepath.Join(t.TempDir(), "copy.csv")
	mustNii(t, home, "export", "greenwich/spend@1", "-o", copyPath)
	want, _ := os.ReadFile(q1)
	got, _ := os.ReadFile(copyPath)
	if !bytes.Equal(got, want) {
		t.Fatal("exported file is not byte-identical to the original")
	}

	var st api.Status
	if err := json.Unmarshal([]byte(mustNii(t, home, "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(st.ID), "12D3KooW") || st.Org != "greenwich" || st.Federation != "london" ||
		!strings.HasPrefix(st.Addresses["api"], "http://127.0.0.1:") || st.Store.Versions != 2 {
		t.Fatalf("status --json: %+v", st)
	}

	// SIGTERM shuts down cleanly and takes the API files with it.
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("nii run after SIGTERM: %v\n%s", err, d.stderr)
	}
	if _, err := os.Stat(filepath.Join(home, node.TokenFile)); !os.IsNotExist(err) {
		t.Fatalf("admin token still in home after shutdown: %v", err)
	}
	r := run(t, home, "datasets")
	if r.code == 0 || !strings.Contains(r.stderr, "nii run") {
		t.Fatalf("datasets with no daemon: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestBadInputsGetClearErrors(t *testing.T) {
	home := initHome(t, "greenwich")
	startDaemon(t, home)
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "secret.csv")
	os.WriteFile(unreadable, []byte("a,b\n"), 0o000)
	good := realFile(t, "trafford.csv")

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{"publish", filepath.Join(dir, "nope.csv"), "--name", "x"}, "no such file"},
		{"directory", []string{"publish", dir, "--name", "x"}, "is a directory"},
		{"invalid name", []string{"publish", good, "--name", "Spend 2024"}, "invalid dataset name"},
		{"no name", []string{"publish", good}, "name"},
		{"bad access", []string{"publish", good, "--name", "x", "--access", "secret"}, "open or restricted"},
		{"unknown dataset", []string{"show", "greenwich/nope"}, "not found"},
		{"unknown version", []string{"export", "greenwich/spend@9", "-o", filepath.Join(dir, "o.csv")}, "not found"},
		{"malformed ref", []string{"show", "greenwich"}, "ORG/NAME"},
		{"zero version", []string{"show", "greenwich/spend@0"}, "whole number"},
		{"second init", []string{"init", "--org", "greenwich"}, "never overwrites"},
		{"second run", []string{"run", "--api", "127.0.0.1:0"}, "another nii run"},
	} {
		r := run(t, home, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want failure mentioning %q", tc.name, r.code, r.stderr, tc.want)
		}
	}
	if os.Geteuid() != 0 { // root reads anything
		r := run(t, home, "publish", unreadable, "--name", "x")
		if r.code == 0 || !strings.Contains(r.stderr, "cannot read") {
			t.Errorf("unreadable file: exit %d, stderr %q", r.code, r.stderr)
		}
	}
	mustNii(t, home, "publish", good, "--name", "spend")
	// Nothing the refused commands did is visible.
	list := mustNii(t, home, "datasets", "--json")
	var ds []api.DatasetInfo
	json.Unmarshal([]byte(list), &ds)
	if len(ds) != 1 || ds[0].ID != "greenwich/spend" || ds[0].Latest != 1 {
		t.Fatalf("after refused commands: %s", list)
	}
	if _, err := os.Stat(filepath.Join(dir, "o.csv")); !os.IsNotExist(err) {
		t.Fatal("a failed export created its output file")
	}
}

// TestKillDuringPublish kills a publishing daemon with SIGKILL at random
// instants and checks, after each, that the store reopens and holds either
// the whole new version or none of it.
func TestKillDuringPublish(t *testing.T) {
	trials := 12
	if testing.Short() {
		trials = 3
	}
	home := initHome(t, "greenwich")
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	published := map[int][]byte{} // version -> content that must export exactly
	var gcRuns, gcChunks atomic.Int64
	sawPartial, sawComplete, midPublish := 0, 0, 0
	killWithin := 400 * time.Millisecond
	for trial := range trials {
		data := make([]byte, 12<<20+r.IntN(1<<20))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		file := filepath.Join(dir, fmt.Sprintf("v%d.bin", trial))
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}

		d := startDaemon(t, home)
		pub := exec.Command(niiBin, "--home", home, "publish", file, "--name", "spend")
		var pubErr bytes.Buffer
		pub.Stderr = &pubErr
		if err := pub.Start(); err != nil {
			t.Fatal(err)
		}
		pubDone := make(chan error, 1)
		go func() { pubDone <- pub.Wait() }()
		// Collections race the publish until the kill.
		gcDone := make(chan struct{})
		go func() {
			defer close(gcDone)
			for {
				gc := exec.Command(niiBin, "--home", home, "store", "gc", "--json")
				out, err := gc.Output()
				if err != nil {
					return // the daemon was killed
				}
				var res api.StoreGCResult
				if json.Unmarshal(out, &res) == nil {
					gcRuns.Add(1)
					gcChunks.Add(res.Chunks)
				}
			}
		}()
		time.Sleep(time.Duration(r.Int64N(int64(killWithin)))) // the kill instant, not a wait for state
		select {
		case err := <-pubDone:
			// The publish finished before the kill: not a crash mid-publish.
			// It must have succeeded; aim the next kills earlier.
			if err != nil {
				t.Fatalf("trial %d: publish failed before any kill: %v\n%s", trial, err, pubErr.String())
			}
			killWithin = max(killWithin*2/3, 20*time.Millisecond)
			d.stop(t, syscall.SIGKILL)
		default:
			d.stop(t, syscall.SIGKILL)
			<-pubDone // killed mid-way, the publish fails, or succeeds if the daemon had answered
			midPublish++
		}
		<-gcDone

		// Reopen: the store must open cleanly and every version must be whole.
		d = startDaemon(t, home)
		var ds []api.DatasetInfo
		if err := json.Unmarshal([]byte(mustNii(t, home, "datasets", "--json")), &ds); err != nil {
			t.Fatal(err)
		}
		latest := uint64(0)
		if len(ds) == 1 {
			latest = ds[0].Latest
		}
		if int(latest) > len(published)+1 || int(latest) < len(published) {
			t.Fatalf("trial %d: %d versions visible, %d known", trial, latest, len(published))
		}
		if int(latest) == len(published)+1 {
			published[int(latest)] = data
			sawComplete++
		} else {
			sawPartial++
		}
		for v, want := range published {
			out := filepath.Join(dir, "out.bin")
			mustNii(t, home, "export", fmt.Sprintf("greenwich/spend@%d", v), "-o", out)
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("trial %d: version %d is not byte-identical after a crash", trial, v)
			}
		}
		if trial < trials-1 {
			d.stop(t, syscall.SIGKILL)
			continue
		}
		// Last: a collection leaves exactly the live versions' chunks (the
		// files are random, so they share none), reclaiming what the
		// killed publishes stranded.
		var before, after api.Status
		json.Unmarshal([]byte(mustNii(t, home, "status", "--json")), &before)
		var res api.StoreGCResult
		json.Unmarshal([]byte(mustNii(t, home, "store", "gc", "--json")), &res)
		json.Unmarshal([]byte(mustNii(t, home, "status", "--json")), &after)
		var live int64
		for _, b := range published {
			live += int64(len(b))
		}
		// After a crash the byte count is rebuilt from badger's per-value
		// size estimates (within a few bytes a chunk; docs/storage.md), so
		// bytes are compared within 16 a chunk and chunks exactly.
		diff := after.Store.ChunkBytes - live
		if after.Store.Chunks != res.KeptChunks || diff < -16*after.Store.Chunks || diff > 16*after.Store.Chunks {
			t.Fatalf("after gc the store holds %d chunks, %d bytes; gc kept %d chunks, the %d live versions have %d bytes (gc: %+v)",
				after.Store.Chunks, after.Store.ChunkBytes, res.KeptChunks, len(published), live, res)
		}
		t.Logf("racing collections: %d runs deleted %d chunks; the last reclaimed %d chunks, %d bytes (store %d -> %d chunk bytes)",
			gcRuns.Load(), gcChunks.Load(), res.Chunks, res.Bytes, before.Store.ChunkBytes, after.Store.ChunkBytes)
		d.stop(t, syscall.SIGKILL)
	}
	if gcRuns.Load() == 0 {
		t.Fatal("no collection ran during the publishes: the race was not exercised")
	}
	t.Logf("%d trials: %d killed while the publish ran (%d before commit, %d committed in all)", trials, midPublish, sawPartial, sawComplete)
	if midPublish == 0 {
		t.Fatalf("no kill landed while a publish was running (%d trials): the test checked no crash", trials)
	}
}
