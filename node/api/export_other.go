//go:build !linux

package api

import (
	"context"
	"os"

	"github.com/nii-uk/nii"
)

// ExportTo is the export socket's client (export_linux.go); elsewhere there
// is no socket, and the caller uses Content.
func (c *Client) ExportTo(ctx context.Context, r nii.Ref, f *os.File, noFsync bool) (*ExportResult, error) {
	return nil, ErrNoFastPath
}
