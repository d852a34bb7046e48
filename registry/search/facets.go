package search

import (
	"slices"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"
)

// FacetCount is how many matching docs have one facet value.
type FacetCount struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// Facetable fields. The first six are reported as facets.
const (
	fPublisher = iota
	fTheme
	fKeyword
	fLicence
	fFormat
	fAccess
	fConformsTo
	nFields
	nFacets = fConformsTo
)

var facetNames = [nFacets]string{"publisher", "theme", "keyword", "licence", "format", "access"}

// facetScanPerBlock chooses how facets are counted. Roaring keeps each
// block of 65536 doc IDs as a sorted array of up to 4096 IDs, or as a
// bitmap above that. Against a bitmap, AndCardinality with a value's
// posting list costs about the value's size, so counting every value
// costs about the index's total value postings whatever the match size;
// against an array it is a merge costing match + value per value, which is
// slow. So small match sets (about array-sized) are counted by scanning
// the matching docs' values instead, costing matches × values per doc.
// A var so tests can force either way.
var facetScanPerBlock = 4096

func (ix *Index) facets(match *roaring.Bitmap, all bool, out map[string][]FacetCount) {
	card := match.GetCardinality()
	var counts [nFacets][]FacetCount
	blocks := (len(ix.slots) + 1<<16 - 1) >> 16
	if !all && card <= uint64(facetScanPerBlock)*uint64(blocks) {
		per := make([]int32, len(ix.vals))
		var buf [256]uint32
		it := match.ManyIterator()
		for k := it.NextMany(buf[:]); k > 0; k = it.NextMany(buf[:]) {
			for _, id := range buf[:k] {
				for _, vid := range ix.valIDs.get(id) {
					per[vid]++
				}
			}
		}
		for vid, c := range per {
			if v := &ix.vals[vid]; c > 0 && v.field < nFacets {
				counts[v.field] = append(counts[v.field], FacetCount{v.show, int(c)})
			}
		}
	} else {
		for f := range nFacets {
			c := make([]FacetCount, 0, len(ix.fields[f]))
			for _, vid := range ix.fields[f] {
				v := &ix.vals[vid]
				var k uint64
				if all {
					k = v.bm.GetCardinality()
				} else {
					k = match.AndCardinality(v.bm)
				}
				if k > 0 {
					c = append(c, FacetCount{v.show, int(k)})
				}
			}
			counts[f] = c
		}
	}
	for f, c := range counts {
		slices.SortFunc(c, func(a, b FacetCount) int {
			if a.Count != b.Count {
				return b.Count - a.Count
			}
			return strings.Compare(a.Value, b.Value)
		})
		if len(c) > maxFacetVals {
			c = slices.Clip(c[:maxFacetVals])
		}
		if c == nil {
			c = []FacetCount{}
		}
		out[facetNames[f]] = c
	}
}
