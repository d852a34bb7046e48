package node

import (
	"log/slog"
	"strings"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
)

// expiryLoop drops, on a node with trust anchors, the catalog records of
// origins whose org claim nothing proves once they have been gone for
// expiry: an impostor that left is then listed nowhere (registry/expiry.go).
// An open federation (no anchors) keeps every record: all of its claims
// are unverified, and a departed member's datasets stay listed as offline
// for its replicas to serve.
func (n *Node) expiryLoop(expiry time.Duration) {
	defer n.wg.Done()
	tick := time.NewTicker(min(max(expiry/4, 100*time.Millisecond), time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-n.closeCh:
			return
		case <-tick.C:
			n.expireDeparted(time.Now(), expiry)
		}
	}
}

// expireDeparted expires every unverified origin gone for at least expiry
// at now: its member is not alive and was last seen before now-expiry (or,
// never a member, its newest record arrived before then).
func (n *Node) expireDeparted(now time.Time, expiry time.Duration) {
	if !n.catalog.RequireVerified() {
		return
	}
	for _, o := range n.catalog.OriginList() {
		if o.ID == n.id || o.Verified {
			continue
		}
		seen := o.Received
		if p, ok := n.peers.Get(o.ID); ok {
			if p.Online() {
				continue
			}
			if p.LastSeen.After(seen) {
				seen = p.LastSeen
			}
		}
		if now.Sub(seen) < expiry {
			continue
		}
		k, err := n.catalog.Expire(o.ID)
		if err != nil {
			n.log.Error("expire departed origin", slog.String(nii.LogNodeID, string(o.ID)), slog.String(nii.LogErr, err.Error()))
			continue
		}
		n.log.Info("records of a departed, unverified origin expired", slog.String(nii.LogNodeID, string(o.ID)),
			slog.Int(nii.LogCount, k), slog.Duration("gone_for", now.Sub(seen)))
	}
}

// security says how the node trusts the federation, with a warning for
// each thing left open: what 'nii status' and the start-up log say.
func (n *Node) security() api.Security {
	s := api.Security{Mode: api.ModeOpen, Anchors: n.anchors.Len(), GossipEncrypted: len(n.cfg.Gossip.Keys) > 0}
	if n.catalog.RequireVerified() {
		s.Mode = api.ModeVerified
	} else {
		s.Warnings = append(s.Warnings, "no trust anchors: every org claim is unverified and any member may advertise datasets under any org ('nii trust add' an issuer key to list only verified publishers)")
	}
	if !s.GossipEncrypted {
		s.Warnings = append(s.Warnings, "gossip is unencrypted: anyone who can reach the gossip port can join the federation and read its catalog (set a federation key: 'nii init --gossip-key new', or gossip.keys in config.toml; docs/security.md)")
	}
	for _, addr := range append([]string{n.cfg.Gossip.Listen}, n.cfg.P2P.Listen...) {
		if strings.Contains(addr, "0.0.0.0") || strings.HasPrefix(addr, ":") || strings.Contains(addr, "/ip6/::/") || strings.Contains(addr, "[::]") {
			s.Warnings = append(s.Warnings, "listening on every interface ("+addr+"): restrict gossip.listen and p2p.listen if the node should not be reachable from other networks")
			break
		}
	}
	return s
}
