package nii

// Log attribute keys. Every package that logs uses these, so that a node's
// log reads and searches the same way whichever part wrote a line (as
// litestream's log.go does for litestream). A key names what its value is,
// not where it came from.
const (
	LogNode      = "node"      // the node that logs (short ID); set once on the node's logger
	LogPeer      = "peer"      // the remote node of an exchange (short ID)
	LogOrigin    = "origin"    // the node a catalog record came from (short ID)
	LogOrg       = "org"       // an org slug
	LogDataset   = "dataset"   // org/name or org/name@N
	LogAction    = "action"    // read or sync
	LogReason    = "reason"    // a stable reason code (auth's Reason constants)
	LogProtocol  = "protocol"  // a libp2p protocol ID
	LogAddr      = "addr"      // a network address
	LogErr       = "err"       // an error's text
	LogCode      = "code"      // a wire status code
	LogSeq       = "seq"       // a catalog record's sequence number
	LogBytes     = "bytes"     // a byte count
	LogChunks    = "chunks"    // a chunk count
	LogTook      = "took"      // a duration
	LogCount     = "count"     // how many things a line is about
	LogRetryIn   = "retry_in"  // how long until the next attempt
	LogComponent = "component" // a library that logs through the node's logger (libp2p, badger)
	LogSubsystem = "subsystem" // that library's own name for the part that logged

	// What a node says of itself when it starts.
	LogNodeID     = "node_id"    // its full node ID
	LogFederation = "federation" // the federation it belongs to
	LogAPIAddr    = "api"        // where its local API listens
	LogGossipAddr = "gossip"     // where it gossips
	LogP2PAddrs   = "p2p"        // its libp2p addresses
	LogMembers    = "members"    // live gossip members
	LogJTI        = "jti"        // a grant's or credential's ID
	LogExpires    = "expires"    // when a token expires
)
