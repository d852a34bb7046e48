package auth

import (
	"crypto/ed25519"
	"sort"
	"sync"
)

// Anchor is an issuer key a node trusts.
type Anchor struct {
	KID  string            `json:"kid"`
	Name string            `json:"name,omitempty"`
	Key  ed25519.PublicKey `json:"-"`
}

// Anchors is the set of issuer keys a node trusts, safe for concurrent use.
type Anchors struct {
	mu sync.RWMutex
	m  map[string]Anchor
	// gen counts changes, so caches of verified tokens know to drop what a
	// removed anchor signed.
	gen uint64
}

// NewAnchors returns a set holding as.
func NewAnchors(as ...Anchor) *Anchors {
	s := &Anchors{m: make(map[string]Anchor)}
	for _, a := range as {
		s.Add(a.Key, a.Name)
	}
	return s
}

// Add trusts pub and returns its anchor. Adding a key again renames it.
func (s *Anchors) Add(pub ed25519.PublicKey, name string) Anchor {
	a := Anchor{KID: KeyID(pub), Name: name, Key: append(ed25519.PublicKey(nil), pub...)}
	s.mu.Lock()
	s.m[a.KID] = a
	s.gen++
	s.mu.Unlock()
	return a
}

// Remove stops trusting the key with ID kid; it reports whether it was
// trusted.
func (s *Anchors) Remove(kid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[kid]
	delete(s.m, kid)
	s.gen++
	return ok
}

// Get returns the anchor with ID kid.
func (s *Anchors) Get(kid string) (Anchor, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.m[kid]
	return a, ok
}

// Len returns how many keys are trusted.
func (s *Anchors) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

func (s *Anchors) generation() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

// List returns the anchors ordered by name then key ID.
func (s *Anchors) List() []Anchor {
	s.mu.RLock()
	out := make([]Anchor, 0, len(s.m))
	for _, a := range s.m {
		out = append(out, a)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].KID < out[j].KID
	})
	return out
}

// JWKS returns the trusted keys as a JSON Web Key Set.
func (s *Anchors) JWKS() JWKS {
	set := JWKS{Keys: []JWK{}}
	for _, a := range s.List() {
		set.Keys = append(set.Keys, PublicJWK(a.Key, a.Name))
	}
	return set
}
