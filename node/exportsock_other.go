//go:build !linux

package node

import (
	"errors"
	"os"
)

// The export socket is Linux only (exportsock_linux.go); elsewhere the CLI
// exports over the HTTP API.
type exportSocket struct{}

func (n *Node) startExportSocket() {}

func (s *exportSocket) close() {}

func checkExportFile(f *os.File) error { return errors.ErrUnsupported }
