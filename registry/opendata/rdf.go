package opendata

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A small RDF graph model with two writers, Turtle and JSON-LD, so both
// serialisations are produced from the same triples and cannot disagree.
//
// No RDF library is used: none of the Go RDF libraries is maintained (the
// best known, knakk/rdf, has had no release since 2019), and what nii needs
// — writing, never parsing — is small enough to get exactly right here.
// Correctness rests on two rules, each tested adversarially:
//
//   - IRIs are normalised once, when a term is made (NewIRI): characters
//     that may not appear in a Turtle IRIREF or an IRI (controls, space,
//     <>"{}|^`\) are percent-encoded, so both writers can emit them as is.
//   - Literals are escaped by the Turtle writer (ECHAR for the usual
//     controls, quote and backslash; \uXXXX for other controls); invalid
//     UTF-8 is replaced by U+FFFD when a term is made.

// TermKind says what a term is.
type TermKind uint8

const (
	KindIRI TermKind = iota
	KindBlank
	KindLiteral
)

// Term is an RDF term: an IRI, a blank node, or a literal with a datatype
// IRI (empty means xsd:string) or a language tag.
type Term struct {
	Kind     TermKind
	Value    string // IRI, blank node label (without "_:"), or lexical form
	Datatype string // full IRI; literals only
	Lang     string // literals only
}

// Namespaces used in nii's DCAT documents, with the prefixes both writers use.
const (
	nsRDF   = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
	nsXSD   = "http://www.w3.org/2001/XMLSchema#"
	nsDCAT  = "http://www.w3.org/ns/dcat#"
	nsDCT   = "http://purl.org/dc/terms/"
	nsFOAF  = "http://xmlns.com/foaf/0.1/"
	nsHydra = "http://www.w3.org/ns/hydra/core#"
	nsSKOS  = "http://www.w3.org/2004/02/skos/core#"
	nsVCard = "http://www.w3.org/2006/vcard/ns#"
)

// Prefixes maps each prefix to its namespace, in the order written.
var Prefixes = []struct{ Prefix, NS string }{
	{"dcat", nsDCAT}, {"dct", nsDCT}, {"foaf", nsFOAF}, {"hydra", nsHydra},
	{"rdf", nsRDF}, {"skos", nsSKOS}, {"vcard", nsVCard}, {"xsd", nsXSD},
}

const rdfType = nsRDF + "type"

// iriForbidden reports whether r may not appear literally in an IRI
// (RFC 3987 excludes these; Turtle's IRIREF forbids them).
func iriForbidden(r rune) bool {
	return r <= 0x20 || r == 0x7f || strings.ContainsRune("<>\"{}|^`\\", r)
}

// NewIRI returns an IRI term, percent-encoding characters that may not
// appear in an IRI and replacing invalid UTF-8.
func NewIRI(s string) Term {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexFunc(s, iriForbidden) < 0 {
		return Term{Kind: KindIRI, Value: s}
	}
	var b strings.Builder
	for _, r := range s {
		if !iriForbidden(r) {
			b.WriteRune(r)
			continue
		}
		var buf [4]byte
		for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return Term{Kind: KindIRI, Value: b.String()}
}

// Blank returns a blank node with the given label ([A-Za-z0-9]+).
func Blank(label string) Term { return Term{Kind: KindBlank, Value: label} }

// Literal returns a plain (xsd:string) literal.
func Literal(s string) Term {
	return Term{Kind: KindLiteral, Value: strings.ToValidUTF8(s, "\uFFFD")}
}

// LangLiteral returns a literal with a language tag such as "en".
func LangLiteral(s, lang string) Term {
	t := Literal(s)
	t.Lang = lang
	return t
}

// Typed returns a literal with a datatype IRI.
func Typed(s, datatype string) Term {
	t := Literal(s)
	t.Datatype = datatype
	return t
}

// Triple is one RDF statement.
type Triple struct{ S, P, O Term }

// Graph is a list of triples, written grouped by subject in the order
// subjects first appear.
type Graph struct {
	Triples []Triple
	blanks  int
}

// Add appends a triple; objects that are zero-valued literals are skipped,
// so optional fields can be added unconditionally.
func (g *Graph) Add(s Term, p string, o Term) {
	if o.Kind == KindLiteral && o.Value == "" && o.Datatype == "" {
		return
	}
	if o.Kind == KindIRI && o.Value == "" {
		return
	}
	g.Triples = append(g.Triples, Triple{S: s, P: NewIRI(p), O: o})
}

// Type adds "s rdf:type class".
func (g *Graph) Type(s Term, class string) { g.Add(s, rdfType, NewIRI(class)) }

// NewBlank returns a fresh blank node.
func (g *Graph) NewBlank() Term {
	g.blanks++
	return Blank("b" + strconv.Itoa(g.blanks))
}

// subjects returns the graph's subjects in order of first appearance, and
// each one's triples.
func (g *Graph) subjects() ([]Term, map[Term][]Triple) {
	var order []Term
	by := map[Term][]Triple{}
	for _, t := range g.Triples {
		if _, ok := by[t.S]; !ok {
			order = append(order, t.S)
		}
		by[t.S] = append(by[t.S], t)
	}
	return order, by
}

// compact returns the prefixed name for iri if a prefix covers it and the
// local part is a safe PN_LOCAL, else "".
func compact(iri string) string {
	for _, p := range Prefixes {
		local, ok := strings.CutPrefix(iri, p.NS)
		if ok && local != "" && isSimpleLocal(local) {
			return p.Prefix + ":" + local
		}
	}
	return ""
}

// isSimpleLocal reports whether s is a local name made of ASCII letters,
// digits and underscores, starting with a letter: a subset of Turtle's
// PN_LOCAL that needs no escaping.
func isSimpleLocal(s string) bool {
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case (r >= '0' && r <= '9' || r == '_') && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// WriteTurtle writes g as Turtle.
func (g *Graph) WriteTurtle(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, p := range Prefixes {
		fmt.Fprintf(bw, "@prefix %s: <%s> .\n", p.Prefix, p.NS)
	}
	order, by := g.subjects()
	for _, s := range order {
		bw.WriteString("\n")
		bw.WriteString(turtleTerm(s))
		ts := by[s]
		// Group objects by predicate, keeping first-appearance order.
		var preds []string
		objs := map[string][]Term{}
		for _, t := range ts {
			if _, ok := objs[t.P.Value]; !ok {
				preds = append(preds, t.P.Value)
			}
			objs[t.P.Value] = append(objs[t.P.Value], t.O)
		}
		for i, p := range preds {
			if i > 0 {
				bw.WriteString(" ;")
			}
			bw.WriteString("\n    ")
			if p == rdfType {
				bw.WriteString("a")
			} else {
				bw.WriteString(turtleTerm(NewIRI(p)))
			}
			for j, o := range objs[p] {
				if j > 0 {
					bw.WriteString(" ,\n       ")
				}
				bw.WriteString(" ")
				bw.WriteString(turtleTerm(o))
			}
		}
		bw.WriteString(" .\n")
	}
	return bw.Flush()
}

func turtleTerm(t Term) string {
	switch t.Kind {
	case KindBlank:
		return "_:" + t.Value
	case KindIRI:
		if c := compact(t.Value); c != "" {
			return c
		}
		return "<" + t.Value + ">" // NewIRI made it safe
	}
	s := QuoteTurtle(t.Value)
	switch {
	case t.Lang != "":
		s += "@" + t.Lang
	case t.Datatype != "":
		s += "^^" + turtleTerm(NewIRI(t.Datatype))
	}
	return s
}

// QuoteTurtle returns s as a Turtle STRING_LITERAL_QUOTE: in double quotes,
// with quote, backslash and control characters escaped. Other characters,
// non-ASCII included, are written as UTF-8.
func QuoteTurtle(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// JSONLD returns g as a JSON-LD document: a @context with nii's prefixes
// and a flat @graph of node objects, one per subject. Properties and types
// are compact IRIs; IRIs are {"@id": …}; literals other than plain strings
// carry @type or @language.
func (g *Graph) JSONLD() map[string]any {
	ctx := map[string]any{}
	for _, p := range Prefixes {
		ctx[p.Prefix] = p.NS
	}
	order, by := g.subjects()
	nodes := make([]any, 0, len(order))
	for _, s := range order {
		n := map[string]any{"@id": jsonldID(s)}
		var types []string
		props := map[string][]any{}
		var keys []string
		for _, t := range by[s] {
			if t.P.Value == rdfType && t.O.Kind == KindIRI {
				types = append(types, jsonldName(t.O.Value))
				continue
			}
			k := jsonldName(t.P.Value)
			if _, ok := props[k]; !ok {
				keys = append(keys, k)
			}
			props[k] = append(props[k], jsonldValue(t.O))
		}
		switch len(types) {
		case 0:
		case 1:
			n["@type"] = types[0]
		default:
			n["@type"] = types
		}
		for _, k := range keys {
			if v := props[k]; len(v) == 1 {
				n[k] = v[0]
			} else {
				n[k] = v
			}
		}
		nodes = append(nodes, n)
	}
	return map[string]any{"@context": ctx, "@graph": nodes}
}

// WriteJSONLD writes g as indented JSON-LD.
func (g *Graph) WriteJSONLD(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(g.JSONLD())
}

func jsonldID(t Term) string {
	if t.Kind == KindBlank {
		return "_:" + t.Value
	}
	return t.Value
}

// jsonldName compacts an IRI used as a property or type. An IRI no prefix
// covers stays absolute (JSON-LD treats an absolute IRI key as itself).
func jsonldName(iri string) string {
	if c := compact(iri); c != "" {
		return c
	}
	return iri
}

func jsonldValue(t Term) any {
	switch t.Kind {
	case KindIRI, KindBlank:
		return map[string]any{"@id": jsonldID(t)}
	}
	switch {
	case t.Lang != "":
		return map[string]any{"@value": t.Value, "@language": t.Lang}
	case t.Datatype != "" && t.Datatype != nsXSD+"string":
		return map[string]any{"@value": t.Value, "@type": jsonldName(t.Datatype)}
	}
	return t.Value
}

// sortedTriples returns a copy of ts in a canonical order (for tests and
// comparisons).
func sortedTriples(ts []Triple) []Triple {
	out := slices.Clone(ts)
	slices.SortFunc(out, func(a, b Triple) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
	return out
}
