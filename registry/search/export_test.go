package search

import "github.com/RoaringBitmap/roaring/v2"

// Hooks for the search_test package's benchmarks, which use registrytest's
// corpus (registrytest imports this package, so they cannot be in it).

// SetFacetScanPerBlock sets facetScanPerBlock and returns its old value.
func SetFacetScanPerBlock(n int) int {
	old := facetScanPerBlock
	facetScanPerBlock = n
	return old
}

// CountFacets counts facets over match, a subset of the docs, as Search
// does.
func (ix *Index) CountFacets(match *roaring.Bitmap, out map[string][]FacetCount) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ix.facets(match, false, out)
}
