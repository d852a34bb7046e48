package api

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/nii-uk/nii"
)

// Files in a node's home that a client reads to find and diagnose the
// daemon. (Package node keeps the rest of the home's layout.)
const (
	ConfigFile = "config.toml" // the operator's settings: a home has one once 'nii init' ran
	AddrFile   = "api.addr"    // written by the daemon at start: the API's base URL
	TokenFile  = "admin.token" // written by the daemon at start: the admin token, mode 0600
	LockFile   = "nii.lock"    // held (flock) by the running daemon, which writes its pid in it
	// CrashFile receives the Go runtime's report if the daemon dies of a
	// fatal error (a panic, SIGBUS from a full disk under badger's memory
	// maps): 'nii run' points runtime/debug.SetCrashOutput at it and
	// empties it at each start.
	CrashFile = "crash.log"
)

// ErrNoHome is returned when a home has not been initialised. It is of
// kind nii.ErrNotFound.
var ErrNoHome = nii.Errorf(nii.ErrNotFound, "no nii home")

// ErrNotRunning is returned when no daemon serves a home, or the one that
// did no longer answers. It is of kind nii.ErrUnavailable.
var ErrNotRunning = nii.Errorf(nii.ErrUnavailable, "no running node")

// Dial finds the daemon running in home from the address and token it
// wrote there.
func Dial(home string) (*Client, error) {
	if _, err := os.Stat(filepath.Join(home, ConfigFile)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s: run 'nii init --org ORG' first, or pass --home", ErrNoHome, home)
	}
	b, err := os.ReadFile(filepath.Join(home, AddrFile))
	if errors.Is(err, fs.ErrNotExist) {
		why := ""
		if crash := lastWords(home); crash != "" {
			why = "; it last stopped with a fatal error: " + crash
		}
		return nil, fmt.Errorf("%w for home %s%s: start it with 'nii run --home %s'", ErrNotRunning, home, why, home)
	}
	if err != nil {
		return nil, err
	}
	c := &Client{Base: strings.TrimSpace(string(b)), Home: home}
	if tok, err := os.ReadFile(filepath.Join(home, TokenFile)); err == nil {
		c.Token = strings.TrimSpace(string(tok))
	}
	return c, nil
}

// diagnose says, as far as the home tells, why the daemon of home does not
// answer: it died (and, if the runtime left a crash report, of what), or it
// runs but does not answer. "" if the home says nothing.
func diagnose(home string) string {
	if home == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(home, LockFile))
	if err != nil {
		return ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return ""
	}
	if alive(pid) {
		return fmt.Sprintf("process %d still holds the home but does not answer: it may be starting, stopping or stuck (its log says which)", pid)
	}
	msg := fmt.Sprintf("the node (pid %d) is gone without removing %s: it crashed or was killed", pid, filepath.Join(home, AddrFile))
	if crash := lastWords(home); crash != "" {
		msg += "; the runtime reported: " + crash
	} else {
		msg += "; its log (the terminal or journal of 'nii run') says why"
	}
	return msg
}

// alive reports whether a process with that pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// lastWords returns the first line of the daemon's crash report, and
// where the rest is, or "" if there is none.
func lastWords(home string) string {
	path := filepath.Join(home, CrashFile)
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, 4<<10)
	n, _ := f.Read(buf)
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			if len(line) > 300 {
				line = line[:300] + "…"
			}
			return fmt.Sprintf("%q (the full report is in %s)", line, path)
		}
	}
	return ""
}
