// Package exchange holds a node's content: the content-addressed chunk store,
// manifests, the libp2p protocols that serve them, and the one fetch engine
// that takes a version from its providers (the publisher or any replica),
// for a pull into the store or a relay to an HTTP client.
//
// Everything content-shaped is verified by hash on the way in and on the way
// out: a chunk is stored only if its bytes hash to its name, a manifest is
// accepted only if its publisher signed it (CheckManifest), a version is
// visible only once its signed manifest and every chunk it names are stored,
// and reading a version checks each chunk again before a byte is written.
//
// exchange does not import registry; what it needs from the rest of the node
// it asks for through small interfaces (Fetcher, ChunkSink, ContentSource,
// Authorizer) that package node satisfies.
package exchange
