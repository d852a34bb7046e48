package web

import (
	"encoding/csv"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
)

func (h *Handler) harmonyRoutes() {
	h.mux.HandleFunc("GET /standards", h.standards)
	h.mux.HandleFunc("GET /standards/{org}/{name}", h.standard)
	h.mux.HandleFunc("GET /merged/{org}/{name}", h.merged)
	h.mux.HandleFunc("GET /merged/{org}/{name}/rows.csv", h.mergedCSV)
	h.mux.HandleFunc("GET /source/{org}/{name}/{version}/{line}", h.source)
	h.mux.HandleFunc("GET /query", h.query)
	h.mux.HandleFunc("GET /federation", h.federation)
}

func (h *Handler) standards(w http.ResponseWriter, r *http.Request) {
	stds, err := h.b.Standards()
	if err != nil {
		h.problem(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "standards", "Standards", "standards", stds)
}

type standardData struct {
	S       *api.StandardDetail
	ID      string
	Heat    *svgHeat
	Months  []string
	JSONURL string
}

func datasetFromPath(r *http.Request) (nii.DatasetID, error) {
	return nii.ParseDatasetID(r.PathValue("org") + "/" + r.PathValue("name"))
}

func (h *Handler) standard(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	s, err := h.b.StandardDetail(r.Context(), nii.Ref{Dataset: d}, true)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	sd := standardData{S: s, ID: d.String(), JSONURL: "/api/v1/standards/" + d.String() + "?merge=true"}
	if s.Fitness != nil && len(s.Fitness.Coverage) > 0 {
		sd.Heat = heatMap(s.Fitness.Coverage)
	}
	title := s.Title
	if title == "" {
		title = d.String()
	}
	h.render(w, r, http.StatusOK, "standard", title, "standards", sd)
}

// The merged view explorer's bounds: rows a page shows, and matching
// rows held to sort (beyond it the page asks for a narrower filter).
const (
	explorerPage    = 50
	explorerMaxSort = 200_000
)

type mergedRow struct {
	Cells  []string
	Source string // the source line's page
	Label  string
}

type mergedData struct {
	ID        string
	Columns   []string
	Shown     []int // column indexes shown (provenance hashes left out)
	Rows      []mergedRow
	Total     int // rows in the view
	Matched   int
	From, To  int
	Prev      string
	Next      string
	Q         string
	Publisher string
	Month     string
	Sort      string
	Desc      bool
	Pubs      []facetValue
	Months    []facetValue
	CSVURL    string
	TooMany   bool
	DateCol   string
}

func (h *Handler) merged(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	v := r.URL.Query()
	std := nii.Ref{Dataset: d}
	s, err := h.b.StandardDetail(r.Context(), std, false)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	m, err := h.b.MergedRows(r.Context(), std)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	md := mergedData{ID: d.String(), Columns: m.Columns, Q: v.Get("q"), Publisher: v.Get("publisher"),
		Month: v.Get("month"), Sort: v.Get("sort"), Desc: v.Get("order") == "desc"}
	col := map[string]int{}
	for i, c := range m.Columns {
		col[c] = i
		if c != "_source_manifest" && c != "_mapping" && c != "_dataset" {
			md.Shown = append(md.Shown, i)
		}
	}
	dateCol := -1
	for _, f := range s.Fields {
		if f.Role == "date" {
			if i, ok := col[f.Name]; ok {
				dateCol, md.DateCol = i, f.Name
				break
			}
		}
	}
	sortCol := -1
	if md.Sort != "" {
		i, ok := col[md.Sort]
		if !ok {
			h.problem(w, r, nii.Errorf(nii.ErrInvalid, "sort %q: not a column of %s", md.Sort, d))
			return
		}
		sortCol = i
	}
	offset, _ := strconv.Atoi(v.Get("offset"))
	offset = max(offset, 0)
	q := strings.ToLower(md.Q)
	pubs, months := map[string]int{}, map[string]int{}
	iPub, iDS, iVer, iLine := col["_publisher"], col["_dataset"], col["_version"], col["_source_line"]
	var kept [][]string
	err = m.Each(func(row []string) error {
		md.Total++
		if md.Publisher != "" && row[iPub] != md.Publisher {
			return nil
		}
		month := ""
		if dateCol >= 0 && len(row[dateCol]) >= 7 {
			month = row[dateCol][:7]
		}
		if md.Month != "" && month != md.Month {
			return nil
		}
		if q != "" && !slices.ContainsFunc(row, func(c string) bool { return strings.Contains(strings.ToLower(c), q) }) {
			return nil
		}
		pubs[row[iPub]]++
		if month != "" {
			months[month]++
		}
		md.Matched++
		switch {
		case sortCol >= 0 && len(kept) < explorerMaxSort:
			kept = append(kept, slices.Clone(row))
		case sortCol >= 0:
			md.TooMany = true
		case md.Matched > offset && len(kept) < explorerPage:
			kept = append(kept, slices.Clone(row))
		}
		return nil
	})
	if err != nil {
		h.problem(w, r, err)
		return
	}
	if sortCol >= 0 && !md.TooMany {
		num := numericColumn(kept, sortCol)
		sort.SliceStable(kept, func(i, j int) bool {
			a, b := kept[i][sortCol], kept[j][sortCol]
			var less, more bool
			if num {
				x, _ := strconv.ParseFloat(a, 64)
				y, _ := strconv.ParseFloat(b, 64)
				less, more = x < y, x > y
			} else {
				less, more = a < b, a > b
			}
			if md.Desc {
				return more
			}
			return less
		})
		kept = kept[min(offset, len(kept)):]
		kept = kept[:min(explorerPage, len(kept))]
	} else if md.TooMany {
		kept = nil
	}
	for _, row := range kept {
		src := "/source/" + row[iDS] + "/" + row[iVer] + "/" + row[iLine]
		md.Rows = append(md.Rows, mergedRow{Cells: row, Source: src, Label: row[iDS] + "@" + row[iVer] + " line " + row[iLine]})
	}
	md.Pubs = facetList(pubs, md.Publisher, "pub")
	md.Months = facetList(months, md.Month, "month")
	sort.Slice(md.Months, func(i, j int) bool { return md.Months[i].Value < md.Months[j].Value })
	if len(md.Rows) > 0 {
		md.From, md.To = offset+1, offset+len(md.Rows)
	}
	at := func(off int) string {
		u := cloneValues(v)
		u.Set("offset", strconv.Itoa(off))
		return "/merged/" + d.String() + "?" + u.Encode()
	}
	if offset > 0 {
		md.Prev = at(max(0, offset-explorerPage))
	}
	if offset+explorerPage < md.Matched && !md.TooMany {
		md.Next = at(offset + explorerPage)
	}
	cv := url.Values{}
	for _, k := range []string{"q", "publisher", "month"} {
		if s := v.Get(k); s != "" {
			cv.Set(k, s)
		}
	}
	md.CSVURL = "/merged/" + d.String() + "/rows.csv"
	if len(cv) > 0 {
		md.CSVURL += "?" + cv.Encode()
	}
	h.render(w, r, http.StatusOK, "merged", "Merged view of "+d.String(), "standards", md)
}

func facetList(m map[string]int, chosen, prefix string) []facetValue {
	var out []facetValue
	for v, c := range m {
		out = append(out, facetValue{Value: v, Count: c, Checked: v == chosen})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Value < out[j].Value
	})
	for i := range out {
		out[i].ID = prefix + "-" + strconv.Itoa(i)
	}
	return out
}

func numericColumn(rows [][]string, c int) bool {
	seen := false
	for _, r := range rows {
		if r[c] == "" {
			continue
		}
		if _, err := strconv.ParseFloat(r[c], 64); err != nil {
			return false
		}
		seen = true
	}
	return seen
}

// mergedCSV streams every row of the view (those the filters keep) as
// CSV: the explorer's "download all N rows".
func (h *Handler) mergedCSV(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	std := nii.Ref{Dataset: d}
	m, err := h.b.MergedRows(r.Context(), std)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	s, err := h.b.StandardDetail(r.Context(), std, false)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	v := r.URL.Query()
	pub, month, q := v.Get("publisher"), v.Get("month"), strings.ToLower(v.Get("q"))
	iPub, dateCol := slices.Index(m.Columns, "_publisher"), -1
	for _, f := range s.Fields {
		if i := slices.Index(m.Columns, f.Name); f.Role == "date" && i >= 0 {
			dateCol = i
			break
		}
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+d.Org+"-"+d.Name+`-merged.csv"`)
	cw := csv.NewWriter(w)
	cw.Write(m.Columns)
	err = m.Each(func(row []string) error {
		if pub != "" && row[iPub] != pub {
			return nil
		}
		if month != "" && (dateCol < 0 || !strings.HasPrefix(row[dateCol], month)) {
			return nil
		}
		if q != "" && !slices.ContainsFunc(row, func(c string) bool { return strings.Contains(strings.ToLower(c), q) }) {
			return nil
		}
		return cw.Write(row)
	})
	cw.Flush()
	if err != nil {
		h.cfg.Log.Warn("merged csv stopped", "dataset", d.String(), nii.LogErr, err.Error())
	}
}

type sourceData struct {
	L     *SourceLine
	Pairs [][2]string
	Std   string
}

func (h *Handler) source(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	ver, err1 := strconv.ParseUint(r.PathValue("version"), 10, 64)
	line, err2 := strconv.ParseInt(r.PathValue("line"), 10, 64)
	if err1 != nil || err2 != nil || ver == 0 {
		h.problem(w, r, nii.Errorf(nii.ErrInvalid, "want /source/ORG/NAME/VERSION/LINE with whole numbers"))
		return
	}
	l, err := h.b.SourceLine(r.Context(), nii.Ref{Dataset: d, Version: ver}, line)
	if err != nil {
		h.problem(w, r, err)
		return
	}
	sd := sourceData{L: l}
	for i, c := range l.Cells {
		name := "column " + strconv.Itoa(i+1)
		if i < len(l.Header) && strings.TrimSpace(l.Header[i]) != "" {
			name = l.Header[i]
		}
		sd.Pairs = append(sd.Pairs, [2]string{name, c})
	}
	h.render(w, r, http.StatusOK, "source", l.Ref.String()+" line "+strconv.FormatInt(line, 10), "standards", sd)
}

type queryData struct {
	SQL    string
	Result *api.QueryResult
	Err    string
	Chart  *svgChart
	Cells  [][]string
}

// maxQueryPage is how many result rows the SQL page shows (the sandbox
// caps what it returns; the page shows at most this many of them).
const maxQueryPage = 500

func (h *Handler) query(w http.ResponseWriter, r *http.Request) {
	qd := queryData{SQL: r.URL.Query().Get("sql")}
	status := http.StatusOK
	if strings.TrimSpace(qd.SQL) != "" {
		res, err := h.b.Query(r.Context(), qd.SQL)
		if err != nil {
			st, body := api.ErrorFor(err)
			qd.Err, status = body.Error, st
		} else {
			qd.Result = res
			for i, row := range res.Rows {
				if i == maxQueryPage {
					break
				}
				cells := make([]string, len(row))
				for j, c := range row {
					cells[j] = cellText(c)
				}
				qd.Cells = append(qd.Cells, cells)
			}
			qd.Chart = chartFor(res)
		}
	}
	h.render(w, r, status, "query", "SQL", "query", qd)
}

func cellText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	}
	b, _ := jsonMarshal(v)
	return string(b)
}

type federationData struct {
	Status  *api.Status
	Peers   []api.PeerInfo
	Follows []followRow
}

// followRow is a followed dataset as the federation page shows it.
type followRow struct {
	api.Follow
	Problem string // the last error in words, "" when there is none
}

// followProblem says in words why a follow is not synced: the state or
// the last error's kind, then what the node does about it; the error's
// own text follows on the page.
func followProblem(f api.Follow) string {
	if f.LastError == "" && f.State != api.FollowWithdrawn {
		return ""
	}
	retry := ""
	if !f.NextAttempt.IsZero() {
		retry = " It tries again at " + f.NextAttempt.UTC().Format("15:04:05 UTC") + "."
	}
	switch f.State {
	case api.FollowWithdrawn:
		return "The publisher withdrew the dataset: there is nothing more to fetch."
	case api.FollowGrantExpired:
		return "The grant this follow uses has expired: follow again with a new grant."
	case api.FollowGrantRevoked:
		return "The grant this follow uses was revoked: follow again with a new grant."
	case api.FollowPublisherChanged:
		return "Another node now publishes this dataset than when it was followed: follow again to accept it."
	}
	switch f.ErrorCode {
	case api.CodeRefused:
		return "A provider refused to serve it: the grant is missing, expired or does not cover this dataset." + retry
	case api.CodeUnavailable:
		return "The new version could not be fetched: no provider could be reached, or the disk is too full to store it." + retry
	case api.CodeNotFound:
		return "No provider holds the version the catalog advertises." + retry
	case api.CodeCorrupt:
		return "A provider sent content that does not match the signed manifest; it was dropped." + retry
	}
	return "The last attempt failed." + retry
}

func (h *Handler) federation(w http.ResponseWriter, r *http.Request) {
	st, err := h.b.Status()
	if err != nil {
		h.problem(w, r, err)
		return
	}
	fs, err := h.b.Follows()
	if err != nil {
		h.problem(w, r, err)
		return
	}
	peers := h.b.PeerList()
	sort.Slice(peers, func(i, j int) bool { return peers[i].Org < peers[j].Org })
	fd := federationData{Status: st, Peers: peers}
	for _, f := range fs {
		fd.Follows = append(fd.Follows, followRow{Follow: f, Problem: followProblem(f)})
	}
	h.render(w, r, http.StatusOK, "federation", "Federation", "federation", fd)
}
