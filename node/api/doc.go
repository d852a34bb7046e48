// Package api is a nii node's local HTTP API as its clients see it: the
// request and response types (their JSON is the API's public form,
// docs/api.md and node/openapi.json document it), the error codes and how
// they map to nii's error kinds, and the Go client the nii CLI is built on.
//
// The types here are the API's own. They are not the node's storage
// structs (exchange.VersionRecord, registry.Peer, auth.Record, ...): package
// node converts its internals to them, one function per type, so a change
// to how a node stores something does not change what the API serves. They
// use the root package's nouns (nii.NodeID, nii.Hash, nii.Metadata,
// nii.Action) and nothing else of nii, so a third-party Go client links
// neither badger nor libp2p nor memberlist (a test checks it).
//
// Errors cross the API with their kind: a response's "code" is one of the
// Code constants, and the client's *RemoteError matches the kind with
// errors.Is (errors.Is(err, nii.ErrAmbiguous) on the client side of a pull
// of an ambiguous dataset). errors.go holds the one table both sides use.
package api
