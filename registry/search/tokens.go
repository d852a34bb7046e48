package search

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/table"
)

// Text analysis: how docs and queries become terms.

// stopWords are dropped from docs and queries. The list is short on
// purpose: "it", "no" or "all" can be meaningful in dataset titles.
var stopWords = map[string]bool{
	"a": true, "an": true, "and": true, "the": true, "of": true, "for": true,
	"in": true, "on": true, "to": true, "by": true, "with": true, "over": true,
	"at": true, "from": true, "or": true, "is": true, "are": true, "as": true,
	"be": true, "this": true, "that": true, "into": true, "per": true,
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }

// tokens calls fn with each lowercased word of s, stop words included.
func tokens(s string, fn func(tok string)) {
	s = strings.ToLower(s) // once, so the words are substrings
	start := -1
	for i, r := range s {
		if isWordRune(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			fn(s[start:i])
			start = -1
		}
	}
	if start >= 0 {
		fn(s[start:])
	}
}

// stem strips a plural "s" from words of more than 3 letters not ending in "ss".
func stem(t string) string {
	if len(t) > 3 && t[len(t)-1] == 's' && t[len(t)-2] != 's' && utf8.RuneCountInString(t) > 3 {
		return t[:len(t)-1]
	}
	return t
}

// analyze returns the index terms of s, in order: lowercased words, stop
// words dropped, plurals stemmed.
func analyze(s string) []string {
	var out []string
	tokens(s, func(t string) {
		if !stopWords[t] {
			out = append(out, stem(t))
		}
	})
	return out
}

type fieldValue struct {
	field     int8
	key, show string
}

type analysis struct {
	terms  map[string]int // term → weighted frequency
	length int            // weighted length
	values []fieldValue
}

func (a *analysis) text(s string, weight int) {
	tokens(s, func(t string) {
		if stopWords[t] {
			return
		}
		a.terms[stem(t)] += weight
		a.length += weight
	})
}

// maxDocValues bounds the field values indexed per doc (Metadata.Validate
// allows 32 keywords, 32 themes and five single values).
const maxDocValues = 1024

func (a *analysis) value(field int8, v string) {
	show := strings.TrimSpace(v)
	if show == "" || len(a.values) >= maxDocValues {
		return
	}
	key := normValue(field, show)
	for _, o := range a.values {
		if o.field == field && o.key == key {
			return
		}
	}
	a.values = append(a.values, fieldValue{field, key, show})
}

func normValue(field int8, v string) string {
	v = strings.TrimSpace(v)
	if field == fFormat && strings.Contains(v, "/") {
		return table.FormatName(v)
	}
	if field == fFormat {
		v = strings.TrimPrefix(v, ".")
	}
	return strings.ToLower(v)
}

func (a *analysis) analyse(ad *nii.Advert) {
	m := &ad.Meta
	a.terms = make(map[string]int, 48)
	a.text(m.Title, wTitle)
	for _, k := range m.Keywords {
		a.text(k, wKeyword)
	}
	for _, t := range m.Themes {
		a.text(t, wTheme)
	}
	a.text(ad.Dataset.Name, wDatasetName)
	if m.Table != nil {
		for _, c := range m.Table.Columns {
			a.text(c.Name, wColumn)
		}
	}
	a.text(m.Description, wDescription)
	pub := m.Publisher
	if pub == "" {
		pub = ad.Dataset.Org
	}
	a.text(pub, wPublisher)
	a.text(m.PublisherName, wPublisher)

	a.value(fPublisher, pub)
	for _, t := range m.Themes {
		a.value(fTheme, t)
	}
	for _, k := range m.Keywords {
		a.value(fKeyword, k)
	}
	a.value(fLicence, m.Licence)
	if m.MediaType != "" {
		a.value(fFormat, table.FormatName(m.MediaType))
	}
	acc := string(m.Access)
	if acc == "" {
		acc = string(nii.AccessOpen)
	}
	a.value(fAccess, acc)
	a.value(fConformsTo, m.ConformsTo)
}
