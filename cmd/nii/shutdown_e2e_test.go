package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nii-uk/nii/node"
)

// SIGTERM with a request in flight (a publish whose body stopped coming)
// gives it the configured grace, then cuts it off, and 'nii run' exits 0.
func TestSIGTERMWithRequestInFlightExitsZero(t *testing.T) {
	home := initHome(t, "greenwich")
	if err := node.EditConfig(home, func(c *node.Config) error { c.HTTP.ShutdownGrace = "500ms"; return nil }); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, home)
	addr, _ := os.ReadFile(filepath.Join(home, node.APIFile))
	token, _ := os.ReadFile(filepath.Join(home, node.TokenFile))
	c, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSpace(string(addr)), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/v1/datasets/greenwich/slow/versions?filename=slow.csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100000000\r\n\r\na,b\n1,2\n",
		strings.TrimSpace(string(token)))
	// The publish is in flight once the daemon has read its first bytes;
	// a status call after them goes through the same server.
	mustNii(t, home, "status")
	start := time.Now()
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("nii run after SIGTERM with a publish in flight: %v\n%s", err, d.stderr)
	}
	// d.stop fails the test past 20 s; the grace is half a second.
	t.Logf("stopped in %v", time.Since(start))
	if !strings.Contains(d.stderr.String(), "cut off") {
		t.Fatalf("the log does not say the request was cut off:\n%s", d.stderr)
	}
}
