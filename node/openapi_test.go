package node_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/nii-uk/nii/node/nodetest"
)

// TestOpenAPIDocument loads /openapi.json from a running node and checks it
// is a valid OpenAPI 3.1 document.
func TestOpenAPIDocument(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t.TempDir(), "doc", nodetest.Options{}))
	resp, b := do(t, httpClient(t), n, call{path: "/openapi.json"})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/openapi.json: %s %v", resp.Status, resp.Header)
	}
	doc := loadOpenAPI(t, b)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	if doc.Components.SecuritySchemes["adminToken"] == nil {
		t.Error("no adminToken security scheme")
	}
}

func loadOpenAPI(t *testing.T, b []byte) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document: %v", err)
	}
	return doc
}

// route is one ServeMux registration found in the package's source.
type route struct {
	method, path string // method "" matches any
	admin        bool   // the handler is wrapped in n.admin
	at           string // file:line
}

// registeredRoutes finds every mux.Handle/HandleFunc call in the node
// package's source. Reading the source rather than a list kept by hand
// means a route added anywhere in package node (the auth and open-data
// hooks included) is checked without anyone remembering to list it.
func registeredRoutes(t *testing.T) []route {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []route
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(x ast.Node) bool {
			call, ok := x.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
				return true
			}
			at := fset.Position(call.Pos()).String()
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: a route registered with a pattern that is not a string literal; the OpenAPI coverage check cannot read it (use a literal)", at)
				return true
			}
			pat, _ := strconv.Unquote(lit.Value)
			r := route{at: at}
			if m, p, ok := strings.Cut(pat, " "); ok {
				r.method, pat = m, strings.TrimSpace(p)
			}
			if i := strings.Index(pat, "/"); i > 0 { // a host in the pattern
				pat = pat[i:]
			}
			r.path = muxWildcard.ReplaceAllString(strings.TrimSuffix(pat, "{$}"), "{$1}")
			if inner, ok := call.Args[1].(*ast.CallExpr); ok {
				if s, ok := inner.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "admin" {
					r.admin = true
				}
			}
			out = append(out, r)
			return true
		})
	}
	return out
}

// muxWildcard matches a ServeMux wildcard, {name} or {name...}.
var muxWildcard = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(?:\.\.\.)?\}`)

// TestOpenAPICoversEveryRoute fails when a route registered on the API's
// mux is missing from openapi.json, or an admin route is not marked as
// needing the admin token: the document cannot drift from the code.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	doc := loadOpenAPI(t, b)
	routes := registeredRoutes(t)
	if len(routes) < 18 { // api.go's and ops.go's, at least
		t.Fatalf("found only %d routes in the source: is the scan broken? %v", len(routes), routes)
	}
	for _, r := range routes {
		item := doc.Paths.Find(r.path)
		if item == nil {
			t.Errorf("%s: %s %s is not in openapi.json", r.at, r.method, r.path)
			continue
		}
		method := r.method
		if method == "" {
			method = http.MethodGet
		}
		op := item.GetOperation(method)
		if op == nil {
			t.Errorf("%s: %s %s: openapi.json describes the path but not the method", r.at, r.method, r.path)
			continue
		}
		admin := op.Security != nil && len(*op.Security) > 0 && (*op.Security)[0]["adminToken"] != nil
		if r.admin && !admin {
			t.Errorf("%s: %s %s needs the admin token but openapi.json does not say so (security: adminToken)", r.at, r.method, r.path)
		}
		if !r.admin && admin && strings.HasPrefix(r.at, "api.go") {
			t.Errorf("%s: %s %s is public but openapi.json marks it admin", r.at, r.method, r.path)
		}
	}
}
