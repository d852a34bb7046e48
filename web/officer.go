package web

import (
	"context"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
)

// Officer is what the officer's pages need of the node: each is what an
// admin-token API call does.
type Officer interface {
	// CheckAdminToken reports whether tok is the node's admin token
	// (compared in constant time).
	CheckAdminToken(tok string) bool
	// Datasets are the datasets this node holds (nii datasets).
	Datasets() ([]api.DatasetInfo, error)
	// Publish publishes a file as this node's org/name.
	Publish(ctx context.Context, r io.Reader, name, filename string, meta nii.Metadata) (*api.VersionInfo, error)
	SuggestMapping(ctx context.Context, req api.SuggestRequest) (*api.Suggestion, error)
	CheckMapping(ctx context.Context, req api.CheckRequest) (*api.CheckReport, error)
	PublishMapping(ctx context.Context, req api.MappingPublishRequest) (*api.MappingPublished, error)
	// InspectGrant checks a token as this node would.
	InspectGrant(token string) api.TokenReport
	// RevokeWithKey signs a revocation of jti with the issuer key (its
	// file's bytes, used for this call only and not kept) and has the
	// node keep and spread it. It returns the revoked ID.
	RevokeWithKey(key []byte, jti string) (string, error)
	// Audit returns a page of the audit log.
	Audit(q AuditQuery) (*api.AuditPage, error)
	// Problems lists the problem reports on this node's datasets (GET
	// /api/v1/problems): dataset "" and state "" for all.
	Problems(dataset, state string) ([]api.ProblemReport, error)
	// CloseProblem marks a report closed, audit-logged.
	CloseProblem(id string) (*api.ProblemReport, error)
	// IssueGrantWithKey signs a grant with the issuer key (its file's
	// bytes, used for this call only and not kept), as 'nii grant issue'
	// does, audit-logged without the token.
	IssueGrantWithKey(key []byte, g GrantRequest) (*IssuedGrant, error)
}

// GrantRequest is what the grant form asks for (nii grant issue's flags).
type GrantRequest struct {
	Subject  string // an org or a node ID (--to)
	Datasets []string
	Actions  []nii.Action
	Node     nii.NodeID // optional binding (--node)
	TTL      time.Duration
}

// IssuedGrant is a grant just signed: the token is shown once.
type IssuedGrant struct {
	ID       string
	Token    string
	Subject  string
	Datasets []string
	Actions  []nii.Action
	Expires  time.Time
}

// AuditQuery filters the audit log (GET /api/v1/audit's parameters).
type AuditQuery struct {
	After                 uint64
	Limit                 int
	Newest                bool
	Dataset, Result, Node string
}

// maxUpload bounds a form's fields other than the file; the file itself
// streams into the store.
const (
	maxFormField = 64 << 10
	maxKeyFile   = 16 << 10
)

func (h *Handler) officerRoutes() {
	h.mux.HandleFunc("GET /officer/login", h.loginForm)
	h.mux.HandleFunc("POST /officer/login", h.login)
	h.mux.HandleFunc("POST /officer/logout", h.officerPage(h.logout))
	h.mux.HandleFunc("GET /officer", h.officerPage(h.officerHome))
	h.mux.HandleFunc("GET /officer/publish", h.officerPage(h.publishForm))
	h.mux.HandleFunc("POST /officer/publish", h.officerPage(h.publish))
	h.mux.HandleFunc("GET /officer/mapping", h.officerPage(h.mappingEditor))
	h.mux.HandleFunc("POST /officer/mapping", h.officerPage(h.mappingEditor))
	h.mux.HandleFunc("POST /officer/mapping/check", h.officerPage(h.mappingCheck))
	h.mux.HandleFunc("GET /officer/grants", h.officerPage(h.grants))
	h.mux.HandleFunc("POST /officer/grants", h.officerPage(h.grants))
	h.mux.HandleFunc("GET /officer/audit", h.officerPage(h.audit))
	h.mux.HandleFunc("GET /officer/problems", h.officerPage(h.problems))
	h.mux.HandleFunc("POST /officer/problems", h.officerPage(h.problems))
}

type loginData struct {
	CSRF, Next, Err string
}

// safeNext keeps a post-login redirect on this site's officer pages.
func safeNext(s string) string {
	if strings.HasPrefix(s, "/officer") && !strings.HasPrefix(s, "//") && !strings.Contains(s, "\\") {
		return s
	}
	return "/officer"
}

func (h *Handler) loginForm(w http.ResponseWriter, r *http.Request) {
	if h.sessions.get(r) != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	tok := randomToken()
	setCookie(w, r, loginCookie, tok, 3600)
	w.Header().Set("Cache-Control", "no-store")
	h.render(w, r, http.StatusOK, "login", "Officer login", "officer", loginData{CSRF: tok, Next: safeNext(r.URL.Query().Get("next"))})
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormField)
	if err := r.ParseForm(); err != nil {
		h.problem(w, r, nii.Errorf(nii.ErrInvalid, "login form: %v", err))
		return
	}
	c, _ := r.Cookie(loginCookie)
	if c == nil || !same(r.PostFormValue("csrf"), c.Value) || !sameOrigin(r) {
		h.problemStatus(w, r, http.StatusForbidden, "The login form's security token is missing or out of date: reload the page and try again.", "csrf")
		return
	}
	if !h.b.CheckAdminToken(strings.TrimSpace(r.PostFormValue("token"))) {
		tok := randomToken()
		setCookie(w, r, loginCookie, tok, 3600)
		h.render(w, r, http.StatusUnauthorized, "login", "Officer login", "officer",
			loginData{CSRF: tok, Next: safeNext(r.PostFormValue("next")), Err: "That is not this node's admin token. It is in the node's home, in the file admin.token."})
		return
	}
	id, _ := h.sessions.create(time.Now())
	setCookie(w, r, loginCookie, "", -1)
	setCookie(w, r, sessionCookie, id, int(sessionTTL/time.Second))
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, s *session) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormField)
	if !h.checkCSRF(w, r, s, r.PostFormValue("csrf")) {
		return
	}
	h.sessions.end(r)
	setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

type officerData struct {
	CSRF     string
	Datasets []api.DatasetInfo
}

func (h *Handler) officerHome(w http.ResponseWriter, r *http.Request, s *session) {
	ds, err := h.b.Datasets()
	if err != nil {
		h.problem(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "officer", "Officer", "officer", officerData{CSRF: s.csrf, Datasets: ds})
}

type publishData struct {
	CSRF, Err string
	Form      map[string]string
}

func (h *Handler) publishForm(w http.ResponseWriter, r *http.Request, s *session) {
	h.render(w, r, http.StatusOK, "publish", "Publish a file", "officer", publishData{CSRF: s.csrf, Form: map[string]string{"access": "open"}})
}

// publish streams the upload: the form's fields come before the file
// (the form is laid out so), the CSRF token first of all, so nothing is
// stored before the token is checked.
func (h *Handler) publish(w http.ResponseWriter, r *http.Request, s *session) {
	mr, err := r.MultipartReader()
	if err != nil {
		h.problem(w, r, nii.Errorf(nii.ErrInvalid, "publish form: want multipart/form-data: %v", err))
		return
	}
	form := map[string]string{}
	var keywords, themes []string
	fail := func(status int, msg string) {
		h.render(w, r, status, "publish", "Publish a file", "officer", publishData{CSRF: s.csrf, Err: msg, Form: form})
	}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			fail(http.StatusBadRequest, "Choose a file to publish.")
			return
		}
		if err != nil {
			h.problem(w, r, nii.Errorf(nii.ErrInvalid, "publish form: %v", err))
			return
		}
		name := p.FormName()
		if form["csrf"] == "" {
			// The first part must be the CSRF token.
			v := ""
			if name == "csrf" {
				if v, err = readField(p); err != nil {
					h.problem(w, r, err)
					return
				}
			}
			if !h.checkCSRF(w, r, s, v) {
				return
			}
			form["csrf"] = v
			continue
		}
		if name != "file" {
			v, err := readField(p)
			if err != nil {
				h.problem(w, r, err)
				return
			}
			switch name {
			case "keywords":
				keywords = splitList(v)
			case "themes":
				themes = splitList(v)
			}
			form[name] = v
			continue
		}
		filename := p.FileName()
		if filename == "" {
			fail(http.StatusBadRequest, "Choose a file to publish.")
			return
		}
		meta := nii.Metadata{Title: form["title"], Description: form["description"], Licence: form["licence"],
			Access: nii.Access(form["access"]), Keywords: keywords, Themes: themes, ConformsTo: form["conforms_to"]}
		ds := form["name"]
		if ds == "" {
			ds = strings.ToLower(strings.TrimSuffix(filename, fileExt(filename)))
		}
		v, err := h.b.Publish(r.Context(), p, ds, filename, meta)
		if err != nil {
			_, body := api.ErrorFor(err)
			fail(http.StatusBadRequest, "The file was not published: "+body.Error)
			return
		}
		d, _, _ := strings.Cut(v.Ref, "@")
		http.Redirect(w, r, "/datasets/"+d+"?published="+strconv.FormatUint(v.Version, 10), http.StatusSeeOther)
		return
	}
}

func fileExt(name string) string {
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		return name[i:]
	}
	return ""
}

func readField(p *multipart.Part) (string, error) {
	b, err := io.ReadAll(io.LimitReader(p, maxFormField+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxFormField {
		return "", nii.Errorf(nii.ErrInvalid, "form field %s is longer than %d bytes", p.FormName(), maxFormField)
	}
	return strings.TrimSpace(string(b)), nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

type mappingData struct {
	CSRF      string
	Dataset   string
	Standard  string
	TOML      string
	Check     *api.CheckReport
	CheckErr  string
	Published *api.MappingPublished
	Err       string
	Datasets  []string
	Standards []string
}

// mappingEditor starts from a suggestion, checks the mapping as it is
// edited (the whole form posts without JavaScript; with htmx the check
// runs as the text changes) and publishes it.
func (h *Handler) mappingEditor(w http.ResponseWriter, r *http.Request, s *session) {
	md := mappingData{CSRF: s.csrf}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 4*maxFormField)
		if err := r.ParseForm(); err != nil {
			h.problem(w, r, nii.Errorf(nii.ErrInvalid, "mapping form: %v", err))
			return
		}
		if !h.checkCSRF(w, r, s, r.PostFormValue("csrf")) {
			return
		}
	}
	md.Dataset, md.Standard, md.TOML = r.FormValue("dataset"), r.FormValue("standard"), r.FormValue("mapping")
	if ds, err := h.b.Datasets(); err == nil {
		for _, d := range ds {
			if d.Role == api.RolePublisher && len(d.Versions) > 0 && d.Versions[0].Meta.Kind == nii.KindData {
				md.Datasets = append(md.Datasets, d.ID)
			}
		}
	}
	if stds, err := h.b.Standards(); err == nil {
		for _, st := range stds {
			id, _, _ := strings.Cut(st.Ref, "@")
			md.Standards = append(md.Standards, id)
		}
	}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		switch r.PostFormValue("action") {
		case "suggest":
			sg, err := h.b.SuggestMapping(r.Context(), api.SuggestRequest{Ref: md.Dataset, Standard: md.Standard})
			if err != nil {
				_, body := api.ErrorFor(err)
				md.Err, status = "No suggestion: "+body.Error, http.StatusBadRequest
				break
			}
			md.TOML = sg.TOML
			md.Check, md.CheckErr = h.check(r.Context(), md.Dataset, md.TOML)
		case "check":
			md.Check, md.CheckErr = h.check(r.Context(), md.Dataset, md.TOML)
		case "publish":
			pub, err := h.b.PublishMapping(r.Context(), api.MappingPublishRequest{Dataset: md.Dataset, Mapping: md.TOML})
			if err != nil {
				_, body := api.ErrorFor(err)
				md.Err, status = "The mapping was not published: "+body.Error, http.StatusBadRequest
				break
			}
			md.Published, md.Check = pub, pub.Check
		}
	}
	h.render(w, r, status, "mapping", "Mapping editor", "officer", md)
}

func (h *Handler) check(ctx context.Context, dataset, toml string) (*api.CheckReport, string) {
	if strings.TrimSpace(toml) == "" || dataset == "" {
		return nil, ""
	}
	rep, err := h.b.CheckMapping(ctx, api.CheckRequest{Ref: dataset, Mapping: toml})
	if err != nil {
		_, body := api.ErrorFor(err)
		return nil, body.Error
	}
	return rep, ""
}

// mappingCheck is the editor's live check, for htmx: the check result
// alone, to swap into the page.
func (h *Handler) mappingCheck(w http.ResponseWriter, r *http.Request, s *session) {
	r.Body = http.MaxBytesReader(w, r.Body, 4*maxFormField)
	if err := r.ParseForm(); err != nil || !h.checkCSRF(w, r, s, r.PostFormValue("csrf")) {
		return
	}
	var md mappingData
	md.Check, md.CheckErr = h.check(r.Context(), r.PostFormValue("dataset"), r.PostFormValue("mapping"))
	h.renderPart(w, r, "mapping", "checkresult", md)
}

type grantsData struct {
	CSRF    string
	Report  *api.TokenReport
	Revoked string
	Err     string
	JTI     string
	Issued  *IssuedGrant
	// The issue form's fields, kept when it is refused (never the key).
	To, Datasets, TTL, Bind string
	Read, Sync              bool
}

func (h *Handler) grants(w http.ResponseWriter, r *http.Request, s *session) {
	gd := grantsData{CSRF: s.csrf, TTL: "720h", Read: true}
	status := http.StatusOK
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 4*maxFormField)
		if err := r.ParseMultipartForm(4 * maxFormField); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			h.problem(w, r, nii.Errorf(nii.ErrInvalid, "grants form: %v", err))
			return
		}
		if !h.checkCSRF(w, r, s, r.PostFormValue("csrf")) {
			return
		}
		switch r.PostFormValue("action") {
		case "inspect":
			rep := h.b.InspectGrant(strings.TrimSpace(r.PostFormValue("token")))
			gd.Report = &rep
		case "issue":
			gd.To, gd.Datasets, gd.Bind = strings.TrimSpace(r.PostFormValue("to")), r.PostFormValue("datasets"), strings.TrimSpace(r.PostFormValue("node"))
			gd.TTL, gd.Read, gd.Sync = strings.TrimSpace(r.PostFormValue("ttl")), r.PostFormValue("read") != "", r.PostFormValue("sync") != ""
			ttl, err := time.ParseDuration(gd.TTL)
			if err != nil || ttl <= 0 {
				gd.Err, status = "Lifetime "+strconv.Quote(gd.TTL)+": give a duration such as 720h (30 days).", http.StatusBadRequest
				break
			}
			key, err := issuerKey(r)
			if err != nil {
				gd.Err, status = err.Error(), http.StatusBadRequest
				break
			}
			var actions []nii.Action
			if gd.Read {
				actions = append(actions, nii.ActionRead)
			}
			if gd.Sync {
				actions = append(actions, nii.ActionSync)
			}
			g, err := h.b.IssueGrantWithKey(key, GrantRequest{Subject: gd.To, Datasets: splitList(gd.Datasets), Actions: actions, Node: nii.NodeID(gd.Bind), TTL: ttl})
			clear(key)
			if err != nil {
				_, body := api.ErrorFor(err)
				gd.Err, status = "Not issued: "+body.Error, http.StatusBadRequest
				break
			}
			gd.Issued = g
		case "revoke":
			gd.JTI = strings.TrimSpace(r.PostFormValue("jti"))
			key, err := formFile(r, "key")
			if err != nil {
				gd.Err, status = err.Error(), http.StatusBadRequest
				break
			}
			jti, err := h.b.RevokeWithKey(key, gd.JTI)
			clear(key)
			if err != nil {
				_, body := api.ErrorFor(err)
				gd.Err, status = "Not revoked: "+body.Error, http.StatusBadRequest
				break
			}
			gd.Revoked = jti
		}
	}
	h.render(w, r, status, "grants", "Grants and trust", "officer", gd)
}

// issuerKey reads the issuer key the officer gave for this action: the
// uploaded file, else the pasted text. It is not kept.
func issuerKey(r *http.Request) ([]byte, error) {
	if f, _, err := r.FormFile("key"); err == nil {
		f.Close()
		return formFile(r, "key")
	}
	if t := strings.TrimSpace(r.PostFormValue("key_text")); t != "" {
		if len(t) > maxKeyFile {
			return nil, errors.New("the pasted key is too big to be a key")
		}
		return []byte(t), nil
	}
	return nil, errors.New("choose the issuer's key file (made by nii keygen) or paste its contents")
}

// formFile reads an uploaded file (a small one: an issuer key).
func formFile(r *http.Request, name string) ([]byte, error) {
	f, _, err := r.FormFile(name)
	if err != nil {
		return nil, errors.New("choose the issuer's key file (made by nii keygen)")
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil || len(b) > maxKeyFile {
		return nil, errors.New("the key file could not be read, or is too big to be a key")
	}
	return b, nil
}

type auditData struct {
	Q       AuditQuery
	Page    *api.AuditPage
	NextURL string
}

func (h *Handler) audit(w http.ResponseWriter, r *http.Request, s *session) {
	v := r.URL.Query()
	q := AuditQuery{Limit: 50, Newest: v.Get("order") != "oldest", Dataset: v.Get("dataset"), Result: v.Get("result"), Node: v.Get("node")}
	if a := v.Get("after"); a != "" {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			h.problem(w, r, nii.Errorf(nii.ErrInvalid, "after %q: want a record number", a))
			return
		}
		q.After = n
	}
	page, err := h.b.Audit(q)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	ad := auditData{Q: q, Page: page}
	if page.Next != 0 {
		u := cloneValues(v)
		u.Set("after", strconv.FormatUint(page.Next, 10))
		ad.NextURL = "/officer/audit?" + u.Encode()
	}
	h.render(w, r, http.StatusOK, "audit", "Audit log", "officer", ad)
}
