package main

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"testing"

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
