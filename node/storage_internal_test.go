package node

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestBadgerLogsKeepTheirLevel: badger's errors and warnings reach the
// node's log at their own level, and the info lines that say the store
// changed under the operator (a file truncated, deleted, rewritten) at
// info, not hidden at debug.
func TestBadgerLogsKeepTheirLevel(t *testing.T) {
	var buf bytes.Buffer
	l := badgerLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l.Errorf("Error while curlf sync: %v\n", "disk gone")
	l.Warningf("We shouldn't reach batch size of zero.")
	l.Infof("Deleting empty file: %s", "000003.vlog")
	l.Infof("Replaying file id: %d", 7)
	l.Debugf("noise")
	out := buf.String()
	for _, want := range []string{
		`level=ERROR msg="badger: Error while curlf sync: disk gone"`,
		`level=WARN msg="badger: We shouldn't reach batch size of zero."`,
		`level=INFO msg="badger: Deleting empty file: 000003.vlog"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Replaying") || strings.Contains(out, "noise") {
		t.Errorf("routine badger lines reached the info log:\n%s", out)
	}
}

func TestStoreConfigMinFree(t *testing.T) {
	for _, c := range []struct {
		in    string
		bytes uint64
		share float64
		ok    bool
	}{
		{"", DefaultMinFree, 0, true},
		{"512MiB", 512 << 20, 0, true},
		{"5%", 0, 0.05, true},
		{"1GiB, 2.5%", 1 << 30, 0.025, true},
		{"1MiB", 0, 0, false},   // below what badger may write at once
		{"95%", 0, 0, false},    // no room left to use
		{"5%,6%", 0, 0, false},  // two shares
		{"lots", 0, 0, false},   // not a size
		{"16MiB,", 0, 0, false}, // an empty part
	} {
		b, s, err := StoreConfig{MinFree: c.in}.minFree()
		if (err == nil) != c.ok || (c.ok && (b != c.bytes || s != c.share)) {
			t.Errorf("min_free %q: %d, %v, %v; want %d, %v, ok %v", c.in, b, s, err, c.bytes, c.share, c.ok)
		}
	}
	for _, v := range []string{"", "off", "1h"} {
		if err := (StoreConfig{VerifyInterval: v, GCInterval: v}).validate(); err != nil {
			t.Errorf("interval %q: %v", v, err)
		}
	}
	if err := (StoreConfig{GCInterval: "10ms"}).validate(); err == nil {
		t.Error("a gc_interval under 1s was accepted")
	}
}
