package auth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Revocations is the set of revocations a node holds, kept in badger
// (prefix "ar/", by revoked token ID) so it survives restarts. A
// revocation is kept until it expires; issuers give it a lifetime at least
// as long as what it revokes could still be used.
type Revocations struct {
	db *badger.DB
	v  *Verifier

	mu sync.RWMutex
	m  map[string]revocation // revoked jti → revocation
	// held names the tokens already kept, by hash, so that anti-entropy's
	// copies of them cost a map lookup rather than a signature check.
	held map[[32]byte]struct{}
}

type revocation struct {
	token string
	exp   time.Time
}

var prefixRevocation = []byte("ar/")

// OpenRevocations loads the revocations held in db. Each is verified again
// against v's anchors as it is loaded: one whose issuer is no longer
// trusted is kept on disk but does not apply.
func OpenRevocations(db *badger.DB, v *Verifier) (*Revocations, error) {
	r := &Revocations{db: db, v: v, m: make(map[string]revocation), held: make(map[[32]byte]struct{})}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixRevocation, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			it.Item().Value(func(b []byte) error {
				r.load(string(b))
				return nil
			})
		}
		return nil
	})
	return r, err
}

func (r *Revocations) load(token string) (string, bool) {
	c, err := r.v.VerifyRevocation(token)
	if err != nil {
		return "", false
	}
	return c.Revokes, r.keep(token, c)
}

// keep holds a verified revocation in memory. For one token ID the
// revocation that lasts longest wins: a later, longer revocation replaces a
// shorter one (an admin correcting a too-short --ttl), never the reverse.
// It reports whether the held set changed.
func (r *Revocations) keep(token string, c *RevocationClaims) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held[sha256.Sum256([]byte(token))] = struct{}{}
	if cur, ok := r.m[c.Revokes]; ok && !c.ExpiresAt.Time.After(cur.exp) {
		return false
	}
	r.m[c.Revokes] = revocation{token: token, exp: c.ExpiresAt.Time}
	return true
}

// Revoked reports whether the token with ID jti is revoked.
func (r *Revocations) Revoked(jti string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.m[jti]
	return ok
}

// Add verifies a revocation and stores it. It returns the revoked ID and
// whether it changed what this node holds (new, or longer-lasting than the
// one held for that ID); an invalid revocation is a *Denial.
func (r *Revocations) Add(token string) (string, bool, error) {
	h := sha256.Sum256([]byte(token))
	r.mu.RLock()
	_, seen := r.held[h]
	r.mu.RUnlock()
	if seen { // this very token is held: nothing to verify or store
		jti := ""
		if c, err := r.v.VerifyRevocation(token); err == nil { // cached
			jti = c.Revokes
		}
		return jti, false, nil
	}
	c, err := r.v.VerifyRevocation(token)
	if err != nil {
		return "", false, err
	}
	r.mu.RLock()
	cur, ok := r.m[c.Revokes]
	r.mu.RUnlock()
	if ok && !c.ExpiresAt.Time.After(cur.exp) {
		return c.Revokes, false, nil
	}
	err = r.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append(append([]byte{}, prefixRevocation...), c.Revokes...), []byte(token))
	})
	if err != nil {
		return "", false, fmt.Errorf("store revocation: %w", err)
	}
	return c.Revokes, r.keep(token, c), nil
}

// Revocation is one held revocation as the API lists it.
type Revocation struct {
	Revokes string    `json:"revokes"`
	Expires time.Time `json:"expires"`
	Token   string    `json:"token"`
}

// List returns the revocations that apply, ordered by revoked ID.
func (r *Revocations) List() []Revocation {
	r.mu.RLock()
	out := make([]Revocation, 0, len(r.m))
	for jti, rv := range r.m {
		out = append(out, Revocation{Revokes: jti, Expires: rv.exp, Token: rv.token})
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Revokes < out[j].Revokes })
	return out
}

// Tokens returns the revocation tokens that apply, newest expiry first,
// up to max bytes in all: what anti-entropy carries.
func (r *Revocations) Tokens(max int) []string {
	l := r.List()
	sort.Slice(l, func(i, j int) bool { return l[i].Expires.After(l[j].Expires) })
	var out []string
	for _, rv := range l {
		if max -= len(rv.Token); max < 0 {
			break
		}
		out = append(out, rv.Token)
	}
	return out
}

// Len returns how many revocations apply.
func (r *Revocations) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}

// Prune forgets revocations that expired before now: what they revoked has
// expired too.
func (r *Revocations) Prune(now time.Time) (int, error) {
	var gone []string
	r.mu.Lock()
	for jti, rv := range r.m {
		if now.After(rv.exp.Add(DefaultLeeway)) {
			gone = append(gone, jti)
			delete(r.m, jti)
			delete(r.held, sha256.Sum256([]byte(rv.token)))
		}
	}
	r.mu.Unlock()
	if len(gone) == 0 {
		return 0, nil
	}
	err := r.db.Update(func(txn *badger.Txn) error {
		for _, jti := range gone {
			if err := txn.Delete(append(append([]byte{}, prefixRevocation...), jti...)); err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
		}
		return nil
	})
	return len(gone), err
}
