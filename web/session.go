package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/nii-uk/nii"
)

// The officer's session: the node's admin token, typed once into the
// login form, is exchanged for a random session ID in an HttpOnly,
// SameSite=Strict cookie; the token itself is never put in a cookie or a
// URL. Each session has its own CSRF token, which every officer form
// carries in a hidden field and every POST must echo. Sessions are kept
// by a SessionStore (the node's badger store) under the SHA-256 of their
// ID, so they survive a restart while the ID itself, which the cookie
// holds, is stored nowhere; memory holds the ones in use.

const (
	sessionCookie = "nii_session"
	loginCookie   = "nii_login" // the login form's CSRF token (double submit)
	sessionTTL    = 8 * time.Hour
	maxSessions   = 64
)

type session struct {
	csrf    string
	expires time.Time
}

// SessionStore keeps officer sessions across restarts. key is the hex
// SHA-256 of the session's ID, never the ID; an expired session is not
// loaded (and the store may drop it at its expiry).
type SessionStore interface {
	SaveSession(key string, s StoredSession) error
	LoadSession(key string) (StoredSession, bool, error)
	DeleteSession(key string) error
}

// StoredSession is a session as a SessionStore keeps it.
type StoredSession struct {
	CSRF    string
	Expires time.Time
}

type sessions struct {
	mu    sync.Mutex
	m     map[string]*session // by sessionKey(id)
	store SessionStore        // nil: memory only
	log   *slog.Logger
}

// sessionKey is what a session is kept under: the hash of its ID.
func sessionKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(now time.Time) (id string, sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*session{}
	}
	for k, v := range s.m {
		if now.After(v.expires) {
			delete(s.m, k)
		}
	}
	for len(s.m) >= maxSessions { // the oldest goes
		var oldest string
		for k, v := range s.m {
			if oldest == "" || v.expires.Before(s.m[oldest].expires) {
				oldest = k
			}
		}
		delete(s.m, oldest)
		if s.store != nil {
			s.store.DeleteSession(oldest) // else it would come back from the store
		}
	}
	id = randomToken()
	sess = &session{csrf: randomToken(), expires: now.Add(sessionTTL)}
	key := sessionKey(id)
	s.m[key] = sess
	if s.store != nil {
		if err := s.store.SaveSession(key, StoredSession{CSRF: sess.csrf, Expires: sess.expires}); err != nil {
			// The session works until a restart.
			s.log.Warn("keep officer session", slog.String(nii.LogErr, err.Error()))
		}
	}
	return id, sess
}

func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	key := sessionKey(c.Value)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*session{}
	}
	sess := s.m[key]
	if sess == nil && s.store != nil {
		// A session from before a restart.
		if st, ok, err := s.store.LoadSession(key); err == nil && ok {
			sess = &session{csrf: st.CSRF, expires: st.Expires}
			s.m[key] = sess
		}
	}
	if sess == nil || time.Now().After(sess.expires) {
		delete(s.m, key)
		return nil
	}
	return sess
}

func (s *sessions) end(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		key := sessionKey(c.Value)
		s.mu.Lock()
		delete(s.m, key)
		s.mu.Unlock()
		if s.store != nil {
			if err := s.store.DeleteSession(key); err != nil {
				s.log.Warn("end officer session", slog.String(nii.LogErr, err.Error()))
			}
		}
	}
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

func same(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// sameOrigin refuses a request whose Origin (or, without one, Referer)
// names another site. Browsers send Origin on every POST.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// officerPage wraps an officer page: without a session it redirects to
// the login page; a POST must come from this site and carry the
// session's CSRF token (csrfOf reads it: the form field, or for a
// streamed upload, the part read first).
func (h *Handler) officerPage(fn func(w http.ResponseWriter, r *http.Request, s *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.sessions.get(r)
		if s == nil {
			if r.Method != http.MethodGet {
				h.problemStatus(w, r, http.StatusForbidden, "Log in as the node's officer first.", "unauthorized")
				return
			}
			http.Redirect(w, r, "/officer/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && !sameOrigin(r) {
			h.problemStatus(w, r, http.StatusForbidden, "This form was sent from another site.", "csrf")
			return
		}
		fn(w, r, s)
	}
}

// checkCSRF reports whether a form's token is the session's, writing the
// refusal if not.
func (h *Handler) checkCSRF(w http.ResponseWriter, r *http.Request, s *session, token string) bool {
	if !same(token, s.csrf) {
		h.problemStatus(w, r, http.StatusForbidden, "The form's security token is missing or out of date: reload the page and try again.", "csrf")
		return false
	}
	return true
}
