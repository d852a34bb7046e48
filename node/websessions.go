package node

import (
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/web"
)

// The officer's web sessions in badger, so that a restart does not log the
// officer out: under "ws/" + the hex SHA-256 of the session ID (the ID
// itself, which only the officer's cookie holds, is stored nowhere), with
// badger's TTL set to the session's expiry.

var prefixWebSession = []byte("ws/")

// sessionStore is the node's web.SessionStore.
type sessionStore struct{ db *badger.DB }

var _ web.SessionStore = sessionStore{}

type storedSession struct {
	CSRF    string    `cbor:"1,keyasint"`
	Expires time.Time `cbor:"2,keyasint"`
}

func webSessionKey(key string) []byte { return []byte(string(prefixWebSession) + key) }

func (s sessionStore) SaveSession(key string, ss web.StoredSession) error {
	ttl := time.Until(ss.Expires)
	if ttl <= 0 {
		return nil
	}
	b, err := nii.Marshal(&storedSession{CSRF: ss.CSRF, Expires: ss.Expires.UTC()})
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		return txn.SetEntry(badger.NewEntry(webSessionKey(key), b).WithTTL(ttl))
	})
}

func (s sessionStore) LoadSession(key string) (web.StoredSession, bool, error) {
	var ss storedSession
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(webSessionKey(key))
		if err != nil {
			return err
		}
		return it.Value(func(b []byte) error { return nii.Unmarshal(b, &ss) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return web.StoredSession{}, false, nil
	}
	if err != nil || time.Now().After(ss.Expires) {
		return web.StoredSession{}, false, err
	}
	return web.StoredSession{CSRF: ss.CSRF, Expires: ss.Expires}, true, nil
}

func (s sessionStore) DeleteSession(key string) error {
	return s.db.Update(func(txn *badger.Txn) error { return txn.Delete(webSessionKey(key)) })
}
