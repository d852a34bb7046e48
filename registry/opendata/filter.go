package opendata

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nii-uk/nii/registry/search"
)

// The CKAN/Solr filter subset nii understands, in fq and as field clauses
// in q:
//
//	filter  = clause { space [ "AND" space ] clause }
//	clause  = [ "+" ] field ":" value  |  "*:*"
//	value   = word | '"' phrase '"' | "(" value { space "OR" space value } ")"
//
// Clauses are ANDed (Solr's default operator in CKAN's schema); values
// inside parentheses are ORed, and so are clauses of one field joined by
// OR ("organization:a OR organization:b", as ckanext-harvest writes an
// organization filter). A backslash escapes the next character of a word
// or phrase, as in Solr. Fields: organization (owner_org), tags, groups,
// res_format, license_id, plus nii's access, conforms_to and verified;
// private and capacity select restricted (private) or open (public)
// datasets; dataset_type:dataset and state:active hold for every nii
// dataset. Two more forms, for harvesters: a negated organization or
// groups clause excludes those values ("-organization:x"), and
// metadata_modified (or metadata_created) takes a range of ISO 8601 UTC
// times, either end "*" ("metadata_modified:[2026-01-01T00:00:00Z TO *]").
// Anything else — other negations, NOT, OR between different fields,
// other ranges, Solr date maths, wildcards in values, a field ANDed with
// itself — is refused with an error that says so: the catalog index
// cannot answer it, and a silently wrong answer is worse than none.

// Filter limits.
const (
	MaxFilterLen     = 4096 // bytes of fq or q
	maxFilterClauses = 32
	maxFilterValues  = 32 // values of one field
)

// Filter is a parsed fq: field values to OR within a field, fields ANDed.
type Filter struct {
	Publisher, Theme, Keyword, Licence, Format, Access, ConformsTo []string
	Verified                                                       *bool
	// NotPublisher and NotTheme exclude (negated clauses).
	NotPublisher, NotTheme []string
	// ModifiedFrom and ModifiedTo bound metadata_modified (zero: open).
	ModifiedFrom, ModifiedTo time.Time
	// None is set when a clause can match no nii dataset (e.g.
	// dataset_type:harvest, private:true).
	None bool
}

// FilterError says what is wrong with a filter expression.
type FilterError struct {
	Pos int // byte offset in the input
	Msg string
}

func (e *FilterError) Error() string { return fmt.Sprintf("at %d: %s", e.Pos, e.Msg) }

// fields maps CKAN/Solr field names to a Filter's lists.
func (f *Filter) field(name string) *[]string {
	switch name {
	case "organization", "owner_org", "publisher":
		return &f.Publisher
	case "tags", "tag", "keyword":
		return &f.Keyword
	case "groups", "theme":
		return &f.Theme
	case "res_format", "format":
		return &f.Format
	case "license_id", "licence", "license":
		return &f.Licence
	case "access":
		return &f.Access
	case "conforms_to":
		return &f.ConformsTo
	}
	return nil
}

// trivial are fields whose only value nii datasets have is given; any
// other value matches nothing.
var trivial = map[string]string{
	"dataset_type": "dataset",
	"type":         "dataset",
	"state":        "active",
}

// accessFields map CKAN's visibility fields' values onto nii's access.
var accessFields = map[string]map[string]string{
	"private":  {"true": "restricted", "false": "open"},
	"capacity": {"private": "restricted", "public": "open"},
}

// rangeFields take a range of times.
func rangeField(name string) bool { return name == "metadata_modified" || name == "metadata_created" }

// knownField reports whether name is a field ParseFilter understands.
func knownField(name string) bool {
	var f Filter
	_, t := trivial[name]
	_, a := accessFields[name]
	return f.field(name) != nil || t || a || name == "verified" || rangeField(name)
}

// ParseFilter parses an fq expression.
func ParseFilter(s string) (Filter, error) {
	var f Filter
	_, err := parseClauses(s, &f, false)
	return f, err
}

// ParseQ splits a CKAN q into free text and field clauses: a word
// "field:value" (or "field:(a OR b)", "field:\"a phrase\"") whose field
// ParseFilter knows becomes a filter, "*:*" means everything, and the rest
// is free text for the search index.
func ParseQ(s string) (string, Filter, error) {
	var f Filter
	text, err := parseClauses(s, &f, true)
	return text, f, err
}

type filterParser struct {
	s   string
	pos int
}

func (p *filterParser) errf(format string, args ...any) error {
	return &FilterError{Pos: p.pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *filterParser) skipSpace() {
	for p.pos < len(p.s) && isSpace(p.s[p.pos]) {
		p.pos++
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// parseClauses parses s into f. With lenient (q), words that are not field
// clauses are returned as free text; otherwise (fq) they are errors.
func parseClauses(s string, f *Filter, lenient bool) (string, error) {
	if len(s) > MaxFilterLen {
		return "", &FilterError{Msg: fmt.Sprintf("longer than %d bytes", MaxFilterLen)}
	}
	if !utf8.ValidString(s) {
		return "", &FilterError{Msg: "not valid UTF-8"}
	}
	p := &filterParser{s: s}
	var text []string
	seen := map[string]bool{}
	clauses := 0
	afterAnd := false
	lastField, afterOr := "", false // the previous clause's field; an OR follows it
	for {
		p.skipSpace()
		if p.pos >= len(p.s) {
			if afterAnd {
				return "", p.errf("AND at the end: want a clause after it")
			}
			break
		}
		start := p.pos
		word := p.peekWord()
		switch {
		case word == "AND" || word == "&&":
			if lenient {
				// Free-text terms are ANDed anyway.
				p.pos += len(word)
				continue
			}
			if clauses == 0 || afterAnd {
				return "", p.errf("AND must stand between two clauses")
			}
			p.pos += len(word)
			afterAnd = true
			continue
		case word == "OR" || word == "||":
			if lastField == "" || afterOr || afterAnd {
				return "", p.errf("OR between clauses or words is supported only between clauses of one field (organization:a OR organization:b), or inside parentheses, e.g. tags:(spend OR finance)")
			}
			p.pos += len(word)
			afterOr = true
			continue
		case word == "NOT" || strings.HasPrefix(word, "!"):
			return "", p.errf("negation is not supported, except -organization:x and -groups:x")
		case strings.HasPrefix(word, "-"):
			if lenient && !strings.Contains(word, ":") {
				// "-" in free text is just a character.
				text = append(text, word)
				p.pos += len(word)
				continue
			}
			p.pos++
			name, ok := p.fieldName()
			var dst *[]string
			switch name {
			case "organization", "owner_org", "publisher":
				dst = &f.NotPublisher
			case "groups", "theme":
				dst = &f.NotTheme
			}
			if !ok || dst == nil || afterOr {
				p.pos--
				return "", p.errf("negation is supported only as -organization:x or -groups:x")
			}
			p.pos += len(name) + 1
			vals, err := p.values()
			if err != nil {
				return "", err
			}
			*dst = append(*dst, vals...)
			if len(*dst) > maxFilterValues {
				return "", p.errf("more than %d excluded values", maxFilterValues)
			}
			clauses++
			if clauses > maxFilterClauses {
				return "", p.errf("more than %d clauses", maxFilterClauses)
			}
			lastField, afterAnd = "", false
			continue
		}
		afterAnd = false
		if p.s[p.pos] == '+' {
			p.pos++
		}
		name, isClause := p.fieldName()
		if !isClause || (lenient && !knownField(name) && name != "*") {
			if !lenient {
				return "", p.errf("want field:value (fields: organization, tags, groups, res_format, license_id, access, conforms_to, verified)")
			}
			p.pos = start
			w := p.peekWord()
			p.pos += len(w)
			text = append(text, strings.TrimPrefix(w, "+"))
			continue
		}
		clauses++
		if clauses > maxFilterClauses {
			return "", p.errf("more than %d clauses", maxFilterClauses)
		}
		if !knownField(name) && name != "*" {
			return "", p.errf("unknown field %q (fields: organization, tags, groups, res_format, license_id, access, conforms_to, verified)", name)
		}
		p.pos += len(name) + 1 // the name and ':'
		if name == "*" {
			if p.pos < len(p.s) && p.s[p.pos] == '*' && (p.pos+1 == len(p.s) || isSpace(p.s[p.pos+1])) {
				p.pos++
				continue
			}
			return "", p.errf("only *:* may use the * field")
		}
		if rangeField(name) {
			if afterOr {
				return "", p.errf("OR is not supported with %s", name)
			}
			from, to, err := p.timeRange()
			if err != nil {
				return "", err
			}
			if seen[name] {
				p.pos = start
				return "", p.errf("field %s is given twice", name)
			}
			seen[name] = true
			f.ModifiedFrom, f.ModifiedTo = from, to
			lastField = ""
			continue
		}
		vals, err := p.values()
		if err != nil {
			return "", err
		}
		if afterOr {
			// "organization:a OR organization:b": one field's values ORed.
			if canonicalField(name) != canonicalField(lastField) {
				p.pos = start
				return "", p.errf("OR between different fields (%s, %s) is not supported", lastField, name)
			}
			seen[fieldKey(f, name)] = false
			vals = append(slices.Clone(f.values(name)), vals...)
			if len(vals) > maxFilterValues {
				return "", p.errf("more than %d values", maxFilterValues)
			}
			afterOr = false
		}
		if err := f.set(name, vals, seen); err != nil {
			p.pos = start
			return "", p.errf("%v", err)
		}
		lastField = name
	}
	if afterOr {
		return "", p.errf("OR at the end: want a clause after it")
	}
	return strings.Join(text, " "), nil
}

// peekWord returns the run of non-space characters at pos.
func (p *filterParser) peekWord() string {
	end := p.pos
	for end < len(p.s) && !isSpace(p.s[end]) {
		end++
	}
	return p.s[p.pos:end]
}

// fieldName returns the name before a ':' at pos, if the word at pos is
// "name:…" with name made of [A-Za-z0-9_] (or "*").
func (p *filterParser) fieldName() (string, bool) {
	i := p.pos
	for i < len(p.s) {
		c := p.s[i]
		if c == ':' {
			break
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '*') {
			return "", false
		}
		i++
	}
	if i == p.pos || i == len(p.s) {
		return "", false
	}
	name := p.s[p.pos:i]
	if strings.Contains(name, "*") && name != "*" {
		return "", false
	}
	return name, true
}

// values parses a clause's value: a word, a phrase or a parenthesised
// OR-list.
func (p *filterParser) values() ([]string, error) {
	if p.pos >= len(p.s) || isSpace(p.s[p.pos]) {
		return nil, p.errf("want a value after ':'")
	}
	if p.s[p.pos] != '(' {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		return []string{v}, nil
	}
	p.pos++
	var out []string
	for {
		p.skipSpace()
		if p.pos >= len(p.s) {
			return nil, p.errf("unclosed '('")
		}
		if len(out) > 0 {
			if p.s[p.pos] == ')' {
				p.pos++
				return out, nil
			}
			w := p.peekWord()
			if w != "OR" && w != "||" {
				return nil, p.errf("want OR or ')' between values")
			}
			p.pos += 2
			p.skipSpace()
			if p.pos >= len(p.s) || p.s[p.pos] == ')' {
				return nil, p.errf("want a value after OR")
			}
		} else if p.s[p.pos] == ')' {
			return nil, p.errf("empty '()'")
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if len(out) > maxFilterValues {
			return nil, p.errf("more than %d values", maxFilterValues)
		}
	}
}

// value parses one word or quoted phrase, unescaping backslashes.
func (p *filterParser) value() (string, error) {
	var b strings.Builder
	if p.s[p.pos] == '"' {
		p.pos++
		for {
			if p.pos >= len(p.s) {
				return "", p.errf("unclosed '\"'")
			}
			c := p.s[p.pos]
			switch c {
			case '"':
				p.pos++
				if b.Len() == 0 {
					return "", p.errf("empty phrase")
				}
				if p.pos < len(p.s) && !isSpace(p.s[p.pos]) && p.s[p.pos] != ')' {
					return "", p.errf("want a space after a closing '\"'")
				}
				return b.String(), nil
			case '\\':
				if p.pos+1 >= len(p.s) {
					return "", p.errf("'\\' at the end")
				}
				p.pos++
				_, n := utf8.DecodeRuneInString(p.s[p.pos:])
				b.WriteString(p.s[p.pos : p.pos+n])
				p.pos += n
			default:
				b.WriteByte(c)
				p.pos++
			}
		}
	}
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if isSpace(c) || c == ')' {
			break
		}
		switch c {
		case '\\':
			if p.pos+1 >= len(p.s) {
				return "", p.errf("'\\' at the end")
			}
			p.pos++
			_, n := utf8.DecodeRuneInString(p.s[p.pos:])
			b.WriteString(p.s[p.pos : p.pos+n])
			p.pos += n
			continue
		case '(', '"', '[', ']', '{', '}', '^', '~':
			return "", p.errf("unexpected %q in a value: ranges, boosts and fuzzy matches are not supported; quote the value or escape it with '\\'", c)
		case '*', '?':
			return "", p.errf("wildcards are not supported in values")
		}
		b.WriteByte(c)
		p.pos++
	}
	if b.Len() == 0 {
		return "", p.errf("want a value")
	}
	return b.String(), nil
}

// canonicalField names the list a field's values go to, so that aliases
// ("tags", "keyword") are one field.
func canonicalField(name string) string {
	var f Filter
	if dst := f.field(name); dst != nil {
		return fieldKey(&f, name)
	}
	return name
}

// fieldKey is the key set uses to tell a field given twice: aliases share one.
func fieldKey(f *Filter, name string) string {
	switch dst := f.field(name); {
	case dst == &f.Publisher:
		return "publisher"
	case dst == &f.Theme:
		return "theme"
	case dst == &f.Keyword:
		return "keyword"
	case dst == &f.Format:
		return "format"
	case dst == &f.Licence:
		return "licence"
	case dst == &f.Access:
		return "access"
	case dst == &f.ConformsTo:
		return "conforms_to"
	}
	if _, ok := accessFields[name]; ok {
		return "access"
	}
	return name
}

// values returns the values already set for a field (for an OR).
func (f *Filter) values(name string) []string {
	if dst := f.field(name); dst != nil {
		return *dst
	}
	return nil
}

// timeRange parses "[A TO B]" after a range field's ':', A and B ISO 8601
// UTC times (as ckanext-harvest writes them, with or without fractions)
// or "*".
func (p *filterParser) timeRange() (time.Time, time.Time, error) {
	if p.pos >= len(p.s) || p.s[p.pos] != '[' {
		return time.Time{}, time.Time{}, p.errf("want a range [FROM TO UNTIL] of ISO 8601 UTC times, e.g. [2026-01-01T00:00:00Z TO *]")
	}
	end := strings.IndexByte(p.s[p.pos:], ']')
	if end < 0 {
		return time.Time{}, time.Time{}, p.errf("unclosed '['")
	}
	body := p.s[p.pos+1 : p.pos+end]
	parts := strings.Fields(body)
	if len(parts) != 3 || parts[1] != "TO" {
		return time.Time{}, time.Time{}, p.errf("want [FROM TO UNTIL], got [%s]", body)
	}
	var ts [2]time.Time
	for i, s := range []string{parts[0], parts[2]} {
		if s == "*" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, time.Time{}, p.errf("%q: want an ISO 8601 UTC time such as 2026-01-01T00:00:00Z, or * (Solr date maths such as NOW-1DAY is not supported)", s)
		}
		ts[i] = t
	}
	p.pos += end + 1
	if p.pos < len(p.s) && !isSpace(p.s[p.pos]) {
		return time.Time{}, time.Time{}, p.errf("want a space after ']'")
	}
	return ts[0], ts[1], nil
}

// set records a field's values.
func (f *Filter) set(name string, vals []string, seen map[string]bool) error {
	if want, ok := trivial[name]; ok {
		if !slices.ContainsFunc(vals, func(v string) bool { return strings.EqualFold(v, want) }) {
			f.None = true
		}
		return nil
	}
	if m, ok := accessFields[name]; ok {
		if seen["access"] {
			return fmt.Errorf("field %s is given twice (or with access): give it once", name)
		}
		seen["access"] = true
		for _, v := range vals {
			a, ok := m[strings.ToLower(v)]
			if !ok {
				f.None = true // no nii dataset has another value
				continue
			}
			if !slices.Contains(f.Access, a) {
				f.Access = append(f.Access, a)
			}
		}
		return nil
	}
	key := fieldKey(f, name)
	dst := f.field(name)
	if seen[key] {
		return fmt.Errorf("field %s is given twice: clauses are ANDed and one dataset has one value for it in nii's index, so list the alternatives as %s:(a OR b)", name, name)
	}
	seen[key] = true
	if name == "verified" {
		if len(vals) != 1 {
			return fmt.Errorf("verified takes one value, true or false")
		}
		b, err := strconv.ParseBool(vals[0])
		if err != nil {
			return fmt.Errorf("verified %q: want true or false", vals[0])
		}
		f.Verified = &b
		return nil
	}
	if dst == nil {
		return fmt.Errorf("unknown field %q (fields: organization, tags, groups, res_format, license_id, access, conforms_to, verified)", name)
	}
	*dst = vals
	return nil
}

// Merge combines two filters (q's field clauses and fq), refusing a field
// both set.
func (f Filter) Merge(g Filter) (Filter, error) {
	out := f
	out.None = f.None || g.None
	for _, p := range []struct {
		name     string
		dst, src *[]string
	}{
		{"organization", &out.Publisher, &g.Publisher}, {"groups", &out.Theme, &g.Theme},
		{"tags", &out.Keyword, &g.Keyword}, {"license_id", &out.Licence, &g.Licence},
		{"res_format", &out.Format, &g.Format}, {"access", &out.Access, &g.Access},
		{"conforms_to", &out.ConformsTo, &g.ConformsTo},
	} {
		if len(*p.src) == 0 {
			continue
		}
		if len(*p.dst) > 0 {
			return out, fmt.Errorf("field %s is filtered in both q and fq: give it once", p.name)
		}
		*p.dst = *p.src
	}
	if g.Verified != nil {
		if out.Verified != nil {
			return out, fmt.Errorf("field verified is filtered in both q and fq: give it once")
		}
		out.Verified = g.Verified
	}
	out.NotPublisher = append(slices.Clone(f.NotPublisher), g.NotPublisher...)
	out.NotTheme = append(slices.Clone(f.NotTheme), g.NotTheme...)
	if !g.ModifiedFrom.IsZero() || !g.ModifiedTo.IsZero() {
		if !f.ModifiedFrom.IsZero() || !f.ModifiedTo.IsZero() {
			return out, fmt.Errorf("field metadata_modified is filtered in both q and fq: give it once")
		}
		out.ModifiedFrom, out.ModifiedTo = g.ModifiedFrom, g.ModifiedTo
	}
	return out, nil
}

// Apply sets the filter's fields on q.
func (f Filter) Apply(q *search.Query) {
	q.Publisher = f.Publisher
	q.Theme = f.Theme
	q.Keyword = f.Keyword
	q.Licence = f.Licence
	q.Format = f.Format
	q.Access = f.Access
	q.ConformsTo = f.ConformsTo
	q.Verified = f.Verified
	q.NotPublisher = f.NotPublisher
	q.NotTheme = f.NotTheme
	q.ModifiedFrom, q.ModifiedTo = f.ModifiedFrom, f.ModifiedTo
}
