package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nii-uk/nii/node/api"
)

// nii export -o FILE writes exactly the published bytes through the export
// socket, and through the HTTP API when the daemon has no socket (an older
// daemon, another platform), with and without --no-fsync; -o - streams
// them to standard output.
func TestExportBothPaths(t *testing.T) {
	home := initHome(t, "greenwich")
	startDaemon(t, home)
	data := bytes.Repeat([]byte("E09000011,Greenwich,01/04/2024,190000,\"512.00\",Supplier Ltd,Rent\r\n"), 50_000)
	src := filepath.Join(t.TempDir(), "spend.csv")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mustNii(t, home, "publish", src, "--name", "spend")
	want := sha256.Sum256(data)
	dir := t.TempDir()
	check := func(what, path string) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil || sha256.Sum256(got) != want {
			t.Fatalf("%s: %d bytes (%v), not the published file", what, len(got), err)
		}
	}
	sock := filepath.Join(home, api.ExportSocket)
	if _, err := os.Stat(sock); runtime.GOOS == "linux" && err != nil {
		t.Fatalf("the daemon has no export socket: %v", err)
	}
	mustNii(t, home, "export", "greenwich/spend", "-o", filepath.Join(dir, "socket.csv"))
	check("export through the socket", filepath.Join(dir, "socket.csv"))
	mustNii(t, home, "pull", "greenwich/spend", "-q", "-o", filepath.Join(dir, "pull.csv"))
	check("pull -o through the socket", filepath.Join(dir, "pull.csv"))
	mustNii(t, home, "export", "greenwich/spend", "-o", filepath.Join(dir, "socket-nofsync.csv"), "--no-fsync")
	check("export --no-fsync through the socket", filepath.Join(dir, "socket-nofsync.csv"))
	mustNii(t, home, "pull", "greenwich/spend", "-q", "--no-fsync", "-o", filepath.Join(dir, "pull-nofsync.csv"))
	check("pull --no-fsync -o through the socket", filepath.Join(dir, "pull-nofsync.csv"))

	os.Remove(sock)
	mustNii(t, home, "export", "greenwich/spend", "-o", filepath.Join(dir, "http.csv"))
	check("export over HTTP", filepath.Join(dir, "http.csv"))
	mustNii(t, home, "export", "greenwich/spend", "-o", filepath.Join(dir, "http-nofsync.csv"), "--no-fsync")
	check("export --no-fsync over HTTP", filepath.Join(dir, "http-nofsync.csv"))
	r := run(t, home, "export", "greenwich/spend", "-o", "-")
	if r.code != 0 || sha256.Sum256([]byte(r.stdout)) != want {
		t.Fatalf("export -o -: exit %d, %d bytes, %s", r.code, len(r.stdout), r.stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 6 {
		t.Fatalf("files left: %v", entries)
	}
}

// TestKillDuringExport SIGKILLs the daemon at a random instant of a
// durable 'nii export -o FILE' once it is under way (the daemon writing
// the file directly, with O_DIRECT set on the CLI's descriptor) and
// checks after each that the file's name holds the whole version or does
// not exist, that no temporary file is left beside it, and that the
// restarted daemon exports the version exactly.
func TestKillDuringExport(t *testing.T) {
	trials := 6
	if testing.Short() {
		trials = 2
	}
	home := initHome(t, "greenwich")
	dir := t.TempDir()
	src := filepath.Join(dir, "big.bin")
	writeRandom(t, src, 48<<20+12345)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	d := startDaemon(t, home)
	mustNii(t, home, "publish", src, "--name", "big", "-q")
	want := sha256.Sum256(data)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "big.bin")
	killWithin, midExport := 100*time.Millisecond, 0
	for trial := range trials {
		os.Remove(out)
		exp := exec.Command(niiBin, "--home", home, "export", "greenwich/big", "-o", out)
		var expErr bytes.Buffer
		exp.Stderr = &expErr
		// Once the export is under way, a random instant within it.
		expDone := startUnderWay(t, exp, outDir)
		time.Sleep(time.Duration(r.Int64N(int64(killWithin)))) // the kill instant, not a wait for state
		select {
		case err = <-expDone:
			if err != nil {
				t.Fatalf("trial %d: export failed before any kill: %v\n%s", trial, err, expErr.String())
			}
			killWithin = max(killWithin*2/3, 10*time.Millisecond) // aim the next kills earlier
			d.stop(t, syscall.SIGKILL)
		default:
			d.stop(t, syscall.SIGKILL)
			if err = <-expDone; err != nil {
				midExport++
				if !strings.Contains(expErr.String(), "without an answer") {
					t.Fatalf("trial %d: the CLI, its daemon killed mid-export, says: %s", trial, expErr.String())
				}
			}
		}
		got, rerr := os.ReadFile(out)
		switch {
		case err == nil && (rerr != nil || sha256.Sum256(got) != want):
			t.Fatalf("trial %d: the export succeeded but %s holds %d bytes (%v), not the version", trial, out, len(got), rerr)
		case err != nil && rerr == nil:
			t.Fatalf("trial %d: the export failed (%v) but left %d bytes at %s", trial, err, len(got), out)
		case err != nil && !errors.Is(rerr, fs.ErrNotExist):
			t.Fatalf("trial %d: %v", trial, rerr)
		}
		if entries, _ := os.ReadDir(outDir); len(entries) > 1 || (len(entries) == 1 && entries[0].Name() != "big.bin") {
			t.Fatalf("trial %d: left beside the export: %v", trial, entries)
		}
		d = startDaemon(t, home)
	}
	if midExport == 0 {
		t.Fatalf("no kill landed during an export (every one of %d finished first)", trials)
	}
	os.Remove(out)
	mustNii(t, home, "export", "greenwich/big", "-o", out)
	if got, err := os.ReadFile(out); err != nil || sha256.Sum256(got) != want {
		t.Fatalf("export after the kills: %d bytes (%v), not the version", len(got), err)
	}
	t.Logf("%d of %d kills landed during an export", midExport, trials)
}

// startUnderWay starts cmd, an export or a pull into a file of dir, and
// waits until it is under way (its temporary file sized by the daemon,
// with fallocate, before any chunk is written) or has exited. Its exit
// comes on the channel returned.
func startUnderWay(t *testing.T, cmd *exec.Cmd, dir string) <-chan error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for deadline := time.Now().Add(20 * time.Second); !exportUnderWay(dir) && len(done) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not under way after 20 s", strings.Join(cmd.Args[1:], " "))
		}
		time.Sleep(time.Millisecond)
	}
	return done
}

// exportUnderWay reports whether dir holds an export's temporary file with
// bytes in it.
func exportUnderWay(dir string) bool {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".nii-tmp-") {
			if fi, err := e.Info(); err == nil && fi.Size() > 0 {
				return true
			}
		}
	}
	return false
}
