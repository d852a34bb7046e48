package node_test

import (
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/nii-uk/nii/registry/registrytest"
)

// BenchmarkPages100k times the catalogue page and dataset pages over the
// 100,000-dataset catalog through the node's HTTP handler (routing,
// search, templates, no network), beside the JSON API that serves the
// same data (the reference):
//
//	page/catalogue   GET /?<query>                 Accept: text/html
//	json/catalog     GET /api/v1/catalog?<query>   (the same query mix as BenchmarkPackageSearch100k)
//	page/dataset     GET /datasets/{org}/{name}    Accept: text/html
//	json/dataset     GET /api/v1/catalog/{org}/{name}
//
// Each reports p50/p99; the whole mix's are logged.
//
//	go test ./node -run XXX -bench Pages100k -benchtime 2s -timeout 30m
func BenchmarkPages100k(b *testing.B) {
	n := bench100kNode(b)
	h := n.APIHandlerForTest()
	get := func(b *testing.B, path string, html bool) time.Duration {
		accept := ""
		if html {
			accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" // a browser's
		}
		return registrytest.TimeGet(b, h, path, accept)
	}
	var datasets []string
	for i, d := range registrytest.Corpus(100_000) {
		if i%9973 == 0 {
			datasets = append(datasets, d.Advert.Dataset.String())
		}
	}
	type variant struct {
		name  string
		html  bool
		paths []string
	}
	var catPages, catJSON, dsPages, dsJSON []string
	for _, q := range ckanBenchQueries {
		v := url.Values{"limit": {"20"}}
		for k, x := range q.catalog {
			v[k] = x
		}
		catPages = append(catPages, "/?"+v.Encode())
		catJSON = append(catJSON, "/api/v1/catalog?"+v.Encode())
	}
	for _, d := range datasets {
		dsPages = append(dsPages, "/datasets/"+d)
		dsJSON = append(dsJSON, "/api/v1/catalog/"+d)
	}
	for _, v := range []variant{
		{"page/catalogue", true, catPages}, {"json/catalog", false, catJSON},
		{"page/dataset", true, dsPages}, {"json/dataset", false, dsJSON},
	} {
		var all []time.Duration
		b.Run(v.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			i := 0
			for b.Loop() {
				lat = append(lat, get(b, v.paths[i%len(v.paths)], v.html))
				i++
			}
			reportLatency(b, lat)
			all = lat
		})
		slices.Sort(all)
		if len(all) > 0 {
			b.Logf("%-15s p50 %7.3f ms  p99 %7.3f ms  (%d requests)", v.name, ms(all[len(all)/2]), ms(all[len(all)*99/100]), len(all))
		}
	}
}
