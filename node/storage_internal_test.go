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
