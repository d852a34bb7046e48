package registry

import (
	"testing"

	"go.uber.org/goleak"
)

// The catalog starts no goroutines of its own; the badger stores the tests
// open must be closed again.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
