package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// umaskNii runs nii under a umask, as a user's shell would.
func umaskNii(t *testing.T, umask, home string, args ...string) {
	t.Helper()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	script := fmt.Sprintf("umask %s && exec '%s' --home '%s' %s", umask, niiBin, home, strings.Join(quoted, " "))
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("umask %s nii %s: %v\n%s", umask, strings.Join(args, " "), err, out)
	}
}

// export -o and pull -o create files as any program does, with the umask
// honoured, and restricted data 0600 whatever the umask, unless --mode
// asks otherwise.
func TestOutputFileModes(t *testing.T) {
	home := initHome(t, "greenwich")
	startDaemon(t, home)
	src := filepath.Join(t.TempDir(), "data.csv")
	if err := os.WriteFile(src, []byte("a,b\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustNii(t, home, "publish", src, "--name", "open-data")
	mustNii(t, home, "publish", src, "--name", "closed-data", "--access", "restricted")
	dir := t.TempDir()
	for _, tc := range []struct {
		umask, dataset string
		extra          []string
		want           os.FileMode
	}{
		{"022", "greenwich/open-data", nil, 0o644},
		{"077", "greenwich/open-data", nil, 0o600},
		{"022", "greenwich/closed-data", nil, 0o600},
		{"077", "greenwich/closed-data", nil, 0o600},
		{"022", "greenwich/closed-data", []string{"--mode", "0640"}, 0o640},
		{"077", "greenwich/closed-data", []string{"--mode", "0640"}, 0o600}, // the umask still narrows it
	} {
		for _, verb := range []string{"export", "pull"} {
			name := fmt.Sprintf("%s %s umask %s %v", verb, tc.dataset, tc.umask, tc.extra)
			out := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(name))
			args := append([]string{verb, tc.dataset, "-o", out}, tc.extra...)
			if verb == "pull" {
				args = append(args, "-q")
			}
			umaskNii(t, tc.umask, home, args...)
			fi, err := os.Stat(out)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != tc.want {
				t.Errorf("%s: mode %04o, want %04o", name, got, tc.want)
			}
		}
	}
	if r := run(t, home, "export", "greenwich/open-data", "-o", filepath.Join(dir, "x"), "--mode", "rw"); r.code == 0 || !strings.Contains(r.stderr, "--mode") {
		t.Fatalf("a bad --mode: exit %d, %s", r.code, r.stderr)
	}
}
