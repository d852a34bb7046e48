// Package search is the catalog's full-text and faceted search: an
// in-memory index of the newest advert of every dataset from every origin.
//
// Every doc gets a dense uint32 ID (freed IDs are reused). Every text term
// and every field value (publisher, theme, keyword, licence, format,
// access, conforms-to) has a posting list: a roaring bitmap of doc IDs.
// A term's list also carries each doc's weighted term frequency, one byte
// per doc in bitmap rank order, so a (doc, term) pair costs about 3 bytes
// plus the 4 the doc keeps to find its terms again; a term in a single doc
// (most of a real vocabulary) is stored without a bitmap.
//
// A search ANDs the bitmaps it needs (each query term's, with the last
// term's prefix expansions ORed in, and each filter field's values ORed),
// counts facets over the match set (AndCardinality against each value's
// bitmap, or for small match sets a scan of the matching docs' values),
// and ranks the match set with BM25 over field-weighted frequencies,
// keeping only the best Offset+Limit in a bounded heap.
//
// Each doc records the posting lists it is in, so Delete and a replacing
// Put take it out of exactly those.
//
// The files follow the concerns: query.go parses a [Query] and runs it,
// index.go keeps the posting lists ([Index.Put], [Index.Delete]), tokens.go
// turns text into terms, score.go ranks (BM25) and facets.go counts facets.
// Format names come from package table, the one place that knows them.
//
// Why nii has its own index rather than bleve: docs/registry.md, with the
// figures.
package search
