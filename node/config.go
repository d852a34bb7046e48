package node

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/node/api"
	"github.com/pelletier/go-toml/v2"
)

// File names inside a node's home directory. Those a client of the local
// API reads to find the daemon are node/api's.
const (
	ConfigFile = api.ConfigFile   // the operator's settings
	KeyFile    = "node.key"       // the node's Ed25519 key (libp2p protobuf encoding), mode 0600
	StoreDir   = "store"          // the badger database
	LockFile   = api.LockFile     // held (flock) by the running daemon, which writes its pid there
	APIFile    = api.AddrFile     // written by the daemon: where its local API listens
	TokenFile  = api.TokenFile    // written by the daemon: the local admin token, mode 0600
	CredFile   = "credential.jwt" // this node's membership credential, if enrolled
	CrashFile  = api.CrashFile    // the Go runtime's report if the daemon dies of a fatal error ('nii run' sets it up)
)

// Config is a node's configuration: what config.toml holds, plus the home
// it was read from and runtime-only settings.
type Config struct {
	// Home is the node's directory. Not stored in the file.
	Home string `toml:"-"`

	Org        string `toml:"org" comment:"the publishing body this node speaks for (a slug, e.g. greenwich)"`
	OrgName    string `toml:"org_name,omitempty" comment:"its display name"`
	Federation string `toml:"federation" comment:"the federation (trust domain) this node belongs to"`

	// API is the local HTTP API's listen address. Loopback by default: the
	// API changes the node only with the admin token, but reads are public.
	API string `toml:"api" comment:"local HTTP API listen address (host:port; port 0 picks a free one)"`

	// RegistryOnly nodes hold no data and only index the federation.
	RegistryOnly bool `toml:"registry_only,omitempty"`

	// LowMemory shrinks badger's caches and memtables (for small VMs and
	// for tests that run many nodes in one process).
	LowMemory bool `toml:"low_memory,omitempty" comment:"use small store caches (small machines)"`

	Gossip   GossipConfig   `toml:"gossip"`
	Replica  ReplicaConfig  `toml:"replica"`
	P2P      P2PConfig      `toml:"p2p"`
	HTTP     HTTPConfig     `toml:"http"` // the API's rate limit and proxies (ratelimit.go)
	Audit    AuditConfig    `toml:"audit"`
	Query    QueryConfig    `toml:"query"`   // the SQL engine's limits (sql.go)
	Harmony  HarmonyConfig  `toml:"harmony"` // standards, mappings, merges (standards.go)
	Catalog  CatalogConfig  `toml:"catalog"`
	Grants   GrantsConfig   `toml:"grants"`
	Store    StoreConfig    `toml:"store"`    // free-space floor, store check and GC (storage.go)
	Problems ProblemsConfig `toml:"problems"` // problem reports' retention (problems.go)

	// Trust lists the issuer (federation admin) keys this node trusts:
	// grants, membership credentials and revocations signed by them are
	// accepted. 'nii trust add' maintains it.
	Trust []TrustAnchor `toml:"trust,omitempty" comment:"issuer keys this node trusts (nii trust add); see docs/security.md"`

	// Logger receives the node's logs. Runtime only.
	Logger *slog.Logger `toml:"-"`
}

// GossipConfig configures membership and catalog gossip (memberlist).
type GossipConfig struct {
	Listen    string   `toml:"listen" comment:"gossip listen address, UDP and TCP (host:port)"`
	Advertise string   `toml:"advertise,omitempty" comment:"address other members reach this node on, if not the listen address"`
	Join      []string `toml:"join,omitempty" comment:"members to join at start (host:port); any one is enough"`
	// Keys are base64 gossip encryption keys (16, 24 or 32 bytes); the
	// first is used to encrypt, all are tried to decrypt (for rotation).
	Keys    []string `toml:"keys,omitempty" comment:"gossip encryption keys, base64; the first encrypts, all decrypt (see docs/registry.md for rotation)"`
	Profile string   `toml:"profile" comment:"timing profile: lan, wan or local"`
	// SyncWait is how long a publish waits for a node that had peers to
	// learn from them what it published before (history.go).
	SyncWait string `toml:"sync_wait,omitempty" comment:"how long a publish waits for the node to learn its own history from a member (default 30s; see docs/operations.md, backup and restore)"`
	// ReconnectInterval and ReconnectTimeout set the gossip's rejoin of
	// members seen to fail (registry/gossip, Config.ReconnectInterval).
	ReconnectInterval string `toml:"reconnect_interval,omitempty" comment:"how often to try rejoining one member seen to fail, so a healed partition heals (default 30s)"`
	ReconnectTimeout  string `toml:"reconnect_timeout,omitempty" comment:"how long after a failed member was last seen to stop trying (default 24h)"`

	// Timing overrides, for tests. Runtime only.
	Timing GossipTiming `toml:"-"`
}

// reconnect is the gossip's rejoin interval and timeout; zero keeps the
// gossip package's defaults (30 s, 24 h).
func (g GossipConfig) reconnect() (every, giveUp time.Duration, err error) {
	parse := func(key, v string, least time.Duration) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < least {
			return 0, fmt.Errorf("config: gossip.%s %q: want a duration of at least %v (e.g. 30s)", key, v, least)
		}
		return d, nil
	}
	if every, err = parse("reconnect_interval", g.ReconnectInterval, time.Second); err != nil {
		return 0, 0, err
	}
	if giveUp, err = parse("reconnect_timeout", g.ReconnectTimeout, time.Minute); err != nil {
		return 0, 0, err
	}
	return every, giveUp, nil
}

// GossipTiming overrides memberlist's timings; zero keeps the profile's.
type GossipTiming struct {
	GossipInterval, ProbeInterval, ProbeTimeout, PushPullInterval, TCPTimeout time.Duration
	SuspicionMult                                                             int
}

// P2PConfig configures the libp2p host that serves catalog pages, manifests
// and chunks.
type P2PConfig struct {
	Listen []string `toml:"listen" comment:"libp2p listen multiaddrs"`
	// InFlight bounds the chunk bytes one pull (or one relayed download)
	// holds in memory at once: asked for and not yet stored or sent.
	InFlight string `toml:"in_flight,omitempty" comment:"most chunk bytes one pull or relayed download holds in memory (e.g. 32MiB, the default; at least 1MiB)"`
	// Admit says who counts as a member for the libp2p protocols (catalog
	// pages, manifests, chunks): AdmitGossip, AdmitEnrolled, or AdmitAuto
	// (the default: enrolled if this node has trust anchors, else gossip).
	// members.go and docs/security.md.
	Admit string `toml:"admit,omitempty" comment:"who may use this node's libp2p protocols: auto (default: enrolled if trust anchors are set, else gossip), gossip (peers seen in gossip) or enrolled (peers whose membership credential verifies)"`
}

// inFlightBytes is P2P.InFlight in bytes (0: the default). Validate has
// checked it.
func (p P2PConfig) inFlightBytes() int64 {
	n, _ := p.parseInFlight()
	return n
}

func (p P2PConfig) parseInFlight() (int64, error) {
	if p.InFlight == "" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(p.InFlight)
	if err != nil || n < nii.MaxChunkSize || n > 1<<40 {
		return 0, fmt.Errorf("config: p2p.in_flight %q: want a size from 1MiB (e.g. 32MiB)", p.InFlight)
	}
	return int64(n), nil
}

// TrustAnchor is one trusted issuer key.
type TrustAnchor struct {
	Name string `toml:"name,omitempty"`
	// Key is the Ed25519 public key, base64url (a JWK's "x").
	Key string `toml:"key"`
	// KID is the key's ID (its JWK thumbprint); informational, checked.
	KID string `toml:"kid,omitempty"`
}

// AuditConfig configures the audit log of access decisions.
type AuditConfig struct {
	// Retention is how long decisions are kept ("2160h" = 90 days).
	Retention string `toml:"retention,omitempty" comment:"how long access decisions are kept (Go duration, e.g. 2160h = 90 days)"`
}

// CatalogConfig configures what the federated catalog keeps.
type CatalogConfig struct {
	// UnverifiedExpiry is how long the records of a departed origin whose
	// org claim nothing proves are kept, on a node with trust anchors
	// (an open federation keeps every record, as it has no verified ones).
	UnverifiedExpiry string `toml:"unverified_expiry,omitempty" comment:"how long a departed, unverified origin's adverts are kept on a node with trust anchors (Go duration, default 24h)"`
}

// GrantsConfig bounds the grants this node accepts.
type GrantsConfig struct {
	// MaxLifetime refuses grants valid (exp - nbf) for longer, whoever
	// signed them, with reason lifetime_too_long.
	MaxLifetime string `toml:"max_lifetime,omitempty" comment:"refuse grants valid for longer than this (Go duration; default 8760h = 1 year)"`
}

func (g GrantsConfig) maxLifetime() (time.Duration, error) {
	if g.MaxLifetime == "" {
		return auth.DefaultMaxGrantLifetime, nil
	}
	d, err := time.ParseDuration(g.MaxLifetime)
	if err != nil || d < time.Minute {
		return 0, fmt.Errorf("config: grants.max_lifetime %q: want a duration of at least 1m (e.g. 8760h)", g.MaxLifetime)
	}
	return d, nil
}

// DefaultUnverifiedExpiry is how long a departed, unverified origin's
// records are kept.
const DefaultUnverifiedExpiry = 24 * time.Hour

func (c CatalogConfig) unverifiedExpiry() (time.Duration, error) {
	if c.UnverifiedExpiry == "" {
		return DefaultUnverifiedExpiry, nil
	}
	d, err := time.ParseDuration(c.UnverifiedExpiry)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("config: catalog.unverified_expiry %q: want a duration of at least 1s (e.g. 24h)", c.UnverifiedExpiry)
	}
	return d, nil
}

// DefaultAuditRetention is how long the audit log keeps decisions.
const DefaultAuditRetention = 90 * 24 * time.Hour

func (a AuditConfig) retention() (time.Duration, error) {
	if a.Retention == "" {
		return DefaultAuditRetention, nil
	}
	d, err := time.ParseDuration(a.Retention)
	if err != nil || d < time.Hour {
		return 0, fmt.Errorf("config: audit.retention %q: want a duration of at least 1h (e.g. 2160h)", a.Retention)
	}
	return d, nil
}

// DefaultFederation is used when init is given none.
const DefaultFederation = "local"

// DefaultAPI is the local API's default listen address.
const DefaultAPI = "127.0.0.1:7947"

// Default listen addresses: gossip on memberlist's usual port, libp2p next
// to the API.
const (
	DefaultGossip = "0.0.0.0:7946"
)

// DefaultP2P are the default libp2p listen addresses (TCP and QUIC).
var DefaultP2P = []string{"/ip4/0.0.0.0/tcp/7948", "/ip4/0.0.0.0/udp/7948/quic-v1"}

// DefaultConfig returns the embedded defaults for a node in home.
func DefaultConfig(home string) Config {
	return Config{
		Home:       home,
		Federation: DefaultFederation,
		API:        DefaultAPI,
		Gossip:     GossipConfig{Listen: DefaultGossip, Profile: "lan"},
		P2P:        P2PConfig{Listen: append([]string(nil), DefaultP2P...)},
		HTTP:       DefaultHTTP(),
	}
}

// Validate checks the configuration and says what to fix.
func (c *Config) Validate() error {
	if c.Home == "" {
		return errors.New("config: no home directory")
	}
	if err := nii.CheckSlug("org", c.Org); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := nii.CheckSlug("federation", c.Federation); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if len(c.OrgName) > nii.MaxTitleLen {
		return fmt.Errorf("config: org_name longer than %d bytes", nii.MaxTitleLen)
	}
	if _, _, err := net.SplitHostPort(c.API); err != nil {
		return fmt.Errorf("config: api %q: %v (want host:port, e.g. %s)", c.API, err, DefaultAPI)
	}
	if _, _, err := net.SplitHostPort(c.Gossip.Listen); err != nil {
		return fmt.Errorf("config: gossip.listen %q: %v (want host:port, e.g. %s)", c.Gossip.Listen, err, DefaultGossip)
	}
	for _, j := range c.Gossip.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return fmt.Errorf("config: gossip.join %q: %v (want host:port)", j, err)
		}
	}
	if _, err := c.gossipKeys(); err != nil {
		return err
	}
	switch c.Gossip.Profile {
	case "", "lan", "wan", "local":
	default:
		return fmt.Errorf("config: gossip.profile %q: want lan, wan or local", c.Gossip.Profile)
	}
	if len(c.P2P.Listen) == 0 {
		return errors.New("config: p2p.listen is empty")
	}
	if _, err := c.P2P.parseInFlight(); err != nil {
		return err
	}
	switch c.P2P.Admit {
	case "", AdmitAuto, AdmitGossip, AdmitEnrolled:
	default:
		return fmt.Errorf("config: p2p.admit %q: want auto, gossip or enrolled", c.P2P.Admit)
	}
	if _, err := c.Gossip.syncWait(); err != nil {
		return err
	}
	if _, _, err := c.Gossip.reconnect(); err != nil {
		return err
	}
	if _, err := c.Audit.retention(); err != nil {
		return err
	}
	if _, err := c.Catalog.unverifiedExpiry(); err != nil {
		return err
	}
	if _, err := c.Grants.maxLifetime(); err != nil {
		return err
	}
	if _, err := c.anchors(); err != nil {
		return err
	}
	if _, err := c.Query.worker(); err != nil {
		return err
	}
	if err := c.Harmony.validate(); err != nil {
		return err
	}
	if err := c.Store.validate(); err != nil {
		return err
	}
	if _, err := c.Problems.keepClosed(); err != nil {
		return err
	}
	return c.HTTP.Validate()
}

// gossipKeys decodes the gossip keyring.
func (c *Config) gossipKeys() ([][]byte, error) {
	var out [][]byte
	for i, k := range c.Gossip.Keys {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
		if err != nil || (len(b) != 16 && len(b) != 24 && len(b) != 32) {
			return nil, fmt.Errorf("config: gossip.keys[%d]: want base64 of 16, 24 or 32 random bytes (e.g. from 'nii init --gossip-key new')", i)
		}
		out = append(out, b)
	}
	return out, nil
}

// ErrNoHome is returned when a home has not been initialised. It is
// node/api's (Dial returns it too), of kind nii.ErrNotFound.
var ErrNoHome = api.ErrNoHome

// LoadConfig reads home/config.toml over the defaults.
func LoadConfig(home string) (Config, error) {
	cfg := DefaultConfig(home)
	b, err := os.ReadFile(filepath.Join(home, ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, fmt.Errorf("%w at %s: run 'nii init --org ORG' first, or pass --home", ErrNoHome, home)
	}
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	dec := toml.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", filepath.Join(home, ConfigFile), err)
	}
	cfg.Home = home
	return cfg, cfg.Validate()
}

// ErrHomeExists is returned by Init when the home already holds a node. It
// is of kind nii.ErrExists.
var ErrHomeExists = nii.Errorf(nii.ErrExists, "home already initialised")

// Init creates a node's home: the directory (mode 0700), config.toml and a
// new node key (mode 0600). It refuses to touch a home that already has a
// config or a key. It returns the new node's ID.
func Init(cfg Config) (nii.NodeID, error) {
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	for _, f := range []string{ConfigFile, KeyFile} {
		if _, err := os.Stat(filepath.Join(cfg.Home, f)); err == nil {
			return "", fmt.Errorf("%w: %s exists; nii init never overwrites a node (use another --home)", ErrHomeExists, filepath.Join(cfg.Home, f))
		}
	}
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return "", fmt.Errorf("create home: %w", err)
	}
	if err := os.Chmod(cfg.Home, 0o700); err != nil {
		return "", fmt.Errorf("create home: %w", err)
	}
	id, err := generateKey(filepath.Join(cfg.Home, KeyFile))
	if err != nil {
		return "", err
	}
	b, err := toml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	header := "# nii node configuration. See docs/operations.md.\n"
	if err := writeFileAtomic(filepath.Join(cfg.Home, ConfigFile), append([]byte(header), b...), 0o600); err != nil {
		return "", fmt.Errorf("write config: %w", err)
	}
	return id, nil
}

// NewGossipKey returns a new random gossip encryption key (32 bytes),
// base64 as gossip.keys holds it: what 'nii init --gossip-key new' makes
// for the first node of a keyed federation.
func NewGossipKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("gossip key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}
