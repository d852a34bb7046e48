package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/registry"
)

// Standards, mappings, merges and lineage over the API:
//
//	GET    /api/v1/standards
//	GET    /api/v1/standards/{org}/{name}?version=N        fields, sources; fitness (a merge) with the admin token
//	POST   /api/v1/map/suggest                              admin; {"ref", "standard", "grant"}
//	POST   /api/v1/map/check                                admin; {"ref", "mapping", "grant"}
//	POST   /api/v1/mappings                                 admin; {"dataset", "mapping", "name", "title"}
//	POST   /api/v1/merge                                    admin; NDJSON heartbeats, then the result
//	GET    /api/v1/merges/{id}/table?format=csv|ndjson|parquet&bom=true   admin
//	GET    /api/v1/merges/{id}/rejects                      admin
//	GET    /api/v1/watches
//	POST   /api/v1/watches                                  admin
//	DELETE /api/v1/watches/{org}/{name}                     admin
//	GET    /api/v1/datasets/{org}/{name}/versions/{version}/lineage

func (n *Node) harmonyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/standards", n.handleStandards)
	mux.HandleFunc("GET /api/v1/standards/{org}/{name}", n.handleStandard)
	mux.HandleFunc("POST /api/v1/map/suggest", n.admin(jsonCall(64<<10, http.StatusOK, n.SuggestMapping)))
	mux.HandleFunc("POST /api/v1/map/check", n.admin(jsonCall(harmony.MaxMappingSize+64<<10, http.StatusOK, n.CheckMapping)))
	mux.HandleFunc("POST /api/v1/mappings", n.admin(jsonCall(harmony.MaxMappingSize+64<<10, http.StatusCreated, n.PublishMapping)))
	mux.HandleFunc("POST /api/v1/merge", n.admin(n.handleMerge))
	mux.HandleFunc("GET /api/v1/merges/{id}/table", n.admin(n.handleMergeTable))
	mux.HandleFunc("GET /api/v1/merges/{id}/rejects", n.admin(n.handleMergeRejects))
	mux.HandleFunc("GET /api/v1/watches", n.handleWatches)
	mux.HandleFunc("POST /api/v1/watches", n.admin(n.handleWatch))
	mux.HandleFunc("DELETE /api/v1/watches/{org}/{name}", n.admin(n.handleUnwatch))
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/versions/{version}/lineage", n.handleLineage)
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/standardised", n.handleStandardisedList)
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/standardised/{sorg}/{sname}", n.handleStandardised)
}

func decodeBody(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, max)).Decode(v); err != nil {
		return fmt.Errorf("%w request body: %v", nii.ErrInvalid, err)
	}
	return nil
}

// jsonCall is the handler of a route that decodes a JSON body of at most
// max bytes, calls fn with it and answers fn's result with status code.
func jsonCall[Req, Resp any](max int64, code int, fn func(context.Context, Req) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body Req
		if err := decodeBody(w, r, max, &body); err != nil {
			writeErr(w, err)
			return
		}
		out, err := fn(r.Context(), body)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, code, out)
	}
}

func (n *Node) handleStandards(w http.ResponseWriter, r *http.Request) {
	out, err := n.Standards()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// Standards lists the standards in the federated catalog, each with the
// datasets that conform to it or have a mapping to it and the mapping this
// node applies to each — from the catalog alone.
func (n *Node) Standards() ([]api.StandardInfo, error) {
	var stds []api.StandardInfo
	var ents []nii.DatasetID
	n.catalog.EachLiveKind(nii.KindStandard, func(e registry.Entry) {
		ents = append(ents, e.Advert.Dataset)
	})
	watches, err := n.Watches()
	if err != nil {
		return nil, err
	}
	for _, d := range ents {
		info, err := n.standardInfo(d)
		if err != nil {
			continue // withdrawn or ambiguous since
		}
		info.Watches = watchesOf(watches, d)
		stds = append(stds, *info)
	}
	sortStandards(stds)
	if stds == nil {
		stds = []api.StandardInfo{}
	}
	return stds, nil
}

func watchesOf(ws []Watch, std nii.DatasetID) []api.WatchInfo {
	var out []api.WatchInfo
	for i := range ws {
		if ws[i].Standard.Dataset == std {
			out = append(out, watchInfo(&ws[i]))
		}
	}
	return out
}

// standardInfo describes standard d as the catalog has it.
func (n *Node) standardInfo(d nii.DatasetID) (*api.StandardInfo, error) {
	e, err := n.standardEntry(d)
	if err != nil {
		return nil, err
	}
	a := e.Advert
	ref := nii.Ref{Dataset: d, Version: a.Version}
	info := &api.StandardInfo{Ref: ref.String(), Manifest: a.Manifest, Title: a.Meta.Title, Publisher: a.Origin, Verified: e.Verified,
		Sources: []api.StandardSource{}}
	seen := map[nii.DatasetID]bool{}
	for _, ps := range n.plan(ref) {
		s := standardSource(ps)
		for _, c := range ps.candidates {
			seen[c.Advert.Dataset] = true
		}
		info.Sources = append(info.Sources, s)
	}
	info.Mappings = len(seen)
	return info, nil
}

func (n *Node) handleStandard(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	ref := nii.Ref{Dataset: d}
	if v := r.URL.Query().Get("version"); v != "" {
		if ref, err = nii.ParseRef(d.String() + "@" + v); err != nil {
			writeErr(w, err)
			return
		}
	}
	out, err := n.StandardDetail(r.Context(), ref, n.hasAdminToken(r))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// StandardDetail describes a standard: its fields (the standard is pulled
// if this node does not hold it), the datasets that conform and the
// mapping applied to each, and — if merge is set and this node holds data
// — its fitness from a merge run now (partial: sources that cannot be read
// are listed as missing; cached partitions make a repeat cheap).
func (n *Node) StandardDetail(ctx context.Context, ref nii.Ref, merge bool) (*api.StandardDetail, error) {
	info, err := n.standardInfo(ref.Dataset)
	if err != nil {
		return nil, err
	}
	ws, err := n.Watches()
	if err != nil {
		return nil, err
	}
	info.Watches = watchesOf(ws, ref.Dataset)
	out := &api.StandardDetail{StandardInfo: *info}
	var std *harmony.Standard
	if n.cfg.RegistryOnly {
		// A registry holds no data: the fields are read only if a
		// standard's bytes are here, which they are not.
		out.FitnessNote = "a registry-only node holds no data: ask a node that does for the fields and fitness"
		out.Fields = []api.StandardField{}
		return out, nil
	}
	ls, err := n.loadStandard(ctx, ref)
	if err != nil {
		return nil, err
	}
	std = ls.std
	out.Ref, out.Manifest = std.Ref.String(), ls.manifest
	out.Name, out.Description = std.Name, std.Description
	if std.Title != "" {
		out.Title = std.Title
	}
	out.Fields = standardFields(std)
	if !merge {
		out.FitnessNote = "the fitness comes from a merge: ask with the admin token (the nii CLI sends it)"
		return out, nil
	}
	mo, err := n.Merge(ctx, std.Ref, MergeOptions{AllowPartial: true})
	if err != nil {
		if errors.Is(err, nii.ErrNotFound) {
			out.FitnessNote = err.Error()
			return out, nil
		}
		return nil, err
	}
	fit := fitnessInfo(mo.Merged.Fitness())
	out.Fitness = &fit
	return out, nil
}

// SuggestMapping proposes a mapping of a dataset version (pulled if this
// node does not hold it) to a standard.
func (n *Node) SuggestMapping(ctx context.Context, req api.SuggestRequest) (*api.Suggestion, error) {
	ref, err := nii.ParseRef(req.Ref)
	if err != nil {
		return nil, err
	}
	stdRef, err := nii.ParseRef(req.Standard)
	if err != nil {
		return nil, fmt.Errorf("standard: %w", err)
	}
	ls, err := n.loadStandard(ctx, stdRef)
	if err != nil {
		return nil, err
	}
	rec, err := n.holdVersion(ctx, ref, req.Grant)
	if err != nil {
		return nil, err
	}
	rc, err := n.openVersion(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	opts := harmony.SuggestOptions{Dataset: rec.Ref.Dataset}
	if name := rec.Meta.PublisherName; name != "" && ls.std.Field("body_name") != nil {
		opts.Defaults = map[string]string{"body_name": name}
	}
	sug, err := harmony.Suggest(rc, ls.std, opts)
	if err != nil {
		return nil, fmt.Errorf("suggest a mapping of %s: %w", rec.Ref, err)
	}
	out := &api.Suggestion{Ref: rec.Ref.String(), Standard: ls.std.Ref.String(), TOML: string(sug.TOML),
		Unmapped: nonNil(sug.Unmapped), Unused: nonNil(sug.Unused), Fields: []api.FieldSuggestion{}}
	for _, f := range sug.Fields {
		out.Fields = append(out.Fields, api.FieldSuggestion{Field: f.Field, Column: f.Column, Const: f.Const, Score: f.Score, Coercion: f.Coercion})
	}
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// CheckMapping applies a mapping to a dataset version (pulled if not held)
// and reports rows accepted and rejected. It publishes nothing.
func (n *Node) CheckMapping(ctx context.Context, req api.CheckRequest) (*api.CheckReport, error) {
	ref, err := nii.ParseRef(req.Ref)
	if err != nil {
		return nil, err
	}
	m, err := harmony.ParseMapping([]byte(req.Mapping))
	if err != nil {
		return nil, err
	}
	ls, err := n.loadStandard(ctx, m.Standard)
	if err != nil {
		return nil, fmt.Errorf("the mapping's standard: %w", err)
	}
	rec, err := n.holdVersion(ctx, ref, req.Grant)
	if err != nil {
		return nil, err
	}
	return n.checkVersion(ctx, rec, ls.std, m)
}

func (n *Node) checkVersion(ctx context.Context, rec *exchange.VersionRecord, std *harmony.Standard, m *harmony.Mapping) (*api.CheckReport, error) {
	if !m.AppliesToDataset(rec.Ref.Dataset) {
		return nil, fmt.Errorf("%w mapping: it applies to %s, not to %s: add the dataset to applies_to", nii.ErrInvalid, strings.Join(m.AppliesTo, ", "), rec.Ref.Dataset)
	}
	rc, err := n.openVersion(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	rep, err := harmony.Check(ctx, rc, std, m)
	if err != nil {
		return nil, fmt.Errorf("check the mapping against %s: %w", rec.Ref, err)
	}
	out := checkReport(rep)
	out.Ref, out.Mapping, out.Standard = rec.Ref.String(), m.Hash, std.Ref.String()
	return &out, nil
}

// PublishMapping publishes a mapping as a signed dataset of this node's
// org (named MappingName unless req.Name says otherwise), after checking
// that it parses, names a standard the catalog lists, fits it, applies to
// req.Dataset, and — when this node can read the dataset's newest version
// — that every column it names is in the file. A mapping that names a
// column the file lacks is refused with the file's headers and the nearest
// match.
func (n *Node) PublishMapping(ctx context.Context, req api.MappingPublishRequest) (*api.MappingPublished, error) {
	if n.cfg.RegistryOnly {
		return nil, ErrRegistryOnly
	}
	d, err := nii.ParseDatasetID(req.Dataset)
	if err != nil {
		return nil, err
	}
	m, err := harmony.ParseMapping([]byte(req.Mapping))
	if err != nil {
		return nil, err
	}
	if !m.AppliesToDataset(d) {
		return nil, fmt.Errorf("%w mapping: its applies_to (%s) does not name %s: add it, or publish the mapping for a dataset it names", nii.ErrInvalid, strings.Join(m.AppliesTo, ", "), d)
	}
	ls, err := n.loadStandard(ctx, m.Standard)
	if err != nil {
		return nil, fmt.Errorf("the mapping's standard: %w", err)
	}
	if m.Standard.Version == 0 {
		return nil, fmt.Errorf("%w mapping: standard = %q names no version; a mapping is for one version of a standard (e.g. %q)", nii.ErrInvalid, m.Standard, ls.std.Ref)
	}
	if err := m.Bind(ls.std); err != nil {
		return nil, err
	}
	out := &api.MappingPublished{}
	if rec, err := n.holdVersion(ctx, nii.Ref{Dataset: d}, ""); err == nil {
		rep, err := n.checkVersion(ctx, rec, ls.std, m)
		if err != nil {
			return nil, err
		}
		out.Check = rep
	} else {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		out.CheckNote = fmt.Sprintf("not checked against %s: %v", d, err)
	}
	name := req.Name
	if name == "" {
		name = MappingName(n.cfg.Org, d, m.Standard.Dataset)
	}
	title := req.Title
	if title == "" {
		title = m.Title
	}
	if title == "" {
		title = fmt.Sprintf("Mapping of %s to %s", d, m.Standard)
	}
	rec, err := n.Publish(ctx, bytes.NewReader([]byte(req.Mapping)), PublishRequest{
		Name: name, Filename: name + ".toml",
		Meta: nii.Metadata{Title: title, Description: m.Description, Kind: nii.KindMapping, MediaType: "application/toml", Licence: req.Licence},
	})
	if err != nil {
		return nil, err
	}
	out.Version = versionInfo(rec)
	return out, nil
}

func (n *Node) handleMerge(w http.ResponseWriter, r *http.Request) {
	var body api.MergeRequest
	if err := decodeBody(w, r, 1<<20, &body); err != nil {
		writeErr(w, err)
		return
	}
	std, err := nii.ParseRef(body.Standard)
	if err != nil {
		writeErr(w, fmt.Errorf("standard: %w", err))
		return
	}
	if body.Watch && body.Publish == "" {
		writeErr(w, fmt.Errorf("%w: a watch keeps a published merge current: give publish too", nii.ErrInvalid))
		return
	}
	if body.Publish != "" {
		if d, err := nii.ParseDatasetID(body.Publish); err == nil {
			if d.Org != n.cfg.Org {
				writeErr(w, fmt.Errorf("%w: this node publishes for org %q, not %q", nii.ErrInvalid, n.cfg.Org, d.Org))
				return
			}
			body.Publish = d.Name
		} else if err := nii.CheckSlug("dataset name", body.Publish); err != nil {
			writeErr(w, err)
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	emit := func(ev api.MergeEvent) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(ev)
		if flusher != nil {
			flusher.Flush()
		}
	}
	stop := heartbeat(func() { emit(api.MergeEvent{}) })
	res, err := n.mergeRequest(r.Context(), std, body)
	stop()
	if err != nil {
		_, e := api.ErrorFor(err)
		emit(api.MergeEvent{Error: &e})
		return
	}
	emit(api.MergeEvent{Result: res})
}

// heartbeat calls beat every half api.PullHeartbeat until the returned
// function is called (which waits for it to stop).
func heartbeat(beat func()) func() {
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(api.PullHeartbeat / 2)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				beat()
			}
		}
	}()
	return func() { close(stop); <-stopped }
}

func (n *Node) mergeRequest(ctx context.Context, std nii.Ref, body api.MergeRequest) (*api.MergeResult, error) {
	out, err := n.Merge(ctx, std, MergeOptions{AllowPartial: body.AllowPartial, Grants: body.Grants})
	if err != nil {
		return nil, err
	}
	if body.Publish != "" {
		if _, err := n.PublishMerged(ctx, out, body.Publish, body.Title); err != nil {
			return nil, err
		}
	}
	res := mergeResult(out)
	if body.Watch {
		wt, err := n.StartWatch(WatchRequest{Standard: std, Name: body.Publish, Title: body.Title, AllowPartial: body.AllowPartial, Grants: body.Grants})
		if err != nil {
			return nil, err
		}
		if out.Published != nil {
			// The merge just made is the watch's first: it need not run again.
			digest, derr := n.inputsDigest(wt)
			if derr == nil {
				wt.State, wt.Inputs, wt.Version, wt.LastMerge = WatchCurrent, digest, out.Published.Ref.Version, time.Now().UTC()
				wt.Sources, wt.Remapped, wt.Missing, wt.Merges = len(out.Inputs), out.Merged.Remapped, len(out.Missing), wt.Merges+1
				n.updateWatch(wt)
			}
		}
		wi := watchInfo(wt)
		res.Watch = &wi
	}
	return res, nil
}

func (n *Node) handleMergeTable(w http.ResponseWriter, r *http.Request) {
	out, err := n.MergeResult(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" {
		format = api.FormatCSV
	}
	bom, _ := strconv.ParseBool(r.URL.Query().Get("bom"))
	var write func() error
	var ctype string
	switch format {
	case api.FormatCSV:
		ctype = "text/csv; charset=utf-8"
		write = func() error { return out.Merged.WriteCSV(w, harmony.CSVOptions{BOM: bom}) }
	case api.FormatNDJSON:
		ctype = "application/x-ndjson"
		write = func() error { return out.Merged.WriteNDJSON(w) }
	case api.FormatParquet:
		ctype = "application/vnd.apache.parquet"
		write = func() error { return out.Merged.WriteParquet(w) }
	default:
		writeErr(w, fmt.Errorf("%w format %q: want csv, ndjson or parquet", nii.ErrInvalid, format))
		return
	}
	n.streamMerge(w, ctype, write)
}

func (n *Node) handleMergeRejects(w http.ResponseWriter, r *http.Request) {
	out, err := n.MergeResult(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	bom, _ := strconv.ParseBool(r.URL.Query().Get("bom"))
	n.streamMerge(w, "text/csv; charset=utf-8", func() error { return out.Merged.WriteRejectsCSV(w, harmony.CSVOptions{BOM: bom}) })
}

// streamMerge writes a merged table with an error trailer, as content
// responses do.
func (n *Node) streamMerge(w http.ResponseWriter, ctype string, write func() error) {
	h := w.Header()
	h.Set("Trailer", TrailerError)
	h.Set("Content-Type", ctype)
	w.WriteHeader(http.StatusOK)
	if err := write(); err != nil {
		n.log.Error("merged table output failed", slog.String(nii.LogErr, err.Error()))
		h.Set(TrailerError, err.Error())
	}
}

func (n *Node) handleWatches(w http.ResponseWriter, r *http.Request) {
	ws, err := n.Watches()
	if err != nil {
		writeErr(w, err)
		return
	}
	out := []api.WatchInfo{}
	for i := range ws {
		out = append(out, watchInfo(&ws[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleWatch(w http.ResponseWriter, r *http.Request) {
	var body api.WatchRequest
	if err := decodeBody(w, r, 1<<20, &body); err != nil {
		writeErr(w, err)
		return
	}
	std, err := nii.ParseRef(body.Standard)
	if err != nil {
		writeErr(w, fmt.Errorf("standard: %w", err))
		return
	}
	name := body.Publish
	if d, err := nii.ParseDatasetID(name); err == nil {
		if d.Org != n.cfg.Org {
			writeErr(w, fmt.Errorf("%w: this node publishes for org %q, not %q", nii.ErrInvalid, n.cfg.Org, d.Org))
			return
		}
		name = d.Name
	}
	wt, err := n.StartWatch(WatchRequest{Standard: std, Name: name, Title: body.Title, AllowPartial: body.AllowPartial, Grants: body.Grants})
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, watchInfo(wt))
}

func (n *Node) handleUnwatch(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	stopped, err := n.StopWatch(d)
	if err != nil {
		writeErr(w, err)
		return
	}
	out := api.UnwatchResult{Stopped: []string{}}
	for _, s := range stopped {
		out.Stopped = append(out.Stopped, s.String())
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleLineage(w http.ResponseWriter, r *http.Request) {
	ref, err := refFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	rep, err := n.CheckLineage(r.Context(), ref)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
