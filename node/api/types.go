package api

import (
	"time"

	"github.com/nii-uk/nii"
)

// Status is what GET /api/v1/status returns.
type Status struct {
	ID           nii.NodeID        `json:"id"`
	Org          string            `json:"org"`
	OrgName      string            `json:"org_name,omitempty"`
	Federation   string            `json:"federation"`
	RegistryOnly bool              `json:"registry_only"`
	Addresses    map[string]string `json:"addresses"` // "api", "gossip"
	Uptime       string            `json:"uptime"`
	Store        StoreStats        `json:"store"`
	Disk         DiskState         `json:"disk"` // free space on the home's device (storage.go)
	P2PAddrs     []string          `json:"p2p_addrs"`
	Members      int               `json:"members"` // live gossip members, this node included
	Catalog      CatalogStats      `json:"catalog"`
	Version      string            `json:"version"` // the node's build
	// History says whether this node has learnt from the federation what
	// it published before (a home restored from a backup lacks it).
	History  History  `json:"history"`
	Security Security `json:"security"`
}

// History is what a node knows of its own published history.
type History struct {
	// Synced: the node has heard from a member what that member holds of
	// its records (or it needs nobody: it is the federation's first
	// member). Until then a publish waits, then is refused.
	Synced bool `json:"synced"`
	// Adopted counts this node's own records learnt from the federation
	// beyond its own counter: an earlier life of this node signed them (a
	// home restored from a backup). They are taken, and new seqs and
	// versions follow them.
	Adopted int64 `json:"adopted,omitempty"`
	// Collisions counts seqs this node issued that the federation holds
	// signed for other content: a restored home that published before it
	// learnt, or a copy of this node's key running elsewhere. This node's
	// records are signed again under new seqs.
	Collisions int64 `json:"collisions,omitempty"`
}

// Federation modes, as Status.Security.Mode gives them.
const (
	// ModeVerified: the node has trust anchors; it lists and takes data
	// only from publishers a membership credential proves.
	ModeVerified = "verified"
	// ModeOpen: no trust anchors; every org claim is unverified and the
	// only claim to a dataset is its publisher (a lab, a demo).
	ModeOpen = "open"
)

// Security says how the node trusts the federation.
type Security struct {
	Mode            string `json:"mode"`    // ModeVerified or ModeOpen
	Anchors         int    `json:"anchors"` // trusted issuer keys
	GossipEncrypted bool   `json:"gossip_encrypted"`
	// Warnings say, in words, what is open: unencrypted gossip, listeners
	// on every interface, no trust anchors.
	Warnings []string `json:"warnings,omitempty"`
}

// StoreStats counts what the node's content store holds.
type StoreStats struct {
	Chunks     int64 `json:"chunks"`
	ChunkBytes int64 `json:"chunk_bytes"`
	Versions   int64 `json:"versions"`
	Datasets   int64 `json:"datasets"`
}

// CatalogStats summarises the node's view of the federated catalog.
type CatalogStats struct {
	Datasets int              `json:"datasets"` // searchable adverts
	Origins  int              `json:"origins"`  // nodes records came from
	Applied  int64            `json:"applied"`  // records accepted since start
	Rejected map[string]int64 `json:"rejected"` // records refused since start, by reason
}

// VersionInfo describes one stored version: the "version object" of
// docs/api.md.
type VersionInfo struct {
	Ref       string       `json:"ref"` // org/name@N
	Manifest  nii.Hash     `json:"manifest"`
	Publisher nii.NodeID   `json:"publisher"`
	Created   time.Time    `json:"created"` // when the publisher made it
	Size      int64        `json:"size"`
	Chunks    int          `json:"chunks"`
	Meta      nii.Metadata `json:"meta"`
	Stored    time.Time    `json:"stored"` // when this node committed it
	Version   uint64       `json:"version"`
	// Damaged, if set, says why this node's copy is damaged (chunks
	// missing or failing their hash): it is not served until repaired.
	Damaged string `json:"damaged,omitempty"`
}

// Dataset roles.
const (
	RolePublisher = "publisher" // this node publishes it
	RoleReplica   = "replica"   // pulled from the federation
)

// DatasetInfo describes one dataset the node holds and its versions,
// oldest first.
type DatasetInfo struct {
	ID       string        `json:"id"` // org/name
	Latest   uint64        `json:"latest"`
	Role     string        `json:"role,omitempty"` // RolePublisher or RoleReplica
	Follow   *Follow       `json:"follow,omitempty"`
	Versions []VersionInfo `json:"versions"`
	// Damaged lists the versions whose copy here the store check (or
	// serving) found damaged and that are not repaired yet.
	Damaged []uint64 `json:"damaged,omitempty"`
}

// Follow states.
const (
	FollowSynced    = "synced"    // holds the latest advertised version
	FollowSyncing   = "syncing"   // a pull is running
	FollowWaiting   = "waiting"   // behind; retrying with backoff (providers unreachable)
	FollowRefused   = "refused"   // a provider refused access (grant missing, expired or revoked)
	FollowWithdrawn = "withdrawn" // the publisher withdrew the dataset
	// The follow's grant can no longer be used; it stops until 'nii follow'
	// is run again with a new grant.
	FollowGrantExpired = "grant_expired"
	FollowGrantRevoked = "grant_revoked"
	// Another node now claims to publish the dataset than the one followed;
	// the follow stops. Follow again to accept the new one.
	FollowPublisherChanged = "publisher_changed"
)

// Follow is a subscription and its sync state.
type Follow struct {
	Dataset      nii.DatasetID `json:"dataset"`
	HasGrant     bool          `json:"has_grant"`
	Since        time.Time     `json:"since"`
	State        string        `json:"state"`   // one of the Follow states
	Version      uint64        `json:"version"` // newest version held
	Advertised   uint64        `json:"advertised"`
	LastError    string        `json:"last_error,omitempty"`
	LastSync     time.Time     `json:"last_sync,omitempty"`
	NextAttempt  time.Time     `json:"next_attempt,omitempty"`
	Failures     int           `json:"failures,omitempty"`
	FetchedBytes int64         `json:"fetched_bytes"`
	Publisher    nii.NodeID    `json:"publisher,omitempty"` // pinned when the follow began
	// AllowUnverified: the follow was asked to accept an unverified publisher.
	AllowUnverified bool `json:"allow_unverified,omitempty"`
	// ErrorCode is the API error code of LastError (unavailable,
	// refused, …), for a caller that puts the error in its own words.
	ErrorCode string `json:"error_code,omitempty"`
	// ToGo is what is still to fetch of the latest version, counted from
	// this node's store against that version's manifest; absent while the
	// manifest is not known here (no pull of it has reached a provider).
	ToGo *FollowToGo `json:"to_go,omitempty"`
}

// FollowToGo is a follow's distance to the latest version: the chunks of
// its signed manifest that this node's store does not hold, and their
// bytes (0 and 0 when synced).
type FollowToGo struct {
	Version  uint64   `json:"version"`  // the version the manifest is of
	Manifest nii.Hash `json:"manifest"` // its hash
	Size     int64    `json:"size"`     // the version's bytes
	Chunks   int      `json:"chunks"`   // its distinct chunks
	// ChunksToGo and BytesToGo are the distinct chunks not held, and
	// the sum of their sizes from the manifest.
	ChunksToGo int   `json:"chunks_to_go"`
	BytesToGo  int64 `json:"bytes_to_go"`
}

// FollowRequest is the body of POST /api/v1/follows.
type FollowRequest struct {
	Dataset string `json:"dataset"` // org/name
	Grant   string `json:"grant,omitempty"`
	// AllowUnverified lets a node with trust anchors follow a dataset
	// whose only publisher claim is unverified.
	AllowUnverified bool `json:"allow_unverified,omitempty"`
}

// UnfollowResult is what DELETE /api/v1/follows/{org}/{name} returns.
type UnfollowResult struct {
	Unfollowed string `json:"unfollowed"`
}

// WithdrawResult is what POST /api/v1/datasets/{org}/{name}/withdraw returns.
type WithdrawResult struct {
	Withdrawn string `json:"withdrawn"`
}

// FacetCount is how many matching datasets have one facet value.
type FacetCount struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// CatalogHit is one dataset in search results.
type CatalogHit struct {
	ID        string       `json:"id"` // org/name
	Version   uint64       `json:"version"`
	Manifest  nii.Hash     `json:"manifest"`
	Publisher nii.NodeID   `json:"publisher_node"`
	Verified  bool         `json:"verified"`
	Online    bool         `json:"online"`
	LastSeen  time.Time    `json:"last_seen"`
	Score     float64      `json:"score"`
	Meta      nii.Metadata `json:"meta"`
	// Claim is set on a record the catalog does not list under the
	// dataset's own name (an unverified claim, or one of two rival
	// claims): it names this origin's claim apart (registry.ClaimID).
	Claim string `json:"claim,omitempty"`
}

// CatalogResult is a page of search results with facet counts.
type CatalogResult struct {
	Total  int                     `json:"total"`
	Offset int                     `json:"offset"`
	Limit  int                     `json:"limit"`
	Hits   []CatalogHit            `json:"hits"`
	Facets map[string][]FacetCount `json:"facets"` // publisher, theme, keyword, licence, format, access
}

// Provider is a node that serves a version of a dataset.
type Provider struct {
	Node     nii.NodeID `json:"node"`
	Org      string     `json:"org,omitempty"`
	Version  uint64     `json:"version"`
	Replica  bool       `json:"replica"`
	Verified bool       `json:"verified"`
	Online   bool       `json:"online"`
	LastSeen time.Time  `json:"last_seen"`
}

// CatalogDataset is what the federation knows of one dataset.
type CatalogDataset struct {
	ID        string       `json:"id"`
	Version   uint64       `json:"version"`
	Manifest  nii.Hash     `json:"manifest"`
	Publisher nii.NodeID   `json:"publisher_node"`
	Verified  bool         `json:"verified"`
	Online    bool         `json:"online"`
	LastSeen  time.Time    `json:"last_seen"`
	Withdrawn bool         `json:"withdrawn,omitempty"`
	Signed    time.Time    `json:"signed"`
	Meta      nii.Metadata `json:"meta"`
	Providers []Provider   `json:"providers"`
	// Others lists other origins that advertise the same dataset ID (an
	// unverified claim beside a verified one, say).
	Others []Provider   `json:"other_claims,omitempty"`
	Local  *DatasetInfo `json:"local,omitempty"` // the versions this node holds
}

// Peer states.
const (
	PeerAlive = "alive"
	PeerDead  = "dead" // failed: its datasets stay listed as offline
	PeerLeft  = "left" // left gracefully
)

// PeerInfo is a member of the federation as the node knows it.
type PeerInfo struct {
	ID       nii.NodeID `json:"id"`
	Org      string     `json:"org"`
	Addrs    []string   `json:"p2p_addrs,omitempty"`
	Gossip   string     `json:"gossip_addr"`
	Registry bool       `json:"registry_only,omitempty"`
	State    string     `json:"state"` // one of the Peer states
	Seq      uint64     `json:"catalog_seq"`
	LastSeen time.Time  `json:"last_seen"`
	// Verified is set when the peer's org claim is proven by the
	// membership credential its catalog records carry.
	Verified bool `json:"verified"`
	Datasets int  `json:"datasets"` // how many it advertises
	// Transports names the libp2p transports of this node's open
	// connections to the peer ("tcp", "quic"); empty when none is open.
	Transports []string `json:"transports,omitempty"`
}

// Online reports whether the peer is reachable by gossip now.
func (p PeerInfo) Online() bool { return p.State == PeerAlive }

// PullRequest is the body of POST /api/v1/pull.
type PullRequest struct {
	Ref   string `json:"ref"` // org/name or org/name@N
	Grant string `json:"grant,omitempty"`
	// AllowUnverified lets a node with trust anchors pull a dataset whose
	// only publisher claim is unverified.
	AllowUnverified bool `json:"allow_unverified,omitempty"`
}

// PullEvent is one line of the pull response stream: progress (repeated at
// least every PullHeartbeat while the pull runs), then a final line with
// Result or Error.
type PullEvent struct {
	Done   int64        `json:"done"`
	Total  int64        `json:"total"`
	Result *PullSummary `json:"result,omitempty"`
	Error  *APIError    `json:"error,omitempty"`
}

// PullHeartbeat bounds the silence between two lines of a pull's stream:
// the node repeats its last progress line this often while it waits on
// providers, so a client can tell a slow pull from a dead node.
const PullHeartbeat = 10 * time.Second

// PullSummary reports a finished pull.
type PullSummary struct {
	Version       VersionInfo      `json:"version"`
	FetchedChunks int              `json:"fetched_chunks"`
	FetchedBytes  int64            `json:"fetched_bytes"`
	HeldChunks    int              `json:"held_chunks"`
	Providers     map[string]int64 `json:"providers"` // bytes per provider node ID
	Dropped       []nii.NodeID     `json:"dropped,omitempty"`
	// PublisherVerified says whether the publisher's org claim is proven
	// by a membership credential this node's trust anchors accept.
	PublisherVerified bool `json:"publisher_verified"`
	// CopiedChunks, for 'nii pull -o FILE' through the export socket, is
	// how many of the version's chunks were written into the file as they
	// arrived; the rest were written from the store after the pull.
	CopiedChunks int `json:"copied_chunks,omitempty"`
}

// JWK is an issuer's public key as a JSON Web Key (RFC 7517; Ed25519 keys
// as RFC 8037 gives them).
type JWK struct {
	Kty  string `json:"kty"`
	Crv  string `json:"crv"`
	X    string `json:"x"`
	Kid  string `json:"kid,omitempty"`
	Alg  string `json:"alg,omitempty"`
	Use  string `json:"use,omitempty"`
	Name string `json:"name,omitempty"` // nii's label for the issuer; other libraries ignore it
}

// TrustInfo is one trusted issuer key.
type TrustInfo struct {
	KID  string `json:"kid"`
	Name string `json:"name,omitempty"`
	JWK  JWK    `json:"jwk"`
}

// CredentialInfo is what GET /api/v1/credential returns.
type CredentialInfo struct {
	Installed bool      `json:"installed"`
	Org       string    `json:"org,omitempty"`
	Name      string    `json:"name,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	ID        string    `json:"id,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
	Valid     bool      `json:"valid"`            // verifies against the node's own anchors
	Reason    string    `json:"reason,omitempty"` // why not
	Token     string    `json:"token,omitempty"`  // the credential (public: it travels in adverts)
}

// Revocation is one revocation the node holds.
type Revocation struct {
	Revokes string    `json:"revokes"` // the revoked grant's or credential's ID
	Expires time.Time `json:"expires"`
	Token   string    `json:"token"`
}

// RevokeResult is what POST /api/v1/revocations returns.
type RevokeResult struct {
	Revokes string `json:"revokes"`
	New     bool   `json:"new"` // false: the node held it already
}

// InspectRequest is the body of POST /api/v1/grants/inspect. Dataset, if
// given, makes the check a full one: as if Node (default: the node asked),
// of verified org Org, asked to perform Action (default read) on Dataset.
type InspectRequest struct {
	Token   string     `json:"token"`
	Dataset string     `json:"dataset,omitempty"`
	Action  string     `json:"action,omitempty"`
	Node    nii.NodeID `json:"node,omitempty"`
	Org     string     `json:"org,omitempty"`
}

// TokenReport is how a node judges a token (POST /api/v1/grants/inspect).
type TokenReport struct {
	Type    string         `json:"type,omitempty"` // the typ header
	Header  map[string]any `json:"header,omitempty"`
	Claims  map[string]any `json:"claims,omitempty"`
	Expires time.Time      `json:"expires,omitzero"`
	Valid   bool           `json:"valid"`
	Reason  string         `json:"reason,omitempty"` // a refusal's reason code
	Detail  string         `json:"detail,omitempty"`
	// Request is the access checked, if one was given.
	Request *CheckedRequest `json:"request,omitempty"`
}

// CheckedRequest is the access a TokenReport checked. (Its JSON member
// names are capitalised: that is the shape the API has always served.)
type CheckedRequest struct {
	Dataset nii.DatasetID `json:"Dataset"`
	Action  nii.Action    `json:"Action"`
	Node    nii.NodeID    `json:"Node"`
	Org     string        `json:"Org"`
}

// Audit results.
const (
	Allowed = "allowed"
	Refused = "refused"
)

// AuditRecord is one access decision.
type AuditRecord struct {
	Seq     uint64     `json:"seq"`
	Time    time.Time  `json:"time"`
	Node    nii.NodeID `json:"node"`          // the requesting node (authenticated)
	Org     string     `json:"org,omitempty"` // its verified org, if proven
	Dataset string     `json:"dataset"`       // org/name@N
	Action  nii.Action `json:"action"`
	Grant   string     `json:"grant_id,omitempty"` // the grant's jti, if one was presented and a jti could be read
	// GrantUnverified: Grant is only what an unverifiable token claimed.
	GrantUnverified bool   `json:"grant_id_unverified,omitempty"`
	Result          string `json:"result"` // Allowed or Refused
	Reason          string `json:"reason"`
	Detail          string `json:"detail,omitempty"`
}

// AuditPage is what GET /api/v1/audit returns.
type AuditPage struct {
	Records []AuditRecord `json:"records"`
	Next    uint64        `json:"next,omitempty"` // pass as after= for the next page
}

// Readiness is the body of GET /readyz.
type Readiness struct {
	Ready  bool              `json:"ready"`
	Reason string            `json:"reason,omitempty"` // why not, when not
	Checks map[string]string `json:"checks"`
}

// Headers of a content response
// (GET /api/v1/datasets/{org}/{name}/versions/{version}/content).
const (
	HeaderRef      = "Nii-Ref"      // org/name@N served
	HeaderSize     = "Nii-Size"     // its size in bytes
	HeaderManifest = "Nii-Manifest" // its manifest hash
	// TrailerError carries an error that happened after a content response
	// started: the client must treat the body as failed if it is set.
	TrailerError = "Nii-Error"
)

// DiskState is the free space on the device holding the node's home, as
// /readyz, /metrics and 'nii status' report it.
type DiskState struct {
	Free     uint64 `json:"free"`      // bytes an unprivileged writer may still use
	Total    uint64 `json:"total"`     // the device's size
	Floor    uint64 `json:"floor"`     // bytes kept free ([store] min_free)
	Low      bool   `json:"low"`       // below the floor: publishes and pulls are refused
	ReadOnly bool   `json:"read_only"` // started below the floor: the store is open read-only
	Refused  int64  `json:"refused"`   // writes refused for space since start
}

// StoreVerifyResult is the answer of POST /api/v1/store/verify ('nii store
// verify'): what the store check read, and each damaged version found.
type StoreVerifyResult struct {
	Versions int              `json:"versions"`
	Chunks   int              `json:"chunks"` // distinct chunks read and hashed
	Bytes    int64            `json:"bytes"`
	Took     string           `json:"took"`
	Damaged  []DamagedVersion `json:"damaged"`
}

// DamagedVersion is one damaged version and what was done about it.
type DamagedVersion struct {
	Ref             string `json:"ref"`
	Missing         int    `json:"missing"` // chunks named and not stored
	Corrupt         int    `json:"corrupt"` // chunks stored that fail their hash or cannot be read
	Reason          string `json:"reason"`
	AdvertWithdrawn bool   `json:"advert_withdrawn,omitempty"` // this node's replica advert was withdrawn
	Repaired        bool   `json:"repaired"`                   // re-fetched from other providers and verified
	RepairError     string `json:"repair_error,omitempty"`     // why not (yet)
}

// StoreGCResult is the answer of POST /api/v1/store/gc ('nii store gc').
type StoreGCResult struct {
	Versions     int    `json:"versions"`      // versions whose chunks were kept
	KeptChunks   int64  `json:"kept_chunks"`   // chunks kept
	Chunks       int64  `json:"chunks"`        // chunks deleted: named by no version
	Bytes        int64  `json:"bytes"`         // their bytes
	SparedChunks int64  `json:"spared_chunks"` // unnamed, but in use by a publish or pull in flight
	VlogRewrites int    `json:"vlog_rewrites"` // value-log files badger rewrote to return space
	DiskBefore   int64  `json:"disk_before"`   // the store's size on disk (badger's estimate) before
	DiskAfter    int64  `json:"disk_after"`    // and after
	Took         string `json:"took"`
}
