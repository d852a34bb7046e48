package gossip

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Eager push: a node that signs a record, or receives one it did not have,
// sends it straight away to fanout random members (memberlist's
// GossipNodes: 3 on LAN) in one packet each, as well as queueing it for
// memberlist's gossip rounds. Each hop then costs a packet's flight and the
// receiver's check of the record, not a wait for the sender's next gossip
// round (uniform over GossipInterval, 200 ms on LAN: 100 ms a hop on
// average, and an epidemic over N members takes about log3(N) hops).
//
// Pushing once on receipt alone ("infect and die") leaves some members
// out — for a fanout of 3 about e^-3(1-s) = s, 6 %, of a large federation —
// and those get the record from the queued retransmits of every member
// that has it, within a gossip round or two; the queue also stays what
// carries records when the push budget is spent.
//
// The budget bounds what pushing adds to a member's traffic whatever the
// publish rate: pushBurst packets at once, refilled at pushRate a second.
// A quiet federation publishes far below it (one record a second keeps
// every push); a burst of hundreds of records pushes the first
// pushBurst/fanout of them and queues the rest, as before.
const (
	pushRate  = 20 // packets a second, sustained
	pushBurst = 60 // packets at once
)

// pusher holds the members a record can be pushed to and the budget.
type pusher struct {
	fanout int

	mu     sync.Mutex
	addrs  []memberlist.Address // live members other than this node
	index  map[string]int       // name -> position in addrs
	tokens float64
	last   time.Time
	sent   int64 // packets pushed (tests read it)
	denied int64 // records not pushed for want of budget
}

func newPusher(fanout int, now time.Time) *pusher {
	return &pusher{fanout: max(1, fanout), index: map[string]int{}, tokens: pushBurst, last: now}
}

// add records a live member's gossip address (memberlist's event delegate
// calls in with the node's lock held, so its fields are read safely here,
// never later).
func (p *pusher) add(name, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := memberlist.Address{Addr: addr, Name: name}
	if i, ok := p.index[name]; ok {
		p.addrs[i] = a
		return
	}
	p.index[name] = len(p.addrs)
	p.addrs = append(p.addrs, a)
}

func (p *pusher) remove(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, ok := p.index[name]
	if !ok {
		return
	}
	last := len(p.addrs) - 1
	p.addrs[i] = p.addrs[last]
	p.index[p.addrs[i].Name] = i
	p.addrs = p.addrs[:last]
	delete(p.index, name)
}

// pick returns up to fanout random members to push to, spending one token
// each, or none if the budget cannot cover them all.
func (p *pusher) pick(now time.Time) []memberlist.Address {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens = min(pushBurst, p.tokens+now.Sub(p.last).Seconds()*pushRate)
	p.last = now
	k := min(p.fanout, len(p.addrs))
	if k == 0 {
		return nil
	}
	if p.tokens < float64(k) {
		p.denied++
		return nil
	}
	p.tokens -= float64(k)
	p.sent += int64(k)
	// A partial Fisher-Yates shuffle: the first k of addrs, chosen at
	// random, are copied out (the order left behind does not matter).
	out := make([]memberlist.Address, k)
	for i := range k {
		j := i + rand.IntN(len(p.addrs)-i)
		p.addrs[i], p.addrs[j] = p.addrs[j], p.addrs[i]
		p.index[p.addrs[i].Name], p.index[p.addrs[j].Name] = i, j
		out[i] = p.addrs[i]
	}
	return out
}

// send pushes msg to the members pick chooses. Sends are best effort (a
// UDP packet each): what is lost the queued retransmits make up.
func (p *pusher) send(ml *memberlist.Memberlist, msg []byte) {
	for _, a := range p.pick(time.Now()) {
		_ = ml.SendToAddress(a, msg)
	}
}

// stats returns the packets pushed and the records the budget held back.
func (p *pusher) stats() (sent, denied int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent, p.denied
}
