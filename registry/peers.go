package registry

import (
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
)

// Peer states, as shown by 'nii peers'.
const (
	PeerAlive = "alive"
	PeerDead  = "dead" // failed: its datasets stay listed as offline
	PeerLeft  = "left" // left gracefully
)

// Peer is one member of the federation as this node knows it.
type Peer struct {
	ID       nii.NodeID `json:"id" cbor:"1,keyasint"`
	Org      string     `json:"org" cbor:"2,keyasint"`
	Addrs    []string   `json:"p2p_addrs,omitempty" cbor:"3,keyasint,omitempty"`
	Gossip   string     `json:"gossip_addr" cbor:"4,keyasint"`
	Registry bool       `json:"registry_only,omitempty" cbor:"5,keyasint,omitempty"`
	State    string     `json:"state" cbor:"6,keyasint"`
	Seq      uint64     `json:"catalog_seq" cbor:"7,keyasint"`
	LastSeen time.Time  `json:"last_seen" cbor:"8,keyasint"`
	// Verified is set when the peer's org claim is proven by the membership
	// credential its catalog records carry (set by package node).
	Verified bool `json:"verified" cbor:"-"`
}

// Online reports whether the peer is currently reachable by gossip.
func (p Peer) Online() bool { return p.State == PeerAlive }

// Peers is the member table, kept in badger (prefix "rp/") so that a
// restarted node still knows who was there and when it was last seen.
type Peers struct {
	db *badger.DB
	mu sync.RWMutex
	m  map[nii.NodeID]*Peer
	// leaving holds members that said goodbye; their NotifyLeave (which
	// may come before or after the goodbye) means "left", not "dead".
	leaving map[nii.NodeID]time.Time
}

var prefixPeer = []byte("rp/")

// OpenPeers loads the member table. Every member loaded starts as dead
// until gossip says otherwise: nothing is known to be up at start.
func OpenPeers(db *badger.DB) (*Peers, error) {
	p := &Peers{db: db, m: make(map[nii.NodeID]*Peer), leaving: make(map[nii.NodeID]time.Time)}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixPeer, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var peer Peer
			if err := it.Item().Value(func(b []byte) error { return nii.Unmarshal(b, &peer) }); err != nil {
				continue // a bad row is skipped, not fatal
			}
			if peer.State == PeerAlive {
				peer.State = PeerDead
			}
			p.m[peer.ID] = &peer
		}
		return nil
	})
	return p, err
}

// Update records what gossip says of a member.
func (p *Peers) Update(peer Peer) {
	now := time.Now().UTC()
	p.mu.Lock()
	old := p.m[peer.ID]
	switch peer.State {
	case PeerAlive:
		delete(p.leaving, peer.ID) // back again
	case PeerDead:
		if at, ok := p.leaving[peer.ID]; ok && now.Sub(at) < leaveWindow {
			peer.State = PeerLeft
		}
	}
	if peer.State == PeerAlive || old == nil {
		peer.LastSeen = now
	} else {
		peer.LastSeen = old.LastSeen
		if old.State == PeerAlive {
			peer.LastSeen = now
		}
	}
	if old != nil && len(peer.Addrs) == 0 {
		peer.Addrs = old.Addrs
	}
	cp := peer
	p.m[peer.ID] = &cp
	p.mu.Unlock()
	p.save(cp)
}

func (p *Peers) save(peer Peer) {
	if b, err := nii.Marshal(peer); err == nil {
		p.db.Update(func(txn *badger.Txn) error {
			return txn.Set(append(append([]byte{}, prefixPeer...), peer.ID...), b)
		})
	}
}

// leaveWindow is how long a goodbye explains a member's disappearance.
const leaveWindow = time.Minute

// Leaving records a member's goodbye. If it is already gone, it is shown
// as left; if it is still listed alive, its coming NotifyLeave will be.
func (p *Peers) Leaving(id nii.NodeID) {
	now := time.Now().UTC()
	p.mu.Lock()
	for k, at := range p.leaving { // keep the map small
		if now.Sub(at) >= leaveWindow {
			delete(p.leaving, k)
		}
	}
	p.leaving[id] = now
	old := p.m[id]
	if old == nil || old.State != PeerDead {
		p.mu.Unlock()
		return
	}
	cp := *old
	cp.State = PeerLeft
	p.m[id] = &cp
	p.mu.Unlock()
	p.save(cp)
}

// Get returns one member.
func (p *Peers) Get(id nii.NodeID) (Peer, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	peer, ok := p.m[id]
	if !ok {
		return Peer{}, false
	}
	out := *peer
	if out.State == PeerAlive {
		out.LastSeen = time.Now().UTC()
	}
	return out, true
}

// List returns every member known, ordered by org then ID.
func (p *Peers) List() []Peer {
	p.mu.RLock()
	ids := make([]nii.NodeID, 0, len(p.m))
	for id := range p.m {
		ids = append(ids, id)
	}
	p.mu.RUnlock()
	out := make([]Peer, 0, len(ids))
	for _, id := range ids {
		if peer, ok := p.Get(id); ok {
			out = append(out, peer)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Org != out[j].Org {
			return out[i].Org < out[j].Org
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Forget removes a member from the table (an operator's clean-up).
func (p *Peers) Forget(id nii.NodeID) error {
	p.mu.Lock()
	delete(p.m, id)
	p.mu.Unlock()
	err := p.db.Update(func(txn *badger.Txn) error {
		return txn.Delete(append(append([]byte{}, prefixPeer...), id...))
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	return err
}

// Member table bounds: a member departed (dead or left) and unseen for
// PeerForgetAfter is forgotten, and past MaxPeers members the longest
// departed go first. A forgotten member that comes back is learnt again
// from gossip; its catalog records stay (the catalog's own limits govern
// them).
const (
	PeerForgetAfter = 7 * 24 * time.Hour
	MaxPeers        = 4096
)

// Prune forgets members departed and last seen before cutoff and then,
// while more than max are listed, the departed ones seen longest ago (live
// members are never pruned). It returns how many it forgot.
func (p *Peers) Prune(cutoff time.Time, max int) int {
	p.mu.Lock()
	var gone []nii.NodeID
	var departed []*Peer
	for id, peer := range p.m {
		if peer.State == PeerAlive {
			continue
		}
		if peer.LastSeen.Before(cutoff) {
			gone = append(gone, id)
			continue
		}
		departed = append(departed, peer)
	}
	for _, id := range gone {
		delete(p.m, id)
	}
	if over := len(p.m) - max; over > 0 {
		sort.Slice(departed, func(i, j int) bool { return departed[i].LastSeen.Before(departed[j].LastSeen) })
		for _, peer := range departed[:min(over, len(departed))] {
			gone = append(gone, peer.ID)
			delete(p.m, peer.ID)
		}
	}
	p.mu.Unlock()
	if len(gone) > 0 {
		wb := p.db.NewWriteBatch()
		for _, id := range gone {
			wb.Delete(append(append([]byte{}, prefixPeer...), id...))
		}
		wb.Flush()
	}
	return len(gone)
}

// Len returns how many members the table lists.
func (p *Peers) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.m)
}
