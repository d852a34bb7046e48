package registrytest

import "github.com/nii-uk/nii/registry/search"

// Docs is Corpus(n) as search index documents, keyed origin + " " + dataset.
func Docs(n int) []search.Doc {
	c := Corpus(n)
	docs := make([]search.Doc, len(c))
	for i, d := range c {
		docs[i] = search.Doc{Key: string(d.Advert.Origin) + " " + d.Advert.Dataset.String(), Advert: d.Advert, Verified: d.Verified}
	}
	return docs
}

// Queries is the query mix the search and catalog benchmarks time over the
// corpus (docs/benchmarks.md): common, rare and prefix terms, filters,
// facets only, deep pages.
func Queries() []search.Query {
	yes := true
	return []search.Query{
		{Text: "spend"},                 // common term
		{Text: "parking"},               // single term
		{Text: "air quality"},           // two terms
		{Text: "planning applications"}, // two terms, plural
		{Text: "spen"},                  // prefix
		{Text: "street tre"},            // term + prefix
		{Text: "con"},                   // short, wide prefix
		{Text: "parking", Publisher: []string{"lambeth"}},
		{Text: "trees", Publisher: []string{"hackney", "camden", "islington"}, Licence: []string{"OGL-UK-3.0"}},
		{Theme: []string{"environment"}}, // filter only
		{},                               // empty query, all facets
		{Text: "defibrillator"},          // rare term
		{Text: "spend", Offset: 500},     // deep page
		{Text: "council"},                // very common term
		{Text: "business rates", Format: []string{"csv"}, Sort: "title"},
		{Sort: "modified", Offset: 500}, // deep page, no text
		{Text: "supplier amount"},       // column names
		{Keyword: []string{"transparency"}, Access: []string{"open"}, Verified: &yes},
		{Text: "2023 q1"},                         // numbers
		{Text: "london borough data", Limit: 100}, // three very common terms
	}
}
