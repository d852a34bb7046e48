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

// PullTo is the export socket's pull (export_linux.go); elsewhere the
// caller pulls over the HTTP API.
func (c *Client) PullTo(ctx context.Context, req PullRequest, f *os.File, noFsync bool, progress func(done, total int64)) (*ExportResult, error) {
	return nil, ErrNoFastPath
}
