package node_test

import (
	"crypto/ed25519"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/registrytest"
)

// ckanBenchQuery is one query of the package_search mix, with the same
// query in /api/v1/catalog's terms (the reference).
type ckanBenchQuery struct {
	name    string
	ckan    url.Values
	catalog url.Values
}

// ckanBenchQueries is a realistic package_search mix: free text, fq by
// organization and tags, OR-ed orgs, deep pages, sorts, prefix text.
// Every query asks for rows=20; facet.field is set by the variant.
var ckanBenchQueries = []ckanBenchQuery{
	{"q=spend", url.Values{"q": {"spend"}}, url.Values{"q": {"spend"}}},
	{"q=air-quality", url.Values{"q": {"air quality"}}, url.Values{"q": {"air quality"}}},
	{"q=spen-prefix", url.Values{"q": {"spen"}}, url.Values{"q": {"spen"}}},
	{"q=parking,fq=org", url.Values{"q": {"parking"}, "fq": {"organization:lambeth"}},
		url.Values{"q": {"parking"}, "publisher": {"lambeth"}}},
	{"q=trees,fq=3orgs+licence", url.Values{"q": {"trees"}, "fq": {"organization:(hackney OR camden OR islington) license_id:OGL-UK-3.0"}},
		url.Values{"q": {"trees"}, "publisher": {"hackney", "camden", "islington"}, "licence": {"OGL-UK-3.0"}}},
	{"fq=tags,start=40", url.Values{"fq": {"tags:transparency"}, "start": {"40"}},
		url.Values{"keyword": {"transparency"}, "offset": {"40"}}},
	{"all,newest", url.Values{"sort": {"metadata_modified desc"}}, url.Values{"sort": {"modified"}}},
	{"q=council,start=500", url.Values{"q": {"council"}, "start": {"500"}}, url.Values{"q": {"council"}, "offset": {"500"}}},
	{"fq=groups+format,title", url.Values{"fq": {"groups:environment res_format:CSV"}, "sort": {"title_string asc"}},
		url.Values{"theme": {"environment"}, "format": {"csv"}, "sort": {"title"}}},
	{"q=business-rates,fq=org", url.Values{"q": {"business rates"}, "fq": {"organization:camden"}},
		url.Values{"q": {"business rates"}, "publisher": {"camden"}}},
}

// bench100kNode starts one node (no peers, no rate limit) and applies
// registrytest's 100,000-dataset catalog to it, signed by one key per
// borough, as BenchmarkCatalog100k builds it.
func bench100kNode(b *testing.B) *node.Node {
	b.Helper()
	cfg := nodetest.Config(b.TempDir(), "registry", nodetest.Options{Federation: "london"})
	cfg.RegistryOnly = true
	cfg.HTTP.Rate = 0
	n := nodetest.Start(b, cfg)
	cat := n.CatalogForTest()
	type ident struct {
		id  nii.NodeID
		key ed25519.PrivateKey
	}
	origins := map[string]ident{}
	seqs := map[nii.NodeID]uint64{}
	start := time.Now()
	for _, d := range registrytest.Corpus(100_000) {
		a := *d.Advert
		org := a.Meta.Publisher
		id, ok := origins[org]
		if !ok {
			pub, priv, _ := ed25519.GenerateKey(nil)
			id = ident{nii.NodeIDFromPublicKey(pub), priv}
			origins[org] = id
			// A member, as gossip would have shown it: the catalog takes
			// records of members only.
			n.Peers().Update(registry.Peer{ID: id.id, Org: org, State: registry.PeerDead})
		}
		seqs[id.id]++
		a.Origin, a.Seq = id.id, seqs[id.id]
		a.Manifest = nii.HashOf([]byte(a.Dataset.String()))
		a.Meta.Issued = a.Meta.Modified
		a.Signed = a.Meta.Modified
		sa, err := nii.SignAdvert(&a, id.key)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := cat.Apply(sa); err != nil {
			b.Fatal(err)
		}
	}
	if cat.Len() != 100_000 {
		b.Fatalf("catalog holds %d datasets, want 100000", cat.Len())
	}
	b.Logf("catalog of 100,000 signed adverts applied in %.1f s", time.Since(start).Seconds())
	return n
}

// BenchmarkPackageSearch100k drives CKAN's package_search through the
// node's HTTP handler (routing, search, translation, JSON encoding; no
// network) over a 100,000-dataset catalog, query by query, beside the same
// queries on nii's own /api/v1/catalog. Variants:
//
//	ckan             package_search without facet.field
//	ckan+facet=org   facet.field=["organization"] (display names for the org facet)
//	ckan+facet=tags  facet.field=["tags"]
//	catalog          GET /api/v1/catalog (the reference; it always returns its facets)
//
// and package_list and organization_list, which walk the whole catalog.
// Each reports p50/p99 latency.
//
//	go test ./node -run XXX -bench PackageSearch100k -benchtime 2s -timeout 30m
func BenchmarkPackageSearch100k(b *testing.B) {
	n := bench100kNode(b)
	h := n.APIHandlerForTest()
	get := func(b *testing.B, path string) time.Duration { return registrytest.TimeGet(b, h, path, "") }
	variants := []struct {
		name string
		path func(q ckanBenchQuery) string
	}{
		{"ckan", func(q ckanBenchQuery) string { return ckanPath(q.ckan, "") }},
		{"ckan+facet=org", func(q ckanBenchQuery) string { return ckanPath(q.ckan, `["organization"]`) }},
		{"ckan+facet=tags", func(q ckanBenchQuery) string { return ckanPath(q.ckan, `["tags"]`) }},
		{"catalog", func(q ckanBenchQuery) string {
			v := url.Values{"limit": {"20"}}
			for k, x := range q.catalog {
				v[k] = x
			}
			return "/api/v1/catalog?" + v.Encode()
		}},
	}
	summary := map[string][]time.Duration{}
	for _, v := range variants {
		for _, q := range ckanBenchQueries {
			path := v.path(q)
			b.Run(v.name+"/"+q.name, func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				for b.Loop() {
					lat = append(lat, get(b, path))
				}
				reportLatency(b, lat)
				summary[v.name] = append(summary[v.name], lat...)
			})
		}
	}
	for _, path := range []string{"/api/3/action/package_list", "/api/3/action/organization_list?all_fields=true"} {
		name, _, _ := strings.Cut(strings.TrimPrefix(path, "/api/3/action/"), "?")
		b.Run(name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				lat = append(lat, get(b, path))
			}
			reportLatency(b, lat)
		})
	}
	for _, v := range variants {
		lat := summary[v.name]
		slices.Sort(lat)
		if len(lat) > 0 {
			b.Logf("%-16s whole mix: p50 %7.2f ms  p99 %7.2f ms  (%d requests)", v.name,
				ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), len(lat))
		}
	}
}

func ckanPath(params url.Values, facets string) string {
	v := url.Values{"rows": {"20"}}
	for k, x := range params {
		v[k] = x
	}
	if facets != "" {
		v.Set("facet.field", facets)
	}
	return "/api/3/action/package_search?" + v.Encode()
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	b.ReportMetric(ms(s[len(s)/2]), "p50-ms")
	b.ReportMetric(ms(s[len(s)*99/100]), "p99-ms")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
