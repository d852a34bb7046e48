package auth

import (
	"testing"

	"go.uber.org/goleak"
)

// auth starts no goroutines of its own, but its tests open badger stores
// (the revocation list, the audit log), whose goroutines must stop when
// they are closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
