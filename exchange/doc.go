// Package exchange holds a node's content: the content-addressed chunk store,
// manifests, and (in later work) the libp2p protocols that pull and sync
// versions between nodes, from the publisher or any replica.
//
// Everything content-shaped is verified by hash on the way in and on the way
// out: a chunk is stored only if its bytes hash to its name, a version is
// visible only once its signed manifest and every chunk it names are stored,
// and reading a version checks each chunk again before a byte is written.
//
// exchange does not import registry; what it needs from the rest of the node
// it asks for through small interfaces that package node satisfies.
package exchange
