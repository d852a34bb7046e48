package node

import (
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/exchange"
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

func followInfo(f *Follow) *api.Follow {
	return &api.Follow{
		Dataset: f.Dataset, HasGrant: f.Grant != "" || f.HasGrant, Since: f.Since, State: f.State,
		Version: f.Version, Advertised: f.Advertised, LastError: f.LastError, LastSync: f.LastSync,
		NextAttempt: f.NextAttempt, Failures: f.Failures, FetchedBytes: f.FetchedBytes, Publisher: f.Publisher,
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
