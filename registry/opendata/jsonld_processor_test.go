package opendata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/piprate/json-gold/ld"
)

// TestJSONLDProcessorAgreesWithTurtle reads nii's JSON-LD with json-gold,
// a full JSON-LD 1.1 processor (not the minimal reader of rdf_test.go),
// offline, and checks that the RDF it finds is exactly the triples the
// Turtle says (read back by the strict Turtle reader), blank nodes
// matched by what they describe.
func TestJSONLDProcessorAgreesWithTurtle(t *testing.T) {
	plain := testAdvert("camden", "trees", 2)
	plain.Meta.Licence, plain.Meta.ConformsTo = "", "Camden tree schema v1" // no licence; a non-IRI standard
	plain.Meta.Themes = []string{"environment", "Urban forest"}
	entries := []Entry{
		hostileEntry(),
		{Advert: testAdvert("trafford", "spend", 5), Verified: true, Download: "http://127.0.0.1:7947/api/v1/datasets/trafford/spend/versions/5/download"},
		{Advert: plain, Download: "http://127.0.0.1:7947/api/v1/datasets/camden/trees/versions/2/download"},
	}
	for name, g := range map[string]*Graph{
		"catalog": CatalogGraph(testSite(), entries, Page{Number: 2, Size: 3, Total: 7, URL: func(n int) string {
			return "http://127.0.0.1:7947/catalog.jsonld?page=" + strconv.Itoa(n) + "&q=a%3Eb"
		}}),
		"dataset": DatasetGraph(testSite(), hostileEntry()),
	} {
		t.Run(name, func(t *testing.T) {
			var js, ttl bytes.Buffer
			if err := g.WriteJSONLD(&js); err != nil {
				t.Fatal(err)
			}
			if err := g.WriteTurtle(&ttl); err != nil {
				t.Fatal(err)
			}
			fromJSONLD := processJSONLD(t, js.Bytes())
			fromTurtle, err := parseTurtle(ttl.String())
			if err != nil {
				t.Fatal(err)
			}
			got, want := canonicalTriples(fromJSONLD), canonicalTriples(fromTurtle)
			if !reflect.DeepEqual(got, want) {
				for _, s := range diffStrings(got, want) {
					t.Error(s)
				}
				t.Fatalf("json-gold finds %d triples in the JSON-LD, the Turtle holds %d", len(got), len(want))
			}
			if len(got) != len(g.Triples) {
				t.Errorf("%d triples read, %d written", len(got), len(g.Triples))
			}
		})
	}
}

// processJSONLD converts JSON-LD to N-Quads with json-gold (a document
// loader that refuses every fetch: the @context must be inline) and
// parses them with json-gold's N-Quads parser.
func processJSONLD(t *testing.T, doc []byte) []Triple {
	t.Helper()
	var in any
	if err := json.Unmarshal(doc, &in); err != nil {
		t.Fatal(err)
	}
	opts := ld.NewJsonLdOptions("")
	opts.Format = "application/n-quads"
	opts.DocumentLoader = refuseLoader{t}
	out, err := ld.NewJsonLdProcessor().ToRDF(in, opts)
	if err != nil {
		t.Fatalf("json-gold ToRDF: %v", err)
	}
	ds, err := ld.ParseNQuads(out.(string))
	if err != nil {
		t.Fatalf("json-gold's N-Quads do not parse: %v", err)
	}
	var ts []Triple
	for graph, quads := range ds.Graphs {
		for _, q := range quads {
			if graph != "@default" {
				t.Errorf("quad in named graph %s", graph)
			}
			ts = append(ts, Triple{S: ldTerm(q.Subject), P: ldTerm(q.Predicate), O: ldTerm(q.Object)})
		}
	}
	return ts
}

type refuseLoader struct{ t *testing.T }

func (l refuseLoader) LoadDocument(u string) (*ld.RemoteDocument, error) {
	l.t.Errorf("json-gold tried to fetch %s: the @context must be inline", u)
	return nil, fmt.Errorf("offline: %s", u)
}

// ldTerm converts a json-gold node to a Term. Plain literals are
// xsd:string in RDF 1.1 and language-tagged ones rdf:langString; nii's
// Terms leave both datatypes empty.
func ldTerm(n ld.Node) Term {
	switch v := n.(type) { // the parser gives values; accept pointers too
	case *ld.IRI:
		n = *v
	case *ld.BlankNode:
		n = *v
	case *ld.Literal:
		n = *v
	}
	switch n := n.(type) {
	case ld.IRI:
		return Term{Kind: KindIRI, Value: n.Value}
	case ld.BlankNode:
		return Blank(strings.TrimPrefix(n.Attribute, "_:"))
	case ld.Literal:
		dt := n.Datatype
		if dt == nsXSD+"string" || dt == "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString" {
			dt = ""
		}
		return Term{Kind: KindLiteral, Value: n.Value, Datatype: dt, Lang: n.Language}
	}
	panic(fmt.Sprintf("unexpected json-gold node %T", n))
}

// canonicalTriples returns ts as sorted strings with each blank node
// named by what it says (its sorted non-blank properties), so that two
// serialisations that label blank nodes differently compare equal.
func canonicalTriples(ts []Triple) []string {
	desc := map[string][]string{}
	for _, tr := range ts {
		if tr.S.Kind == KindBlank && tr.O.Kind != KindBlank {
			desc[tr.S.Value] = append(desc[tr.S.Value], fmt.Sprint(tr.P, tr.O))
		}
	}
	name := func(x Term) string {
		if x.Kind == KindBlank {
			d := slices.Clone(desc[x.Value])
			slices.Sort(d)
			return "_:[" + strings.Join(d, " ; ") + "]"
		}
		return fmt.Sprintf("%d|%q|%q|%q", x.Kind, x.Value, x.Datatype, x.Lang)
	}
	out := make([]string, len(ts))
	for i, tr := range ts {
		out[i] = name(tr.S) + " " + name(tr.P) + " " + name(tr.O)
	}
	slices.Sort(out)
	return out
}

// diffStrings lists what is in one sorted list and not the other.
func diffStrings(got, want []string) []string {
	var out []string
	for _, g := range got {
		if _, found := slices.BinarySearch(want, g); !found {
			out = append(out, "only in JSON-LD: "+g)
		}
	}
	for _, w := range want {
		if _, found := slices.BinarySearch(got, w); !found {
			out = append(out, "only in Turtle: "+w)
		}
	}
	return out
}
