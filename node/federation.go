package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/gossip"
	"github.com/nii-uk/nii/registry/opendata"
)

// startFederation starts the parts that talk to other nodes: the libp2p
// host (serving catalog pages), the catalog and member table, and gossip.
// It wires registry and exchange together through small adapters, so that
// neither imports the other.
func (n *Node) startFederation() error {
	var err error
	if n.peers, err = registry.OpenPeers(n.db); err != nil {
		return fmt.Errorf("open peers: %w", err)
	}
	if err := n.startAuth(); err != nil {
		return err
	}
	if n.catalog, err = registry.OpenCatalog(n.db, n.id, n.key, n.verifyCredential); err != nil {
		return err
	}
	n.catalog.SetCredential(n.credential)
	n.catalog.SetAliases(opendata.PackageUUIDOf) // CKAN's package_show by id
	n.catalog.SetMembers(catalogMembers{n}, registry.CatalogLimits{})
	n.watchHistory()
	n.catalog.SetRequireVerified(n.anchors.Len() > 0)
	n.host, err = exchange.NewHost(exchange.HostConfig{Key: n.p2pKey, Listen: n.cfg.P2P.Listen, Logger: n.log})
	if err != nil {
		return fmt.Errorf("p2p: %w", err)
	}
	n.host.SetAdmitter(n.admit)
	n.host.SetCredential(n.credential)
	n.host.ServeCatalog(catalogSource{n.catalog})
	if !n.cfg.RegistryOnly {
		n.host.ServeContent(n.store, n.authorize)
		n.host.ServeProblems(n)
	}

	keys, err := n.cfg.gossipKeys()
	if err != nil {
		return err
	}
	host, portStr, _ := net.SplitHostPort(n.cfg.Gossip.Listen)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("gossip.listen %q: bad port", n.cfg.Gossip.Listen)
	}
	every, giveUp, err := n.cfg.Gossip.reconnect()
	if err != nil {
		return err
	}
	gc := gossip.Config{
		Self:              n.id,
		Org:               n.cfg.Org,
		Federation:        n.cfg.Federation,
		Registry:          n.cfg.RegistryOnly,
		BindAddr:          host,
		BindPort:          port,
		Keys:              keys,
		Profile:           n.cfg.Gossip.Profile,
		GossipInterval:    n.cfg.Gossip.Timing.GossipInterval,
		ProbeInterval:     n.cfg.Gossip.Timing.ProbeInterval,
		ProbeTimeout:      n.cfg.Gossip.Timing.ProbeTimeout,
		PushPullInterval:  n.cfg.Gossip.Timing.PushPullInterval,
		SuspicionMult:     n.cfg.Gossip.Timing.SuspicionMult,
		TCPTimeout:        n.cfg.Gossip.Timing.TCPTimeout,
		ReconnectInterval: every,
		ReconnectTimeout:  giveUp,
		P2PAddrs:          n.host.Addrs,
		OnPeer:            n.host.AddPeerAddrs,
		Revocations:       n.revocations,
		OnRevocation:      n.revoked,
		Logger:            n.log,
	}
	if a := n.cfg.Gossip.Advertise; a != "" {
		ah, ap, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("gossip.advertise %q: %w", a, err)
		}
		gc.AdvertiseAddr = ah
		if gc.BindPort, err = strconv.Atoi(ap); err != nil {
			return fmt.Errorf("gossip.advertise %q: bad port", a)
		}
	}
	if n.gossip, err = gossip.New(gc, n.catalog, n.peers, catalogFetcher{n.host}); err != nil {
		return err
	}
	if n.disk != nil && n.disk.readOnly {
		n.log.Warn("read-only: held versions are not re-advertised until the node restarts with space")
	} else if err := n.advertiseHeld(); err != nil {
		return err
	}
	if len(n.cfg.Gossip.Join) > 0 {
		n.wg.Add(1)
		go n.joinLoop(n.gossip, n.cfg.Gossip.Join)
	}
	retention, _ := n.cfg.Audit.retention() // validated
	n.wg.Add(2)
	go n.authLoop(retention)
	go n.memberLoop()
	expiry, _ := n.cfg.Catalog.unverifiedExpiry() // validated
	n.wg.Add(2)
	go n.expiryLoop(expiry)
	go func() {
		defer n.wg.Done()
		n.catalog.CollectWhileGrowing(n.closeCh)
	}()
	if !n.cfg.RegistryOnly {
		n.catalog.OnChange(func(*nii.Advert) { n.kickFollow(); n.kickWatch() })
		n.wg.Add(2)
		go n.followLoop()
		go n.watchLoop()
	}
	return nil
}

// joinLoop joins the configured members, retrying with backoff until one
// answers or the node closes: a node started before its peers still finds
// them.
func (n *Node) joinLoop(g *gossip.Gossip, addrs []string) {
	defer n.wg.Done()
	wait := 500 * time.Millisecond
	for {
		k, err := g.Join(addrs)
		if err == nil && k > 0 {
			n.ops.joined.Store(true)
			n.log.Info("joined federation", slog.Int(nii.LogCount, k), slog.Int(nii.LogMembers, g.NumMembers()))
			return
		}
		n.log.Warn("cannot reach any member to join yet; retrying", slog.Any(nii.LogAddr, addrs), slog.Duration(nii.LogRetryIn, wait), slog.Any(nii.LogErr, err))
		select {
		case <-n.closeCh:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// Join contacts more members (host:port) now.
func (n *Node) Join(addrs ...string) (int, error) { return n.gossip.Join(addrs) }

// GossipAddr returns the address other members join this node on.
func (n *Node) GossipAddr() string { return n.gossip.Addr() }

// P2PAddrs returns the node's libp2p addresses.
func (n *Node) P2PAddrs() []string { return n.host.Addrs() }

// Catalog returns the node's view of the federated catalog.
func (n *Node) Catalog() *registry.Catalog { return n.catalog }

// Peers returns the member table.
func (n *Node) Peers() *registry.Peers { return n.peers }

// StopGossip halts this node's gossip abruptly, as a crash or a network
// partition would, leaving the rest of the node running. Tests use it.
func (n *Node) StopGossip() error { return n.gossip.Stop() }

// advertiseHeld makes sure the catalog advertises the latest version of
// every dataset this node published, e.g. after a crash between a publish's
// commit and its advert.
func (n *Node) advertiseHeld() error {
	if n.cfg.RegistryOnly {
		return nil
	}
	recs, err := n.store.Versions(nil)
	if err != nil {
		return err
	}
	latest := map[nii.DatasetID]*exchange.VersionRecord{}
	for _, r := range recs {
		if r.Publisher == n.id {
			latest[r.Ref.Dataset] = r
		}
	}
	for d, r := range latest {
		if own, ok := n.catalog.Own(d); ok && (own.Withdrawn || own.Version >= r.Ref.Version) {
			continue
		}
		if err := n.advertise(r); err != nil {
			return err
		}
	}
	return nil
}

// announce is the one way this node tells the federation something about
// its datasets (an advert, a replica advert, a tombstone, a re-signed
// record): the catalog signs the record as this node's next (origin, seq,
// credential), stores it and indexes it, and gossip spreads it. It returns
// the record as signed.
func (n *Node) announce(a nii.Advert) (*nii.Advert, error) {
	sa, signed, err := n.catalog.Sign(a)
	if err != nil {
		return nil, err
	}
	if n.gossip != nil { // nil once the node has closed
		n.gossip.Publish(sa, signed)
	}
	return signed, nil
}

// advertise announces a version this node published.
func (n *Node) advertise(r *exchange.VersionRecord) error {
	_, err := n.announce(nii.Advert{
		Dataset:  r.Ref.Dataset,
		Version:  r.Ref.Version,
		Manifest: r.Manifest,
		Meta:     r.Meta,
	})
	if err != nil {
		return fmt.Errorf("advertise %s: %w", r.Ref, err)
	}
	return nil
}

// ErrNotPublisher is returned when a node is asked to withdraw a dataset
// it does not publish. It is of kind nii.ErrRefused.
var ErrNotPublisher = nii.Errorf(nii.ErrRefused, "not the publisher")

// Withdraw tombstones one of this node's datasets: a signed record that
// tells the federation to stop listing it. The data stays in the local
// store; publishing again lists it again.
func (n *Node) Withdraw(ctx context.Context, d nii.DatasetID) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if d.Org != n.cfg.Org {
		return fmt.Errorf("%w: %s belongs to org %s; this node publishes for %s", ErrNotPublisher, d, d.Org, n.cfg.Org)
	}
	own, ok := n.catalog.Own(d)
	if !ok {
		return fmt.Errorf("dataset %s: %w", d, nii.ErrNotFound)
	}
	if own.Withdrawn {
		return nil
	}
	if _, err := n.announce(nii.Advert{Dataset: d, Withdrawn: true, Meta: nii.Metadata{Publisher: d.Org}}); err != nil {
		return err
	}
	n.log.Info("withdrawn", slog.String(nii.LogDataset, d.String()))
	return nil
}

// catalogSource serves catalog pages from the registry over libp2p.
type catalogSource struct{ c *registry.Catalog }

func (s catalogSource) CatalogPage(origin nii.NodeID, after uint64, limit int) ([]*nii.SignedAdvert, bool, uint64, error) {
	return s.c.Page(origin, after, limit)
}

// catalogFetcher lets gossip fetch catalog pages through the libp2p host.
type catalogFetcher struct{ h *exchange.Host }

func (f catalogFetcher) FetchCatalogPage(ctx context.Context, from, origin nii.NodeID, after uint64, limit int) ([]*nii.SignedAdvert, bool, uint64, error) {
	return f.h.FetchCatalogPage(ctx, from, origin, after, limit)
}
