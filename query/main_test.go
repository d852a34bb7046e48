package query_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/nii-uk/nii/query"
)

func TestMain(m *testing.M) {
	// Tests start this binary as their SQL worker.
	query.RunWorkerIfAsked()
	goleak.VerifyTestMain(m)
}
