// Package registry knows what datasets exist: dataset metadata (DCAT-aligned,
// with CSV table profiles), the local catalog, and — as the registry work
// lands — the federated catalog kept current by gossip, and search over it.
//
// registry does not import exchange; package node wires the two together.
package registry

import "strings"

// IsTabular reports whether a media type is one nii profiles as a table.
func IsTabular(mediaType string) bool {
	mt, _, _ := strings.Cut(mediaType, ";")
	switch strings.TrimSpace(mt) {
	case "text/csv", "text/tab-separated-values":
		return true
	}
	return false
}
