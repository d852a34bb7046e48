package opendata

import (
	"testing"

	"go.uber.org/goleak"
)

// The handler tests serve through httptest servers and call them with
// real HTTP clients; every server, connection and client goroutine must be
// gone at the end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
