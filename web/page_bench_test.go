package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/registry/registrytest"
	"github.com/nii-uk/nii/web"
)

// pageStub is just enough of a Backend for the dataset page: one catalog
// record, and no provider online for a preview.
type pageStub struct {
	web.Backend
	cd *api.CatalogDataset
}

func (s pageStub) LookupDataset(nii.DatasetID) (*api.CatalogDataset, error) { return s.cd, nil }
func (s pageStub) Standardised(nii.DatasetID) ([]api.Standardised, error)   { return nil, nil }
func (s pageStub) Head(context.Context, nii.Ref, int64) ([]byte, error) {
	return nil, nii.Errorf(nii.ErrUnavailable, "no provider is online now")
}

// BenchmarkDatasetPageRender is the dataset page's own cost (routing,
// template, headers) over a stub backend, without a node:
//
//	go test ./web -run XXX -bench DatasetPageRender -benchtime 3000x -count 3
func BenchmarkDatasetPageRender(b *testing.B) {
	d := registrytest.Corpus(1)[0].Advert
	cd := &api.CatalogDataset{ID: d.Dataset.String(), Version: d.Version, Manifest: d.Manifest, Meta: d.Meta,
		Providers: []api.Provider{{Node: "12D3KooWtest", Org: d.Dataset.Org}}}
	h, err := web.New(pageStub{cd: cd}, web.Config{Org: "registry", Federation: "london"})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/datasets/"+d.Dataset.String(), nil)
	req.Header.Set("Accept", "text/html")
	// cold: each request's data differs (a new version), so every page
	// is rendered; warm: the same page again, from the page cache.
	for _, cold := range []bool{true, false} {
		name := map[bool]string{true: "cold", false: "warm"}[cold]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if cold {
					cd.Version++
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code, w.Body.String())
				}
			}
		})
	}
}
