package gossip

import (
	"testing"

	"go.uber.org/goleak"
)

// Every member a test starts is closed by its cleanup, and Close waits for
// the workers: nothing may be left running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
