package search

import (
	"testing"

	"go.uber.org/goleak"
)

// The index starts no goroutines; the concurrency tests' readers and
// writers must all have finished.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
