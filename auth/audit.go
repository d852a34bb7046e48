package auth

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
)

// Access decision results.
const (
	Allowed = "allowed"
	Refused = "refused"
)

// Reasons for allowed decisions (refusals use the Reason constants).
const (
	ReasonOpen    = "open"    // an open dataset: no grant needed
	ReasonGranted = "granted" // a grant passed every check
)

// Record is one access decision in the audit log.
type Record struct {
	Seq     uint64     `json:"seq"`
	Time    time.Time  `json:"time"`
	Node    nii.NodeID `json:"node"`          // the requesting node (authenticated)
	Org     string     `json:"org,omitempty"` // its verified org, if proven
	Dataset string     `json:"dataset"`       // org/name@N
	Action  nii.Action `json:"action"`
	Grant   string     `json:"grant_id,omitempty"` // the grant's jti, if one was presented and a jti could be read
	// GrantUnverified marks a Grant read from a token whose signature did
	// not verify (or was never checked): the jti it claims, which anyone
	// could have written.
	GrantUnverified bool   `json:"grant_id_unverified,omitempty"`
	Result          string `json:"result"` // allowed or refused
	Reason          string `json:"reason"`
	Detail          string `json:"detail,omitempty"`
}

// SetGrant records which grant a decision was about: the jti of g, the
// grant's verified claims, when its signature verified (whether or not the
// grant was then accepted); else the jti the token claims, if one can be
// read, marked unverified. A token with no readable jti leaves none.
func (r *Record) SetGrant(token string, g *GrantClaims) {
	r.Grant, r.GrantUnverified = "", false
	if g != nil {
		r.Grant = g.ID
		return
	}
	if token == "" || len(token) > MaxTokenSize {
		return
	}
	if jti, _, err := Peek(token); err == nil && jti != "" {
		r.Grant, r.GrantUnverified = trim(jti, 128), true
	}
}

// AuditLog is the append-only log of access decisions, kept in badger
// under "au/" + big-endian sequence, so records page in order and the
// oldest are pruned first. Nothing rewrites a record; only retention
// removes them, oldest first.
type AuditLog struct {
	db  *badger.DB
	mu  sync.Mutex // serialises sequence allocation with the write
	seq uint64

	countMu sync.Mutex
	counts  map[[2]string]uint64 // (result, reason) → decisions since start
	total   atomic.Uint64
}

var prefixAudit = []byte("au/")

func auditKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{}, prefixAudit...), seq)
}

// OpenAuditLog opens the audit log kept in db.
func OpenAuditLog(db *badger.DB) (*AuditLog, error) {
	l := &AuditLog{db: db, counts: make(map[[2]string]uint64)}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixAudit, Reverse: true})
		defer it.Close()
		// In reverse, seek past every key of the prefix.
		it.Seek(append(append([]byte{}, prefixAudit...), 0xff))
		if it.ValidForPrefix(prefixAudit) {
			l.seq = binary.BigEndian.Uint64(it.Item().Key()[len(prefixAudit):])
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return l, nil
}

// Append records a decision, filling Seq and (if zero) Time.
func (l *AuditLog) Append(r Record) (Record, error) {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	l.countMu.Lock()
	l.counts[[2]string{r.Result, r.Reason}]++
	l.countMu.Unlock()
	l.total.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	r.Seq = l.seq + 1
	b, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	if err := l.db.Update(func(txn *badger.Txn) error { return txn.Set(auditKey(r.Seq), b) }); err != nil {
		return r, fmt.Errorf("audit: %w", err)
	}
	l.seq = r.Seq
	return r, nil
}

// Counts returns the decisions made since start, by (result, reason).
func (l *AuditLog) Counts() map[[2]string]uint64 {
	l.countMu.Lock()
	defer l.countMu.Unlock()
	out := make(map[[2]string]uint64, len(l.counts))
	for k, v := range l.counts {
		out[k] = v
	}
	return out
}

// AuditQuery selects a page of the audit log.
type AuditQuery struct {
	After   uint64 // records with Seq > After (oldest first); with Newest, Seq < After if After > 0
	Limit   int    // 1..1000; 0: 100
	Newest  bool   // newest first
	Dataset string // org/name: only decisions on it
	Node    nii.NodeID
	Result  string // allowed or refused
}

// MaxAuditPage bounds a page.
const MaxAuditPage = 1000

// Page returns records matching q and the cursor for the next page (0 when
// there are no more).
func (l *AuditLog) Page(q AuditQuery) ([]Record, uint64, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	if q.Limit > MaxAuditPage {
		q.Limit = MaxAuditPage
	}
	if q.Result != "" && q.Result != Allowed && q.Result != Refused {
		return nil, 0, fmt.Errorf("%w result %q: want allowed or refused", nii.ErrInvalid, q.Result)
	}
	out := []Record{}
	var next uint64
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixAudit, Reverse: q.Newest, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		switch {
		case q.Newest && q.After > 0:
			it.Seek(auditKey(q.After - 1))
		case q.Newest:
			it.Seek(append(append([]byte{}, prefixAudit...), 0xff))
		default:
			it.Seek(auditKey(q.After + 1))
		}
		for ; it.ValidForPrefix(prefixAudit); it.Next() {
			var r Record
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &r) }); err != nil {
				return err
			}
			if !q.matches(r) {
				continue
			}
			if len(out) == q.Limit {
				next = out[len(out)-1].Seq
				return nil
			}
			out = append(out, r)
		}
		return nil
	})
	return out, next, err
}

func (q AuditQuery) matches(r Record) bool {
	if q.Result != "" && r.Result != q.Result {
		return false
	}
	if q.Node != "" && r.Node != q.Node {
		return false
	}
	if q.Dataset != "" {
		d, _, _ := cutVersion(r.Dataset)
		if d != q.Dataset {
			return false
		}
	}
	return true
}

func cutVersion(ref string) (string, string, bool) {
	for i := len(ref) - 1; i >= 0; i-- {
		if ref[i] == '@' {
			return ref[:i], ref[i+1:], true
		}
	}
	return ref, "", false
}

// Prune deletes records older than before, oldest first, and returns how
// many went.
func (l *AuditLog) Prune(before time.Time) (int, error) {
	n := 0
	for {
		var keys [][]byte
		err := l.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixAudit, PrefetchValues: true, PrefetchSize: 64})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(keys) < 1000; it.Next() {
				var r Record
				if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &r) }); err != nil {
					return err
				}
				if !r.Time.Before(before) {
					break
				}
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return n, err
		}
		wb := l.db.NewWriteBatch()
		for _, k := range keys {
			if err := wb.Delete(k); err != nil {
				wb.Cancel()
				return n, err
			}
		}
		if err := wb.Flush(); err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
			return n, err
		}
		n += len(keys)
		if len(keys) < 1000 {
			return n, nil
		}
	}
}
