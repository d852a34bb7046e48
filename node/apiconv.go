package node

import (
	"sort"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/search"
)

// The one place the node's internals become the local API's types
// (package node/api): one function per type. The API's JSON follows these,
// not the storage structs, so a change to how something is stored is a
// change here, not in what clients see.

func versionInfo(rec *exchange.VersionRecord) api.VersionInfo {
	return api.VersionInfo{
		Ref: rec.Ref.String(), Manifest: rec.Manifest, Publisher: rec.Publisher, Created: rec.Created,
		Size: rec.Size, Chunks: rec.Chunks, Meta: rec.Meta, Stored: rec.Stored, Version: rec.Ref.Version,
	}
}

func storeStats(s exchange.Stats) api.StoreStats {
	return api.StoreStats{Chunks: s.Chunks, ChunkBytes: s.ChunkBytes, Versions: s.Versions, Datasets: s.Datasets}
}

// followInfo is f as the API shows it, with what is still to go counted
// from the store.
func (n *Node) followInfo(f *Follow) *api.Follow {
	return &api.Follow{ToGo: n.followToGo(f), ErrorCode: f.ErrorCode,
		Dataset: f.Dataset, HasGrant: f.Grant != "" || f.HasGrant, Since: f.Since, State: f.State,
		Version: f.Version, Advertised: f.Advertised, LastError: f.LastError, LastSync: f.LastSync,
		NextAttempt: f.NextAttempt, Failures: f.Failures, FetchedBytes: f.FetchedBytes, Publisher: f.Publisher,
		AllowUnverified: f.AllowUnverified,
	}
}

func facetCounts(fs map[string][]search.FacetCount) map[string][]api.FacetCount {
	out := make(map[string][]api.FacetCount, len(fs))
	for k, vs := range fs {
		cs := make([]api.FacetCount, len(vs))
		for i, v := range vs {
			cs[i] = api.FacetCount{Value: v.Value, Count: v.Count}
		}
		out[k] = cs
	}
	return out
}

func peerInfo(p registry.Peer, datasets int) api.PeerInfo {
	return api.PeerInfo{
		ID: p.ID, Org: p.Org, Addrs: p.Addrs, Gossip: p.Gossip, Registry: p.Registry, State: p.State,
		Seq: p.Seq, LastSeen: p.LastSeen, Verified: p.Verified, Datasets: datasets,
	}
}

func jwkInfo(j auth.JWK) api.JWK {
	return api.JWK{Kty: j.Kty, Crv: j.Crv, X: j.X, Kid: j.Kid, Alg: j.Alg, Use: j.Use, Name: j.Name}
}

func trustInfo(a auth.Anchor) api.TrustInfo {
	return api.TrustInfo{KID: a.KID, Name: a.Name, JWK: jwkInfo(auth.PublicJWK(a.Key, a.Name))}
}

func revocationInfo(r auth.Revocation) api.Revocation {
	return api.Revocation{Revokes: r.Revokes, Expires: r.Expires, Token: r.Token}
}

func tokenReport(r auth.Report) api.TokenReport {
	out := api.TokenReport{Type: r.Type, Header: r.Header, Claims: r.Claims, Expires: r.Expires, Valid: r.Valid, Reason: r.Reason, Detail: r.Detail}
	if q := r.Request; q != nil {
		out.Request = &api.CheckedRequest{Dataset: q.Dataset, Action: q.Action, Node: q.Node, Org: q.Org}
	}
	return out
}

func auditRecord(r auth.Record) api.AuditRecord {
	return api.AuditRecord{
		Seq: r.Seq, Time: r.Time, Node: r.Node, Org: r.Org, Dataset: r.Dataset, Action: r.Action,
		Grant: r.Grant, GrantUnverified: r.GrantUnverified, Result: r.Result, Reason: r.Reason, Detail: r.Detail,
	}
}

// Harmonisation's types (api_harmony.go).

func mappingInfo(m *mappingEntry, chosen bool) api.MappingInfo {
	a := m.Advert
	return api.MappingInfo{
		Ref: nii.Ref{Dataset: a.Dataset, Version: a.Version}.String(), Manifest: a.Manifest, Org: a.Dataset.Org,
		Standard: a.Meta.ConformsTo, AppliesTo: a.Meta.AppliesTo, Publisher: a.Origin, Verified: m.Verified,
		Modified: a.Meta.Modified, Chosen: chosen,
	}
}

func standardSource(ps *planSource) api.StandardSource {
	a := ps.entry.Advert
	s := api.StandardSource{Dataset: a.Dataset.String(), Version: a.Version, Manifest: a.Manifest, Access: a.Meta.Access,
		Conforms: ps.conform, Choice: ps.choice, Why: ps.why}
	for i := range ps.candidates {
		c := &ps.candidates[i]
		chosen := ps.mapping != nil && c.Advert.Dataset == ps.mapping.Advert.Dataset
		mi := mappingInfo(c, chosen)
		if chosen {
			s.Mapping = &mi
		}
		s.Mappings = append(s.Mappings, mi)
	}
	return s
}

func sortStandards(s []api.StandardInfo) {
	sort.Slice(s, func(i, j int) bool { return s[i].Ref < s[j].Ref })
}

func standardFields(std *harmony.Standard) []api.StandardField {
	out := make([]api.StandardField, 0, len(std.Fields))
	for _, f := range std.Fields {
		out = append(out, api.StandardField{Name: f.Name, Title: f.Title, Type: f.Type, Format: f.Format, Role: f.Role,
			Required: f.Required, Enum: f.Enum, Description: f.Description})
	}
	return out
}

func ruleCounts(rs []harmony.RuleCount) []api.RuleCount {
	var out []api.RuleCount
	for _, r := range rs {
		out = append(out, api.RuleCount{Rule: r.Rule, Field: r.Field, Rows: r.Rows, Lines: r.Lines, Examples: r.Examples})
	}
	return out
}

func checkReport(r *harmony.Report) api.CheckReport {
	return api.CheckReport{
		HeaderRecord: r.HeaderRecord, HeaderLine: r.HeaderLine, Preamble: r.Preamble, Header: r.Header,
		DataRows: r.DataRows, Accepted: r.Accepted, Rejected: r.Rejected, Blank: r.Blank, Footer: r.Footer,
		Repaired: r.Repaired, Failures: ruleCounts(r.Failures), Warnings: r.Warnings,
	}
}

func missingSources(ms []harmony.MissingSource) []api.MissingSource {
	var out []api.MissingSource
	for _, m := range ms {
		out = append(out, api.MissingSource{Dataset: m.Dataset.String(), Version: m.Version, Reason: m.Reason})
	}
	return out
}

func fitnessInfo(f harmony.Fitness) api.Fitness {
	out := api.Fitness{Sources: []api.SourceFitness{}, Coverage: []api.CoverageCell{}, Missing: missingSources(f.Missing)}
	for _, s := range f.Sources {
		out.Sources = append(out.Sources, api.SourceFitness{Dataset: s.Dataset, Version: s.Version, DataRows: s.DataRows,
			Accepted: s.Accepted, Rejected: s.Rejected, Score: s.Score, TopFailures: ruleCounts(s.TopFailures)})
	}
	for _, c := range f.Coverage {
		out.Coverage = append(out.Coverage, api.CoverageCell{Publisher: c.Publisher, Month: c.Month, Rows: c.Rows,
			Rejected: c.Rejected, Amount: c.Amount.String(), RejectRate: c.RejectRate})
	}
	return out
}

func mergeResult(o *MergeOutcome) *api.MergeResult {
	m := o.Merged
	res := &api.MergeResult{ID: o.ID, Standard: o.Standard.Ref.String(), StandardManifest: o.StandardManifest,
		Columns: []api.MergeColumn{}, Sources: []api.MergeSource{}, Missing: missingSources(o.Missing),
		Remapped: m.Remapped, Took: o.Took.Round(time.Millisecond).String(), Unchanged: o.Unchanged}
	for _, c := range m.Columns {
		res.Columns = append(res.Columns, api.MergeColumn{Name: c.Name, Type: c.Type})
	}
	for _, in := range o.Inputs {
		r := in.Result
		s := api.MergeSource{Dataset: in.Source.Ref.Dataset.String(), Version: in.Source.Ref.Version, Manifest: in.Source.Manifest,
			Choice: in.Choice, Why: in.Why, MappingID: r.Mapping, DataRows: r.Report.DataRows, Accepted: r.Report.Accepted,
			Rejected: r.Report.Rejected, FromCache: r.FromCache}
		if in.Mapping != nil {
			s.Mapping = in.Mapping.Ref.String()
		}
		res.Sources = append(res.Sources, s)
		res.Rows += r.Report.Accepted
		res.Rejected += r.Report.Rejected
	}
	for _, s := range o.Skipped {
		res.Skipped = append(res.Skipped, api.MissingSource{Dataset: s.Dataset.String(), Reason: s.Reason})
	}
	if o.Published != nil {
		v := versionInfo(o.Published)
		res.Published = &v
	}
	return res
}

func watchInfo(w *Watch) api.WatchInfo {
	return api.WatchInfo{Publish: w.Publish.String(), Standard: w.Standard.String(), State: w.State, LastError: w.LastError,
		Version: w.Version, Since: w.Since, LastMerge: w.LastMerge, Sources: w.Sources, Remapped: w.Remapped,
		Missing: w.Missing, Merges: w.Merges, AllowPartial: w.AllowPartial, HasGrants: len(w.Grants) > 0, NextAttempt: w.NextAttempt}
}
