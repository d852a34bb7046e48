package opendata

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
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
// inside parentheses are ORed. A backslash escapes the next character of a
// word or phrase, as in Solr. Fields: organization, tags, groups,
// res_format, license_id, plus nii's access, conforms_to and verified;
// dataset_type:dataset, state:active, capacity:public and private:false
// are accepted and hold for every nii dataset. Anything else — negation
// ("-field:" or NOT), OR between clauses, ranges, wildcards in values, a
// field ANDed with itself — is refused with an error that says so: the
// catalog index cannot answer it, and a silently wrong answer is worse
// than none.

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
	"capacity":     "public",
	"private":      "false",
}

// knownField reports whether name is a field ParseFilter understands.
func knownField(name string) bool {
	var f Filter
	_, t := trivial[name]
	return f.field(name) != nil || t || name == "verified"
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
			return "", p.errf("OR between clauses or words is not supported: ORed values of one field go in parentheses, e.g. tags:(spend OR finance)")
		case word == "NOT" || strings.HasPrefix(word, "!"):
			return "", p.errf("negation is not supported")
		case strings.HasPrefix(word, "-"):
			if lenient && !strings.Contains(word, ":") {
				// "-" in free text is just a character.
				text = append(text, word)
				p.pos += len(word)
				continue
			}
			return "", p.errf("negation is not supported")
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
		vals, err := p.values()
		if err != nil {
			return "", err
		}
		if err := f.set(name, vals, seen); err != nil {
			p.pos = start
			return "", p.errf("%v", err)
		}
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

// set records a field's values.
func (f *Filter) set(name string, vals []string, seen map[string]bool) error {
	if want, ok := trivial[name]; ok {
		if !slices.ContainsFunc(vals, func(v string) bool { return strings.EqualFold(v, want) }) {
			f.None = true
		}
		return nil
	}
	key := name
	dst := f.field(name)
	if dst != nil {
		// Aliases share a list: "tags" and "keyword" are one field.
		key = fmt.Sprintf("%p", dst)
	}
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
}
