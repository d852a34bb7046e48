package web

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/registry/opendata"
)

// facetOrder is the order facets are shown in, with their labels.
var facetOrder = []struct{ Key, Label string }{
	{"publisher", "Publisher"}, {"theme", "Theme"}, {"licence", "Licence"},
	{"format", "Format"}, {"access", "Access"}, {"keyword", "Keyword"},
}

type facetValue struct {
	Value   string
	Count   int
	Checked bool
	ID      string
}

type facetGroup struct {
	Key, Label string
	Values     []facetValue
}

type pageLink struct {
	Label, URL string
	Current    bool
}

type catalogueData struct {
	Q        string
	Sort     string
	Verified string
	Result   api.CatalogResult
	Facets   []facetGroup
	From, To int
	Pages    []pageLink
	Prev     string
	Next     string
	JSONURL  string
}

func (h *Handler) catalogue(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q, err := opendata.CatalogQuery(v)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	if v.Get("limit") == "" {
		q.Limit = 20
	}
	if q.Limit > 100 {
		q.Limit = 100
	}
	res := h.b.Search(q)
	d := catalogueData{Q: q.Text, Sort: q.Sort, Verified: v.Get("verified"), Result: res}
	for _, f := range facetOrder {
		g := facetGroup{Key: f.Key, Label: f.Label}
		chosen := map[string]bool{}
		for _, s := range v[f.Key] {
			chosen[s] = true
		}
		for i, c := range res.Facets[f.Key] {
			g.Values = append(g.Values, facetValue{Value: c.Value, Count: c.Count, Checked: chosen[c.Value], ID: f.Key + "-" + strconv.Itoa(i)})
			delete(chosen, c.Value)
		}
		// A chosen value that no longer matches stays, so it can be unticked.
		for s := range chosen {
			g.Values = append(g.Values, facetValue{Value: s, Checked: true, ID: f.Key + "-x" + strconv.Itoa(len(g.Values))})
		}
		if len(g.Values) > 0 {
			d.Facets = append(d.Facets, g)
		}
	}
	if res.Total > 0 {
		d.From, d.To = q.Offset+1, min(q.Offset+len(res.Hits), res.Total)
	}
	at := func(off int) string {
		u := cloneValues(v)
		u.Set("offset", strconv.Itoa(off))
		return "/?" + u.Encode()
	}
	if q.Offset > 0 {
		d.Prev = at(max(0, q.Offset-q.Limit))
	}
	if q.Offset+q.Limit < res.Total {
		d.Next = at(q.Offset + q.Limit)
	}
	cur := q.Offset / q.Limit
	last := (res.Total - 1) / q.Limit
	for p := max(0, cur-3); p <= min(last, cur+3) && res.Total > 0; p++ {
		d.Pages = append(d.Pages, pageLink{Label: strconv.Itoa(p + 1), URL: at(p * q.Limit), Current: p == cur})
	}
	d.JSONURL = "/api/v1/catalog?" + v.Encode()
	title := "Find data"
	if q.Text != "" {
		title = "Find data: " + q.Text
	}
	h.render(w, r, http.StatusOK, "catalogue", title, "catalogue", d)
}

func cloneValues(v url.Values) url.Values {
	u := url.Values{}
	for k, s := range v {
		u[k] = append([]string(nil), s...)
	}
	return u
}

// ckanDataset serves CKAN's dataset URL (/dataset/{name}, name as CKAN
// gives it: org-name or org/name).
func (h *Handler) ckanDataset(w http.ResponseWriter, r *http.Request) {
	for _, d := range opendata.CKANNameCandidates(r.PathValue("ckan")) {
		if _, err := h.b.LookupDataset(d); err == nil {
			http.Redirect(w, r, "/datasets/"+d.String(), http.StatusSeeOther)
			return
		}
	}
	h.problem(w, r, nii.Errorf(nii.ErrNotFound, "no dataset is called %q in the federated catalog", r.PathValue("ckan")))
}

// column is a data dictionary entry: the profile's figures over every
// row, with examples and a range from the preview. Its fields are plain
// strings the template prints as they are (no embedded struct, no call
// per cell: text/template looks each field up by reflection per use).
type column struct {
	c                     nii.Column
	Examples              []string
	Name, Type, Nulls     string
	ExampleText, Min, Max string
}

// standardDownload is one standard a dataset's rows can be downloaded
// in, and the files.
type standardDownload struct {
	Standard, StandardID, Mapping, Choice, Why string
	Files                                      []fileLink
}

type fileLink struct {
	Format, Label, URL, Filename string
}

// provider is a provider row of the dataset page, its cells as text.
type provider struct {
	Node, Org, Role, Version, State string
}

// versionRow is a version row of the dataset page, its cells as text.
type versionRow struct {
	Version, Created, Size, Manifest string
}

type datasetData struct {
	D          *api.CatalogDataset
	Ref        nii.Ref
	Versions   []api.VersionInfo
	Columns    []column
	Providers  []provider
	Vers       []versionRow
	Header     []string
	Rows       [][]string
	PreviewErr string
	Truncated  bool
	Download   string
	Filename   string
	Curl       string
	Pull       string
	JSONURL    string
	Restricted bool
	Report     reportForm // the report-a-problem form (problems.go)
	// Standard are the standards the rows can be had in, with downloads.
	Standard []standardDownload
	// The summary's cells, as text.
	PublishedBy, NodeState, Updated, FormatSize, Signed, SizeText string
}

func (h *Handler) dataset(w http.ResponseWriter, r *http.Request) {
	d, err := nii.ParseDatasetID(r.PathValue("org") + "/" + r.PathValue("name"))
	if err != nil {
		h.problem(w, r, err)
		return
	}
	cd, err := h.b.LookupDataset(d)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	ref := nii.Ref{Dataset: d, Version: cd.Version}
	dd := datasetData{D: cd, Ref: ref, Restricted: cd.Meta.Access == nii.AccessRestricted}
	dd.Report = h.datasetReportForm(w, r, cd)
	if cd.Local != nil {
		dd.Versions = append(dd.Versions, cd.Local.Versions...)
		sort.Slice(dd.Versions, func(i, j int) bool { return dd.Versions[i].Version > dd.Versions[j].Version })
	}
	dd.Filename = cd.Meta.Filename
	if dd.Filename == "" {
		dd.Filename = d.Name + extFor(cd.Meta.MediaType)
	}
	dd.Download = "/api/v1/datasets/" + d.String() + "/versions/" + strconv.FormatUint(cd.Version, 10) + "/download"
	base := "http://" + r.Host
	dd.Curl = "curl -fOJ " + base + dd.Download
	dd.Pull = "nii pull " + ref.String()
	if dd.Restricted {
		dd.Pull += " --grant @grant.jwt"
	}
	dd.JSONURL = "/api/v1/catalog/" + d.String()
	var prof []nii.Column
	if cd.Meta.Table != nil {
		prof = cd.Meta.Table.Columns
	}
	for _, c := range prof {
		col := column{c: c, Name: c.Name, Type: c.Type, Nulls: strconv.FormatInt(c.Nulls, 10)}
		if c.Format != "" {
			col.Type += " (" + c.Format + ")"
		}
		dd.Columns = append(dd.Columns, col)
	}
	for _, p := range cd.Providers {
		pr := provider{Node: shortID(p.Node), Org: p.Org, Role: "publisher", Version: strconv.FormatUint(p.Version, 10), State: "online now"}
		if p.Replica {
			pr.Role = "replica"
		}
		if !p.Online {
			pr.State = "offline, last seen " + ago(p.LastSeen)
		}
		dd.Providers = append(dd.Providers, pr)
	}
	for _, v := range dd.Versions {
		dd.Vers = append(dd.Vers, versionRow{Version: strconv.FormatUint(v.Version, 10), Created: fmtDate(v.Created), Size: humanBytes(v.Size), Manifest: shortID(v.Manifest)})
	}
	dd.PublishedBy = cd.Meta.PublisherName
	if dd.PublishedBy == "" {
		dd.PublishedBy = cd.Meta.Publisher
	}
	dd.NodeState = "online now"
	if !cd.Online {
		dd.NodeState = "last seen " + ago(cd.LastSeen)
	}
	dd.Updated = fmtDate(cd.Meta.Modified) + " (version " + strconv.FormatUint(cd.Version, 10) + "; first published " + fmtDate(cd.Meta.Issued) + ")"
	dd.SizeText = humanBytes(cd.Meta.ByteSize)
	dd.FormatSize = cd.Meta.MediaType + ", " + dd.SizeText
	if t := cd.Meta.Table; t != nil {
		dd.FormatSize += ", " + strconv.FormatInt(t.Rows, 10) + " rows"
	}
	dd.Signed = "signed " + fmtDatetime(cd.Signed)
	if !dd.Restricted && isTabular(cd.Meta.MediaType) {
		sts, err := h.b.Standardised(d)
		if err != nil {
			h.cfg.Log.Debug("standardised rows", "dataset", d.String(), nii.LogErr, err.Error())
		}
		for _, st := range sts {
			sd := standardDownload{Standard: st.Standard, Mapping: st.Mapping, Choice: st.Choice, Why: st.Why}
			sd.StandardID, _, _ = strings.Cut(st.Standard, "@")
			for _, f := range []struct{ format, label, ext string }{
				{api.FormatCSV, "CSV", ".csv"}, {api.FormatParquet, "Parquet", ".parquet"}, {api.FormatNDJSON, "JSON (newline-delimited)", ".ndjson"},
			} {
				if u := st.Downloads[f.format]; u != "" {
					name := d.Org + "-" + d.Name + "-v" + strconv.FormatUint(cd.Version, 10) + "." + strings.ReplaceAll(sd.StandardID, "/", "-") + f.ext
					sd.Files = append(sd.Files, fileLink{Format: f.format, Label: f.label, URL: u, Filename: name})
				}
			}
			dd.Standard = append(dd.Standard, sd)
		}
	}
	switch {
	case dd.Restricted:
		dd.PreviewErr = "This dataset is restricted: its rows are shown only to members with a grant."
	case !isTabular(cd.Meta.MediaType):
		dd.PreviewErr = "No preview: this file is not a table (" + cd.Meta.MediaType + ")."
	case !previewable(cd):
		dd.PreviewErr = "The preview could not be loaded: this node does not hold the version and no provider of it is online now."
	default:
		b, err := h.head(r.Context(), ref, cd.Manifest)
		if err != nil {
			_, body := api.ErrorFor(err)
			dd.PreviewErr = "The preview could not be loaded: " + body.Error
			break
		}
		dd.Header, dd.Rows, dd.Truncated = previewCSV(b, cd.Meta.Table, h.cfg.PreviewRows, int64(len(b)) >= h.cfg.PreviewBytes)
		fillDictionary(dd.Columns, dd.Header, dd.Rows)
	}
	for i := range dd.Columns {
		dd.Columns[i].ExampleText = strings.Join(dd.Columns[i].Examples, "; ")
	}
	title := cd.Meta.Title
	if title == "" {
		title = d.String()
	}
	// The preview's rows and the dictionary's examples follow from the
	// content, which the manifest hash names: the key holds that, not them.
	// The report form's token is the visitor's own: the cached page holds
	// a slot for it.
	token := dd.Report.CSRF
	dd.Report.CSRF = reportTokenSlot
	key := dd
	key.Header, key.Rows, key.Columns = nil, nil, nil
	h.renderCached(w, r, "dataset", title, "catalogue", dd, struct {
		D         datasetData
		Preview   nii.Hash
		Dict      int
		Published string
	}{key, cd.Manifest, len(dd.Columns), r.URL.Query().Get("published")}, reportTokenSlot, token)
}

// previewable reports whether a preview can be read: this node holds
// the version, or a provider of it is online now.
func previewable(cd *api.CatalogDataset) bool {
	if cd.Local != nil {
		for _, v := range cd.Local.Versions {
			if v.Version == cd.Version {
				return true
			}
		}
	}
	for _, p := range cd.Providers {
		if p.Online {
			return true
		}
	}
	return false
}

// previewCacheMax bounds the previews kept, by count (each is at most
// Config.PreviewBytes).
const previewCacheMax = 64

// head returns the start of a version's content for its preview: from
// the cache when this manifest's was read before (content is named by its
// manifest, so a kept preview never goes stale), else from the backend.
func (h *Handler) head(ctx context.Context, ref nii.Ref, manifest nii.Hash) ([]byte, error) {
	h.previews.mu.Lock()
	b, ok := h.previews.m[manifest]
	h.previews.mu.Unlock()
	if ok && !manifest.IsZero() {
		return b, nil
	}
	b, err := h.b.Head(ctx, ref, h.cfg.PreviewBytes)
	if err != nil || manifest.IsZero() {
		return b, err
	}
	h.previews.mu.Lock()
	defer h.previews.mu.Unlock()
	if h.previews.m == nil {
		h.previews.m = map[nii.Hash][]byte{}
	}
	for k := range h.previews.m {
		if len(h.previews.m) < previewCacheMax {
			break
		}
		delete(h.previews.m, k)
	}
	h.previews.m[manifest] = b
	return b, nil
}

func isTabular(mt string) bool {
	mt, _, _ = strings.Cut(mt, ";")
	return mt == "text/csv" || mt == "text/tab-separated-values"
}

func extFor(mt string) string {
	mt, _, _ = strings.Cut(mt, ";")
	switch strings.TrimSpace(mt) {
	case "text/csv":
		return ".csv"
	case "application/json":
		return ".json"
	case "text/tab-separated-values":
		return ".tsv"
	case "application/vnd.apache.parquet":
		return ".parquet"
	}
	return ""
}

// previewCSV parses the first rows of b (a prefix of the file: its last,
// possibly cut, line is dropped when more followed), below the profile's
// header row.
func previewCSV(b []byte, t *nii.Table, maxRows int, cut bool) (header []string, rows [][]string, truncated bool) {
	if cut {
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
		}
		truncated = true
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	cr := csv.NewReader(bytes.NewReader(b))
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	if t != nil && t.Delimiter != "" {
		cr.Comma = []rune(t.Delimiter)[0]
	}
	if t != nil && t.SkipInitialSpace {
		cr.TrimLeadingSpace = true
	}
	headerRow := 1
	if t != nil && t.HeaderRow > 0 {
		headerRow = t.HeaderRow
	}
	for i := 1; ; i++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			truncated = true
			break
		}
		if i < headerRow {
			continue
		}
		if i == headerRow {
			header = rec
			continue
		}
		if len(rows) == maxRows {
			truncated = true
			break
		}
		rows = append(rows, rec)
	}
	return header, rows, truncated
}

// fillDictionary adds examples and, for numbers, the range seen in the
// preview's rows to the profile's columns.
func fillDictionary(cols []column, header []string, rows [][]string) {
	idx := map[string]int{}
	for i, hd := range header {
		idx[strings.TrimSpace(hd)] = i
	}
	for ci := range cols {
		c := &cols[ci]
		i, ok := idx[strings.TrimSpace(c.c.HeaderLabel())]
		if !ok {
			continue
		}
		seen := map[string]bool{}
		var lo, hi float64
		var n int
		for _, row := range rows {
			if i >= len(row) {
				continue
			}
			v := strings.TrimSpace(row[i])
			if v == "" {
				continue
			}
			if len(c.Examples) < 3 && !seen[v] {
				seen[v] = true
				c.Examples = append(c.Examples, v)
			}
			if c.c.Type == "number" || c.c.Type == "integer" {
				f, err := strconv.ParseFloat(strings.NewReplacer(",", "", "£", "").Replace(v), 64)
				if err != nil {
					continue
				}
				if n == 0 || f < lo {
					lo = f
				}
				if n == 0 || f > hi {
					hi = f
				}
				n++
			}
		}
		if n > 0 {
			c.Min, c.Max = strconv.FormatFloat(lo, 'f', -1, 64), strconv.FormatFloat(hi, 'f', -1, 64)
		}
	}
}
