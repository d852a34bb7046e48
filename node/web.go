package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/registry/search"
	"github.com/nii-uk/nii/web"
)

// The pages for people (package web) on the API's listener. The page
// routes that are also API routes (/catalog, /api/v1/catalog/{org}/{name})
// are negotiated: a client that prefers text/html gets the page, every
// other client what the API gave it before. This file is web.Backend over
// the node.

// webPages builds the pages, once, for apiHandler.
func (n *Node) webPages() http.Handler {
	if n.pages != nil {
		return n.pages
	}
	h, err := web.New(webBackend{n}, web.Config{
		Org: n.cfg.Org, OrgName: n.cfg.OrgName, Federation: n.cfg.Federation, Log: n.log,
		Sessions: sessionStore{n.db}, ReportKey: n.reportFormKey(),
	})
	if err != nil {
		// The templates are embedded: a failure is a build defect, caught
		// by any test that starts a node.
		panic(err)
	}
	n.pages = h
	return h
}

// withPages serves the page routes that are not API routes (the
// catalogue at /, dataset, standard, merged-view, SQL, federation and
// officer pages, and /static/) from the pages, everything else from the
// API. The pages are not in the API's mux, so openapi.json stays the
// API's document; they pass the same rate limit.
func (n *Node) withPages(apiH http.Handler) http.Handler {
	p := n.webPages().(*web.Handler)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.Owns(r) {
			p.ServeHTTP(w, r)
			return
		}
		apiH.ServeHTTP(w, r)
	})
}

// negotiated serves the page to a browser and h to everyone else.
func (n *Node) negotiated(h http.Handler) http.Handler {
	return web.Negotiate(n.webPages(), h)
}

// setDisposition names the file a download saves as: the publisher's
// file name, else the dataset's name and the format's extension.
func setDisposition(h http.Header, ref nii.Ref, meta nii.Metadata) {
	name := meta.Filename
	if name == "" {
		name = ref.Dataset.Name
		if exts, _ := mime.ExtensionsByType(meta.MediaType); len(exts) > 0 {
			name += exts[0]
		}
	}
	if v := mime.FormatMediaType("attachment", map[string]string{"filename": name}); v != "" {
		h.Set("Content-Disposition", v)
	}
}

// webBackend is the node as the pages' Backend.
type webBackend struct{ n *Node }

var _ web.Backend = webBackend{}

func (b webBackend) Search(q search.Query) api.CatalogResult { return b.n.Search(q) }
func (b webBackend) LookupDataset(d nii.DatasetID) (*api.CatalogDataset, error) {
	return b.n.LookupDataset(d)
}
func (b webBackend) Status() (*api.Status, error) { return b.n.Status() }
func (b webBackend) Standardised(d nii.DatasetID) ([]api.Standardised, error) {
	return b.n.Standardised(d)
}
func (b webBackend) PeerList() []api.PeerInfo { return b.n.PeerList() }
func (b webBackend) Standards() ([]api.StandardInfo, error) {
	return b.n.Standards()
}
func (b webBackend) StandardDetail(ctx context.Context, ref nii.Ref, merge bool) (*api.StandardDetail, error) {
	return b.n.StandardDetail(ctx, ref, merge)
}

func (b webBackend) Follows() ([]api.Follow, error) {
	fs, err := b.n.Follows()
	if err != nil {
		return nil, err
	}
	out := make([]api.Follow, 0, len(fs))
	for i := range fs {
		out = append(out, *b.n.followInfo(&fs[i]))
	}
	return out, nil
}

// previewTimeout bounds a preview fetched from another node.
const previewTimeout = 5 * time.Second

// errEnough stops a stream once a preview has its bytes.
var errEnough = errors.New("preview has enough bytes")

// headSink keeps the first max bytes of a relayed version.
type headSink struct {
	buf bytes.Buffer
	max int64
}

func (s *headSink) Put(chunks []exchange.Chunk) error {
	for _, c := range chunks {
		room := s.max - int64(s.buf.Len())
		if int64(len(c.Data)) >= room {
			s.buf.Write(c.Data[:room])
			return errEnough
		}
		s.buf.Write(c.Data)
	}
	return nil
}

// Head reads the start of an open version: from the store (the signed
// manifest opened and every chunk checked against its hash, the path
// merges read) or, for a version this node does not hold, through the
// fetch engine the download relay uses (the publisher's manifest checked,
// each chunk checked as it arrives); nothing is kept.
func (b webBackend) Head(ctx context.Context, ref nii.Ref, max int64) ([]byte, error) {
	n := b.n
	if rec, err := n.store.Version(ref); err == nil {
		if rec.Meta.Access == nii.AccessRestricted {
			return nil, nii.Errorf(nii.ErrRefused, "%s is restricted", ref)
		}
		rc, err := n.openVersion(ctx, rec)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		return io.ReadAll(io.LimitReader(rc, max))
	}
	src, err := n.sources(ref)
	if err != nil {
		return nil, err
	}
	if a := src.Publisher.Advert; a.Withdrawn || (a.Meta.Access != nii.AccessOpen && a.Meta.Access != "") {
		return nil, nii.Errorf(nii.ErrRefused, "%s is withdrawn or restricted", ref)
	}
	req := n.fetchRequest(src)
	// A page does not wait on providers gossip has given up on: only
	// those online now are asked, within previewTimeout.
	req.Providers = slices.DeleteFunc(req.Providers, func(id nii.NodeID) bool { on, _ := n.presence(id); return !on })
	if len(req.Providers) == 0 {
		return nil, fmt.Errorf("%s: %w: no provider is online now", req.Ref, exchange.ErrNoProvider)
	}
	ctx, cancel := context.WithTimeout(ctx, previewTimeout)
	defer cancel()
	x, err := exchange.NewFetch(ctx, n.host, req)
	if err != nil {
		return nil, err
	}
	sink := &headSink{max: max}
	if err := x.Stream(ctx, sink); err != nil && !errors.Is(err, errEnough) {
		return nil, err
	}
	return sink.buf.Bytes(), nil
}

func (b webBackend) MergedRows(ctx context.Context, std nii.Ref) (*web.MergedRows, error) {
	m, err := b.n.MergedView(ctx, std)
	if err != nil {
		return nil, err
	}
	return &web.MergedRows{Columns: m.ColumnNames(), Each: m.EachRow}, nil
}

// maxSourceLine is how far into a source the page reads to find a line.
const maxSourceLine = 10_000_000

// SourceLine reads one line of a version this node holds (or pulls, as a
// merge would), through the same verified read as the merge, so that the
// cells shown are the signed source's.
func (b webBackend) SourceLine(ctx context.Context, ref nii.Ref, line int64) (*web.SourceLine, error) {
	n := b.n
	if line < 1 || line > maxSourceLine {
		return nil, nii.Errorf(nii.ErrInvalid, "line %d: want 1 to %d", line, maxSourceLine)
	}
	rec, err := n.holdVersion(ctx, ref, "")
	if err != nil {
		return nil, err
	}
	if rec.Meta.Access == nii.AccessRestricted {
		return nil, nii.Errorf(nii.ErrRefused, "%s is restricted: its lines are not shown on public pages", ref)
	}
	rc, err := n.openVersion(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	out := &web.SourceLine{Ref: rec.Ref, Manifest: rec.Manifest, Signer: rec.Publisher, Line: line}
	br := bufio.NewReaderSize(rc, 64<<10)
	headerRow := int64(1)
	if t := rec.Meta.Table; t != nil && t.HeaderRow > 0 {
		headerRow = int64(t.HeaderRow)
	}
	parse := func(r io.Reader) []string {
		cr := csv.NewReader(r)
		cr.FieldsPerRecord, cr.LazyQuotes = -1, true
		if t := rec.Meta.Table; t != nil && t.Delimiter != "" {
			cr.Comma = []rune(t.Delimiter)[0]
		}
		rec, _ := cr.Read()
		return rec
	}
	for i := int64(1); i <= line; i++ {
		s, err := br.ReadString('\n')
		if err != nil && (s == "" || !errors.Is(err, io.EOF)) {
			if errors.Is(err, io.EOF) {
				return nil, nii.Errorf(nii.ErrNotFound, "%s has fewer than %d lines", rec.Ref, line)
			}
			return nil, err
		}
		if i == headerRow {
			out.Header = parse(strings.NewReader(strings.TrimPrefix(s, "\xef\xbb\xbf")))
		}
		if i == line {
			// A quoted cell may run on: the record is read from its line on.
			out.Cells = parse(io.MultiReader(strings.NewReader(s), io.LimitReader(br, 1<<20)))
		}
	}
	return out, nil
}

func (b webBackend) Query(ctx context.Context, text string) (*api.QueryResult, error) {
	res, err := b.n.sql.Query(ctx, text, false)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := res.WriteDocument(&buf); err != nil {
		return nil, err
	}
	var out api.QueryResult
	dec := json.NewDecoder(&buf)
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return &out, nil
}

// The officer's pages: each method is what the admin-token API call does.

func (b webBackend) CheckAdminToken(tok string) bool {
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(b.n.apiToken)) == 1
}

func (b webBackend) Datasets() ([]api.DatasetInfo, error) { return b.n.Datasets() }

func (b webBackend) Publish(ctx context.Context, r io.Reader, name, filename string, meta nii.Metadata) (*api.VersionInfo, error) {
	rec, err := b.n.Publish(ctx, r, PublishRequest{Name: name, Filename: filename, Meta: meta})
	if err != nil {
		return nil, err
	}
	v := versionInfo(rec)
	return &v, nil
}

func (b webBackend) SuggestMapping(ctx context.Context, req api.SuggestRequest) (*api.Suggestion, error) {
	return b.n.SuggestMapping(ctx, req)
}

func (b webBackend) CheckMapping(ctx context.Context, req api.CheckRequest) (*api.CheckReport, error) {
	return b.n.CheckMapping(ctx, req)
}

func (b webBackend) PublishMapping(ctx context.Context, req api.MappingPublishRequest) (*api.MappingPublished, error) {
	return b.n.PublishMapping(ctx, req)
}

func (b webBackend) InspectGrant(token string) api.TokenReport {
	return tokenReport(b.n.InspectGrant(token, nil))
}

// RevokeWithKey signs the revocation as 'nii grant revoke --key' does
// (kept by nodes for auth.MaxTTL), then revokes.
func (b webBackend) RevokeWithKey(keyFile []byte, jti string) (string, error) {
	if strings.TrimSpace(jti) == "" {
		return "", nii.Errorf(nii.ErrInvalid, "give the ID (jti) of the grant or credential to revoke")
	}
	k, err := auth.ParsePrivateKey(keyFile)
	if err != nil {
		return "", fmt.Errorf("%w issuer key: %v", nii.ErrInvalid, err)
	}
	tok, _, err := auth.IssueRevocation(k, b.n.cfg.Federation, strings.TrimSpace(jti), auth.MaxTTL)
	clear(k)
	if err != nil {
		return "", fmt.Errorf("%w revocation: %v", nii.ErrInvalid, err)
	}
	revoked, _, err := b.n.Revoke(tok)
	if err == nil {
		b.n.auditOfficer("", "revoke", "revoked "+revoked)
	}
	return revoked, err
}

func (b webBackend) Audit(q web.AuditQuery) (*api.AuditPage, error) {
	recs, next, err := b.n.Audit(auth.AuditQuery{After: q.After, Limit: q.Limit, Newest: q.Newest, Dataset: q.Dataset, Result: q.Result, Node: nii.NodeID(q.Node)})
	if err != nil {
		return nil, err
	}
	page := &api.AuditPage{Records: make([]api.AuditRecord, len(recs)), Next: next}
	for i, rec := range recs {
		page.Records[i] = auditRecord(rec)
	}
	return page, nil
}

func (b webBackend) ReportProblem(ctx context.Context, d nii.DatasetID, p api.ProblemSubmission) (*api.ProblemReceipt, error) {
	return b.n.ReportProblem(ctx, d, p)
}

func (b webBackend) Problems(dataset, state string) ([]api.ProblemReport, error) {
	return b.n.Problems(ProblemQuery{Dataset: dataset, State: state})
}

func (b webBackend) CloseProblem(id string) (*api.ProblemReport, error) { return b.n.CloseProblem(id) }

// IssueGrantWithKey signs a grant as 'nii grant issue --key' does (the
// same auth.IssueGrant, with its checks: patterns, actions, lifetime),
// for this node's federation. The key is cleared after use and neither it
// nor the token is logged; the audit log records the grant's ID.
func (b webBackend) IssueGrantWithKey(keyFile []byte, g web.GrantRequest) (*web.IssuedGrant, error) {
	k, err := auth.ParsePrivateKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w issuer key: %v", nii.ErrInvalid, err)
	}
	defer clear(k)
	tok, gc, err := auth.IssueGrant(k, auth.GrantSpec{Federation: b.n.cfg.Federation, Subject: strings.TrimSpace(g.Subject),
		Datasets: g.Datasets, Actions: g.Actions, Node: g.Node, TTL: g.TTL})
	if err != nil {
		if !errors.Is(err, nii.ErrInvalid) {
			err = fmt.Errorf("%w: %v", nii.ErrInvalid, err)
		}
		return nil, err
	}
	b.n.auditOfficer(strings.Join(gc.Datasets, ","), "issue-grant", "grant "+gc.ID+" to "+g.Subject+" until "+gc.ExpiresAt.UTC().Format(time.RFC3339))
	return &web.IssuedGrant{ID: gc.ID, Token: tok, Subject: g.Subject, Datasets: gc.Datasets, Actions: gc.Actions, Expires: gc.ExpiresAt.UTC()}, nil
}

// reportFormKey is the key the pages sign the report form's token with:
// derived (HKDF-SHA-256) from the node's identity key, so that it is the
// same after a restart, changes if the identity key does, and reveals
// nothing about it.
func (n *Node) reportFormKey() []byte {
	k, err := hkdf.Key(sha256.New, n.key.Seed(), nil, "nii web: report-a-problem form token v1", 32)
	if err != nil {
		panic(err) // only for a length HKDF cannot give; 32 it always can
	}
	return k
}
