package web

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// The officer's session: the node's admin token, typed once into the
// login form, is exchanged for a random session ID in an HttpOnly,
// SameSite=Strict cookie; the token itself is never put in a cookie or a
// URL. Each session has its own CSRF token, which every officer form
// carries in a hidden field and every POST must echo. Sessions live in
// memory: a restart logs the officer out.

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

type sessions struct {
	mu sync.Mutex
	m  map[string]*session
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
	}
	id = randomToken()
	sess = &session{csrf: randomToken(), expires: now.Add(sessionTTL)}
	s.m[id] = sess
	return id, sess
}

func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[c.Value]
	if sess == nil || time.Now().After(sess.expires) {
		delete(s.m, c.Value)
		return nil
	}
	return sess
}

func (s *sessions) end(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.m, c.Value)
		s.mu.Unlock()
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
