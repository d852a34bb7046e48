// Package gossip keeps a node in its federation and its catalog current:
// membership and failure detection over memberlist (SWIM), node metadata,
// and the epidemic spread of signed catalog records and revocations, with
// anti-entropy that exchanges per-origin watermarks and fetches what is
// missing in pages through a [Fetcher] (package node plugs in libp2p).
//
// It is the only registry package that links memberlist; the catalog it
// feeds (package registry) does not, so nothing that only reads the catalog
// does. docs/registry.md describes the protocol and its tuning.
package gossip
