package node

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/registry"
	"github.com/prometheus/client_golang/prometheus"
)

// Who is a member, for the libp2p protocols. Every libp2p connection is
// authenticated, so a node always knows which node asks; the question is
// whether that node belongs to the federation. Two answers:
//
//   - in gossip: a peer in this node's member table — one that gossip has
//     shown it (alive, or departed and not yet pruned). In a federation with
//     a gossip key, that is a node holding the key.
//   - enrolled: a peer whose membership credential — presented with the
//     request, or carried in its newest catalog record — verifies against
//     this node's trust anchors for that very node ID.
//
// Catalog pages go to members in gossip (or enrolled): catalog metadata is
// public inside the federation, and a node holding the gossip key receives
// every record by broadcast anyway, so refusing it pages would only leave
// its view patchy. Content (manifests and chunks, open data included) goes
// to members by [p2p] admit: "gossip", "enrolled", or "auto" (the default:
// enrolled where this node has trust anchors, else in gossip). Where a
// federation has anchors, a credential is what makes a member: the gossip
// key is shared by everyone and can leak. Strangers are refused before
// their request is looked at (they learn not even whether this node holds
// a version), with reason not_member; refusals of content are audited.
// Open data stays reachable to anyone over the HTTP read API (the
// download relay, CKAN and DCAT), where the operator exposes it.

// Values of [p2p] admit.
const (
	AdmitAuto     = "auto"
	AdmitGossip   = "gossip"
	AdmitEnrolled = "enrolled"
)

// admitMode is the admission rule in force now: auto follows the anchors,
// which 'nii trust' can change while the node runs.
func (n *Node) admitMode() string {
	switch n.cfg.P2P.Admit {
	case AdmitGossip, AdmitEnrolled:
		return n.cfg.P2P.Admit
	}
	if len(n.anchors.List()) > 0 {
		return AdmitEnrolled
	}
	return AdmitGossip
}

// admit is the host's Admitter: it decides whether the remote node is a
// member for what it asks.
func (n *Node) admit(a exchange.Admission) error {
	var err error
	switch {
	case a.Protocol == "catalog" || n.admitMode() == AdmitGossip:
		if _, ok := n.peers.Get(a.Remote); !ok && n.enrolled(a.Remote, a.Credential) != nil {
			err = &auth.Denial{Reason: auth.ReasonNotMember, Detail: fmt.Sprintf(
				"node %s is not a member of federation %q: this node has not seen it in gossip (join the federation first)", a.Remote.Short(), n.cfg.Federation)}
		}
	default:
		err = n.enrolled(a.Remote, a.Credential)
	}
	if err != nil && n.strangers.first(a.Remote, a.What) {
		n.log.Warn("refused a node that is not a member", slog.String(nii.LogPeer, a.Remote.Short()), slog.String(nii.LogProtocol, a.Protocol),
			slog.String(nii.LogReason, auth.ReasonNotMember), slog.String(nii.LogErr, err.Error()))
		if a.Protocol != "catalog" {
			rec := auth.Record{Node: a.Remote, Dataset: a.What, Action: nii.ActionRead, Result: auth.Refused,
				Reason: auth.ReasonNotMember, Detail: err.Error()}
			if _, aerr := n.audit.Append(rec); aerr != nil {
				n.log.Error("audit log write failed", slog.String(nii.LogErr, aerr.Error()))
			}
		}
	}
	return err
}

// enrolled checks that remote is an enrolled member: the credential it
// presented, or the one its newest catalog record carries, verifies here.
func (n *Node) enrolled(remote nii.NodeID, credential string) error {
	cands := []string{credential}
	if held := n.catalog.Credential(remote); held != "" && held != credential {
		cands = append(cands, held)
	}
	var last error
	for _, c := range cands {
		if c == "" {
			continue
		}
		_, err := n.verifier.VerifyCredential(c, remote)
		if err == nil {
			return nil
		}
		last = err
	}
	detail := fmt.Sprintf("node %s presents no membership credential; this node serves content to enrolled members only (nii enrol, then nii credential install)", remote.Short())
	if last != nil {
		detail = fmt.Sprintf("node %s's membership credential does not verify here (%v); this node serves content to enrolled members only", remote.Short(), last)
	}
	return &auth.Denial{Reason: auth.ReasonNotMember, Detail: detail}
}

// strangerLog remembers which refusals were logged (and audited), so that
// a stranger knocking in a loop fills neither the log nor the audit log:
// the first refusal of each (node, thing asked for) in strangerLogEvery.
type strangerLog struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

const strangerLogEvery = 10 * time.Minute

func (s *strangerLog) first(remote nii.NodeID, what string) bool {
	now := time.Now()
	key := string(remote) + " " + what
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil || len(s.seen) >= 4096 {
		s.seen = make(map[string]time.Time) // bounded: at worst, a few extra records
	}
	if at, ok := s.seen[key]; ok && now.Sub(at) < strangerLogEvery {
		return false
	}
	s.seen[key] = now
	return true
}

// memberCollectors are the metrics of admission.
func (n *Node) memberCollectors() []prometheus.Collector {
	h := n.host
	if h == nil {
		return nil
	}
	cat := n.catalog
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "p2p", Name: "refused_not_member_total",
			Help: "libp2p requests (catalog pages, manifests, chunks) refused because the requesting node is not a member.",
		}, func() float64 { return float64(h.Strangers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: "catalog", Name: "parked_records",
			Help: "Catalog records of origins not known as members, held in memory (not stored, not listed) until gossip shows the origin.",
		}, func() float64 { return float64(cat.Parked()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "catalog", Name: "origins_evicted_total",
			Help: "Unverified, departed origins whose records were deleted to keep the catalog within its origin limit.",
		}, func() float64 { return float64(cat.Evicted()) }),
	}
}

// catalogMembers tells the catalog who is, or was, a member: a node in the
// member table, or one whose credential verifies here (registry/origins.go).
type catalogMembers struct{ n *Node }

func (m catalogMembers) IsMember(origin nii.NodeID, credential string) bool {
	if _, ok := m.n.peers.Get(origin); ok {
		return true
	}
	if credential == "" {
		return false
	}
	_, err := m.n.verifier.VerifyCredential(credential, origin)
	return err == nil
}

func (m catalogMembers) Departed(origin nii.NodeID) bool {
	p, ok := m.n.peers.Get(origin)
	return !ok || !p.Online()
}

// memberLoop prunes the member table every minute (members departed for
// registry.PeerForgetAfter, and the longest departed past
// registry.MaxPeers), and signs this node's records again when the
// federation handed back records of an earlier life of it (history.go).
func (n *Node) memberLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-n.closeCh:
			return
		case <-n.ownKick:
			if err := n.readvertise(); err != nil {
				n.log.Error("sign this node's records again", slog.String(nii.LogErr, err.Error()))
			}
		case <-tick.C:
			if k := n.peers.Prune(time.Now().Add(-registry.PeerForgetAfter), registry.MaxPeers); k > 0 {
				n.log.Info("departed members forgotten", slog.Int(nii.LogCount, k))
			}
		}
	}
}
