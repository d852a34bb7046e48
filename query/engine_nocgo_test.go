//go:build !cgo

package query_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nii-uk/nii/query"
)

func TestBuiltWithoutSQL(t *testing.T) {
	if _, err := query.Open(query.DefaultConfig()); !errors.Is(err, query.ErrNoSQL) {
		t.Fatalf("Open: %v", err)
	}
	var e *query.Engine
	if _, err := e.Query(context.Background(), "SELECT 1"); !errors.Is(err, query.ErrNoSQL) || err.Error() != "built without SQL: rebuild nii with CGO_ENABLED=1 and gcc installed" {
		t.Fatalf("Query: %v", err)
	}
}
