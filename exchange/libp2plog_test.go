package exchange

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/gologshim"
)

// TestLibp2pLogsReachTheHostLogger: a libp2p logger (gologshim, as every
// go-libp2p package makes one) writes into the open host's logger, tagged
// with its subsystem, from level warn up; a host whose logger discards
// everything is passed over; once the host has closed, nothing more
// reaches its logger.
func TestLibp2pLogsReachTheHostLogger(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	t.Setenv("GOLOG_LOG_LEVEL", "")                      // the router's defaults, whatever the environment
	quiet := newTestHost(t, nil, "/ip4/127.0.0.1/tcp/0") // discards: passed over
	var buf syncBuffer
	h := newTestHost(t, slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "/ip4/127.0.0.1/tcp/0")

	log := gologshim.Logger("nii-test")
	log.Debug("too chatty to route")
	log.With("conn", 7).Warn("stream reset by peer")
	got := buf.String()
	for _, want := range []string{"stream reset by peer", "component=libp2p", "subsystem=nii-test", "conn=7"} {
		if !strings.Contains(got, want) {
			t.Errorf("host log %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "too chatty") {
		t.Errorf("a debug record was routed: %q", got)
	}

	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	before := buf.String()
	log.Error("after close")
	if buf.String() != before {
		t.Errorf("a record reached a closed host's logger: %q", strings.TrimPrefix(buf.String(), before))
	}
	quiet.Close()
}
