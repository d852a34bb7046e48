// Package web serves a node's pages for people: the catalogue, dataset
// pages, standards with their coverage, merged views, SQL and the
// federation, rendered on the server with html/template from assets
// embedded in the binary. It knows the node only through Backend, which
// node implements (node/web.go), so it imports neither node nor the
// stores; every page has a JSON twin in the node's API.
package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/registry/search"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Backend is what the pages need of a node. Every method returns only
// what the node's public API already returns to the same caller.
type Backend interface {
	// Search queries the federated catalog (GET /api/v1/catalog).
	Search(q search.Query) api.CatalogResult
	// LookupDataset is GET /api/v1/catalog/{org}/{name}.
	LookupDataset(d nii.DatasetID) (*api.CatalogDataset, error)
	// Head returns up to max bytes from the start of an open version's
	// content, every chunk checked against the publisher's signed manifest
	// (from this node's store, or fetched from a provider). A restricted
	// version is refused (nii.ErrRefused).
	Head(ctx context.Context, ref nii.Ref, max int64) ([]byte, error)
	Status() (*api.Status, error)
	PeerList() []api.PeerInfo
	// Follows are this node's followed datasets and their sync state.
	Follows() ([]api.Follow, error)
	Standards() ([]api.StandardInfo, error)
	// StandardDetail is GET /api/v1/standards/{org}/{name} (with merge:
	// fitness and coverage from a merge this node makes).
	StandardDetail(ctx context.Context, ref nii.Ref, merge bool) (*api.StandardDetail, error)
	// MergedRows returns a standard's merged rows, provenance included.
	MergedRows(ctx context.Context, std nii.Ref) (*MergedRows, error)
	// SourceLine returns line (1-based, as the merge counts source lines)
	// of a version's content, the content checked against its signed
	// manifest first.
	SourceLine(ctx context.Context, ref nii.Ref, line int64) (*SourceLine, error)
	// Standardised lists the standards d's rows can be had in, with the
	// mapping the node applies and the download URLs
	// (GET /api/v1/datasets/{org}/{name}/standardised).
	Standardised(d nii.DatasetID) ([]api.Standardised, error)
	// Query runs read-only SQL in the node's sandbox, as the public API
	// does (POST /api/v1/query without the admin token).
	Query(ctx context.Context, sql string) (*api.QueryResult, error)
	// ReportProblem is POST /api/v1/datasets/{org}/{name}/problems: a
	// person's report, recorded on the publishing node (relayed to it when
	// this node is not the publisher).
	ReportProblem(ctx context.Context, d nii.DatasetID, p api.ProblemSubmission) (*api.ProblemReceipt, error)
	Officer
}

// MergedRows is a merged view as a table: Columns name each row's
// values; the provenance columns are among them.
type MergedRows struct {
	Columns []string
	// Each calls fn with every row in the view's order, stopping at the
	// first error fn returns.
	Each func(fn func(row []string) error) error
}

// SourceLine is one line of a source version, read from verified content.
type SourceLine struct {
	Ref      nii.Ref
	Manifest nii.Hash
	Signer   nii.NodeID // the publishing node whose signature was checked
	Line     int64
	Header   []string
	Cells    []string
}

// Config sets up the pages.
type Config struct {
	Org, OrgName, Federation string
	Log                      *slog.Logger
	// PreviewRows and PreviewBytes bound a dataset page's preview.
	PreviewRows  int
	PreviewBytes int64
	// Sessions keeps the officer's sessions so that they survive a
	// restart (node: in its badger store); nil keeps them in memory only.
	Sessions SessionStore
	// ReportKey (32 bytes) signs the report form's token, so that a form
	// left open across a restart still posts (node: derived from its
	// identity key). Empty: a random key for this process.
	ReportKey []byte
}

// Handler serves the pages.
type Handler struct {
	b    Backend
	cfg  Config
	tmpl map[string]*template.Template
	mux  *http.ServeMux
	// menus is the navigation for each page's nav key, made once.
	menus map[string][]navItem
	cache pageCache
	// previews are dataset previews by manifest hash (handler.head).
	previews struct {
		mu sync.Mutex
		m  map[nii.Hash][]byte
	}

	sessions  sessions
	reportKey [32]byte // signs the report form's double-submit token (problems.go)
}

// CSP is the Content-Security-Policy of every page and asset: nothing
// inline, nothing from another origin.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// New returns the pages over b.
func New(b Backend, cfg Config) (*Handler, error) {
	if cfg.PreviewRows <= 0 {
		cfg.PreviewRows = 20
	}
	if cfg.PreviewBytes <= 0 {
		cfg.PreviewBytes = 256 << 10
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{b: b, cfg: cfg, tmpl: map[string]*template.Template{}, menus: map[string][]navItem{}}
	h.sessions.store, h.sessions.log = cfg.Sessions, cfg.Log
	switch len(cfg.ReportKey) {
	case 0:
		rand.Read(h.reportKey[:])
	case len(h.reportKey):
		copy(h.reportKey[:], cfg.ReportKey)
	default:
		return nil, fmt.Errorf("web: report key of %d bytes; want %d", len(cfg.ReportKey), len(h.reportKey))
	}
	for _, nav := range append([]navItem{{}}, navMenu...) {
		items := slices.Clone(navMenu)
		for i := range items {
			items[i].Active = items[i].Key == nav.Key
		}
		h.menus[nav.Key] = items
	}
	pages, err := fs.Glob(templateFS, "templates/*.tmpl")
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".tmpl")
		if name == "layout" || strings.HasPrefix(name, "_") {
			continue // the layout and the partials (_*.tmpl) are in every page's set
		}
		t, err := template.New("layout.tmpl").Funcs(funcs).ParseFS(templateFS, "templates/layout.tmpl", "templates/_*.tmpl", p)
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", name, err)
		}
		h.tmpl[name] = t
	}
	h.mux = http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	h.mux.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static))))
	h.mux.HandleFunc("GET /{$}", h.catalogue)
	h.mux.HandleFunc("GET /catalog", h.catalogue)
	h.mux.HandleFunc("GET /datasets/{org}/{name}", h.dataset)
	h.mux.HandleFunc("GET /api/v1/catalog/{org}/{name}", h.dataset)
	h.mux.HandleFunc("GET /dataset/{ckan}", h.ckanDataset)
	h.mux.HandleFunc("POST /datasets/{org}/{name}/problems", h.reportProblem)
	h.harmonyRoutes()
	h.officerRoutes()
	return h, nil
}

// Owns reports whether r is for a page route that is not also an API
// route: the node serves those from the pages, the rest (the negotiated
// /catalog and /api/v1/catalog/{org}/{name} included) from its API.
func (h *Handler) Owns(r *http.Request) bool {
	_, pat := h.mux.Handler(r)
	return pat != "" && pat != "GET /catalog" && !strings.HasPrefix(pat, "GET /api/")
}

// ServeHTTP serves a page, with the security headers every page has.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	SecurityHeaders(w.Header())
	h.mux.ServeHTTP(w, r)
}

// SecurityHeaders sets the headers every page and asset carries.
func SecurityHeaders(hd http.Header) {
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("X-Frame-Options", "DENY")
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// WantsHTML reports whether a request's Accept header prefers an HTML page
// to JSON: text/html (or application/xhtml+xml) is listed with a quality
// above every JSON type's. A client that sends no Accept, or */*, gets
// what it got before the pages existed.
func WantsHTML(r *http.Request) bool {
	acc := r.Header.Get("Accept")
	if acc == "" {
		return false
	}
	var html, other float64 = -1, -1
	for _, part := range strings.Split(acc, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			fmt.Sscanf(s, "%g", &q)
		}
		switch {
		case mt == "text/html" || mt == "application/xhtml+xml":
			html = max(html, q)
		case mt == "*/*" || mt == "text/*":
		default:
			other = max(other, q)
		}
	}
	return html > 0 && html >= other
}

// Negotiate serves page to clients that prefer HTML and data to the rest,
// and says so in Vary.
func Negotiate(page, data http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept")
		if WantsHTML(r) {
			page.ServeHTTP(w, r)
			return
		}
		data.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Node    Config
	Data    any
	Request *http.Request
	Menu    []navItem // the navigation, the page's own item marked
	OrgName string    // the node's org's display name, else its slug
}

// navMenu is the service navigation's items, in order.
var navMenu = []navItem{
	{Key: "catalogue", URL: "/", Label: "Catalogue"}, {Key: "standards", URL: "/standards", Label: "Standards"},
	{Key: "query", URL: "/query", Label: "SQL"}, {Key: "federation", URL: "/federation", Label: "Federation"},
	{Key: "officer", URL: "/officer", Label: "Officer"},
}

// newPage is what a template gets for a page under nav.
func (h *Handler) newPage(r *http.Request, title, nav string, data any) page {
	p := page{Title: title, Nav: nav, Node: h.cfg, Data: data, Request: r, Menu: h.menus[nav], OrgName: h.cfg.OrgName}
	if p.Menu == nil {
		p.Menu = h.menus[""]
	}
	if p.OrgName == "" {
		p.OrgName = h.cfg.Org
	}
	return p
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name, title, nav string, data any) {
	t := h.tmpl[name]
	if t == nil {
		h.problem(w, r, fmt.Errorf("web: no template %q", name))
		return
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, h.newPage(r, title, nav, data)); err != nil {
		h.cfg.Log.Error("render page", slog.String("page", name), slog.String(nii.LogErr, err.Error()))
		h.problemStatus(w, r, http.StatusInternalServerError, "The page could not be shown", "internal")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// pageCacheMax bounds the rendered pages kept by renderCached, in pages
// and in bytes.
const (
	pageCacheMax      = 1024
	pageCacheMaxBytes = 32 << 20
)

// pageCache keeps rendered pages by the hash of everything they were
// rendered from (template, title, nav and the page's data, as JSON), so
// that a page whose data did not change is not rendered again:
// html/template calls an escaper by reflection for every value it
// prints, which costs a dataset page with a 20-column dictionary several
// times the JSON twin's whole answer. A hit is byte for byte what
// rendering would give, since the templates are fixed and see only what
// is hashed.
type pageCache struct {
	mu    sync.Mutex
	pages map[nii.Hash][]byte
	bytes int
}

func (c *pageCache) get(k nii.Hash) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pages[k]
}

func (c *pageCache) put(k nii.Hash, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pages == nil {
		c.pages = map[nii.Hash][]byte{}
	}
	for k2, v := range c.pages { // evict arbitrary pages until there is room
		if len(c.pages) < pageCacheMax && c.bytes+len(b) <= pageCacheMaxBytes {
			break
		}
		delete(c.pages, k2)
		c.bytes -= len(v)
	}
	c.pages[k] = b
	c.bytes += len(b)
}

// renderCached is render for a page that is a function of its data alone
// (no session or form in it): a page rendered from the same data before
// is served from the cache.
//
// keyData is what the page is a function of (data itself, or a smaller
// value from which data follows). A page with one per-visitor value (the
// report form's token) renders slot in its place, cached, and the value
// goes into the copy sent.
func (h *Handler) renderCached(w http.ResponseWriter, r *http.Request, name, title, nav string, data, keyData any, slot, value string) {
	key, err := json.Marshal(struct {
		Name, Title, Nav string
		Data             any
	}{name, title, nav, keyData})
	if err != nil {
		h.render(w, r, http.StatusOK, name, title, nav, data)
		return
	}
	k := nii.HashOf(key)
	body := h.cache.get(k)
	if body == nil {
		t := h.tmpl[name]
		var buf bytes.Buffer
		if t == nil || t.Execute(&buf, h.newPage(r, title, nav, data)) != nil {
			h.render(w, r, http.StatusOK, name, title, nav, data) // says what went wrong
			return
		}
		body = buf.Bytes()
		h.cache.put(k, body)
	}
	if slot != "" {
		body = bytes.ReplaceAll(body, []byte(slot), []byte(value))
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// renderPart renders one template of a page's set, without the layout:
// a fragment htmx swaps in.
func (h *Handler) renderPart(w http.ResponseWriter, r *http.Request, set, name string, data any) {
	var buf bytes.Buffer
	if err := h.tmpl[set].ExecuteTemplate(&buf, name, h.newPage(r, "", "", data)); err != nil {
		h.problem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// Problem is an RFC 9457 problem details body, the pages' error format
// for clients that do not want HTML.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code,omitempty"`
}

// problem writes err as an error page (or problem details for a client
// that does not want HTML), its status by its kind.
func (h *Handler) problem(w http.ResponseWriter, r *http.Request, err error) {
	status, body := api.ErrorFor(err)
	if status >= 500 {
		h.cfg.Log.Warn("page failed", slog.String("path", r.URL.Path), slog.String(nii.LogErr, err.Error()))
	}
	h.problemStatus(w, r, status, body.Error, body.Code)
}

func (h *Handler) problemStatus(w http.ResponseWriter, r *http.Request, status int, detail, code string) {
	p := Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Code: code}
	if !WantsHTML(r) && r.Header.Get("Accept") != "" {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(p)
		return
	}
	t := h.tmpl["error"]
	var buf bytes.Buffer
	if t == nil || t.Execute(&buf, h.newPage(r, p.Title, "", p)) != nil {
		http.Error(w, detail, status)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type navItem struct {
	Active          bool
	Key, URL, Label string
}

var funcs = template.FuncMap{
	"bytes":    humanBytes,
	"date":     func(t time.Time) string { return fmtDate(t) },
	"datetime": fmtDatetime,
	"ago":      ago,
	"short":    shortID,
	"add":      func(a, b int) int { return a + b },
	"sub":      func(a, b int) int { return a - b },
	"join":     strings.Join,
	"percent":  func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
	"navItem": func(nav, key, url, label string) navItem {
		return navItem{Active: nav == key, URL: url, Label: label}
	},
	"stdID": func(ref string) string {
		id, _, _ := strings.Cut(ref, "@")
		return id
	},
	"dsPath": func(id string) string {
		return "/datasets/" + id
	},
}

func fmtDatetime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2 Jan 2006 15:04 UTC")
}

func fmtDate(t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return t.UTC().Format("2 Jan 2006")
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmtDate(t)
}

func shortID(s any) string {
	v := fmt.Sprint(s)
	if len(v) > 16 {
		return v[:8] + "…" + v[len(v)-6:]
	}
	return v
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
