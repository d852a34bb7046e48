package harmony

import (
	"testing"

	"go.uber.org/goleak"
)

// Merge maps sources on goroutines it waits for; none may outlive it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
