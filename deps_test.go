package nii_test

// The import rules of DESIGN.md and docs/architecture.md, checked on the
// transitive import graph as `go list -deps -json ./...` reports it for
// non-test builds (as tailscale's tstest/deptest does): a rule broken by a
// new import anywhere down the graph fails here, not in review.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/nii-uk/nii"

// depPkg is what deps_test needs of one `go list -json` package.
type depPkg struct {
	ImportPath string
	Name       string
	Standard   bool
	Imports    []string // direct, non-test
	Deps       []string // transitive, non-test
	Module     *struct{ Path string }
}

// depRule is one import rule over the module's packages.
type depRule struct {
	why string
	// of selects the module packages the rule holds for, by path relative
	// to the module ("" is the root package).
	of func(rel string) bool
	// forbid lists import paths those packages may not link: a path stands
	// for itself and everything under it.
	forbid []string
	// exempt lists paths under a forbidden one that stay allowed (node/api,
	// the API's types and client, is for everyone to import).
	exempt []string
	// allow, if set, lists the only non-standard import paths (and paths
	// under them) those packages may link; the module's own packages are
	// checked by other rules.
	allow []string
	// direct checks direct imports instead of the transitive graph.
	direct bool
}

func is(rels ...string) func(string) bool {
	return func(rel string) bool { return slices.Contains(rels, rel) }
}

func under(roots ...string) func(string) bool {
	return func(rel string) bool {
		for _, r := range roots {
			if rel == r || strings.HasPrefix(rel, r+"/") {
				return true
			}
		}
		return false
	}
}

func not(f func(string) bool) func(string) bool { return func(rel string) bool { return !f(rel) } }

var (
	memberlist = "github.com/hashicorp/memberlist"
	libp2p     = "github.com/libp2p"
	badger     = "github.com/dgraph-io/badger"
	duckdb     = "github.com/duckdb"
)

// depRules are DESIGN.md's "Import direction" and cgo rules and
// docs/architecture.md's package table.
var depRules = []depRule{
	{why: "the catalog, and everything that only reads it, links neither memberlist nor libp2p (gossip is registry/gossip's alone)",
		of: is("registry", "registry/opendata", "registry/search", "registry/table"), forbid: []string{memberlist, libp2p}},
	{why: "auth imports neither libp2p nor memberlist",
		of: under("auth"), forbid: []string{memberlist, libp2p}},
	{why: "node/api (the local API's types and client) links neither badger nor libp2p nor memberlist, so a third-party Go client does not",
		of: is("node/api"), forbid: []string{badger, libp2p, memberlist}},
	{why: "registry does not import exchange",
		of: under("registry"), forbid: []string{module + "/exchange"}},
	{why: "exchange does not import registry (it asks through a small interface node satisfies)",
		of: under("exchange"), forbid: []string{module + "/registry"}},
	{why: "harmony and query depend on neither the catalog nor the content store",
		of: under("harmony", "query"), forbid: []string{module + "/registry/gossip", module + "/exchange", module + "/node"}},
	{why: "harmony does not import the catalog package (only registry/table, the profiler)",
		of: under("harmony"), forbid: []string{module + "/registry/gossip", module + "/registry/search", module + "/registry/opendata"}},
	{why: "only node (and cmd) import everything: nothing else depends on node (its API's types and client, node/api, are for any client)",
		of: not(under("node", "cmd")), forbid: []string{module + "/node"}, exempt: []string{module + "/node/api"}},
	{why: "web knows the node only through its Backend interface: it links neither the stores, nor the networking, nor the merge or the SQL engine",
		of: under("web"), forbid: []string{module + "/exchange", module + "/query", module + "/harmony", module + "/registry/gossip", libp2p, memberlist, badger, duckdb}},
	{why: "cgo (DuckDB) stays inside one package, query",
		of: not(is("query")), forbid: []string{duckdb}, direct: true},
	{why: "the root package depends on nothing but the standard library and small encoding libraries",
		of: is(""), allow: []string{"github.com/fxamacker/cbor", "github.com/x448/float16", "github.com/mr-tron/base58",
			"github.com/zeebo/blake3", "github.com/klauspost/cpuid", "golang.org/x/sys/cpu"}},
}

func within(path, root string) bool { return path == root || strings.HasPrefix(path, root+"/") }

// depViolations checks rules against a graph and says what breaks each.
func depViolations(pkgs map[string]*depPkg, rules []depRule) []string {
	var out []string
	var paths []string
	for p := range pkgs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		pk := pkgs[p]
		if pk.Module == nil || pk.Module.Path != module {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, module), "/")
		switch pk.Name {
		case "util", "common", "pkg", "utils", "helpers":
			out = append(out, fmt.Sprintf("%s: a package named %q (DESIGN.md: name packages for what they hold)", p, pk.Name))
		}
		for _, r := range rules {
			if !r.of(rel) {
				continue
			}
			deps := pk.Deps
			if r.direct {
				deps = pk.Imports
			}
			for _, d := range deps {
				for _, f := range r.forbid {
					if within(d, f) && !within(p, f) && !slices.ContainsFunc(r.exempt, func(e string) bool { return within(d, e) }) {
						out = append(out, fmt.Sprintf("%s links %s: %s", p, d, r.why))
					}
				}
				if r.allow == nil || within(d, module) {
					continue
				}
				if dp := pkgs[d]; dp != nil && dp.Standard {
					continue
				}
				if !slices.ContainsFunc(r.allow, func(a string) bool { return within(d, a) }) {
					out = append(out, fmt.Sprintf("%s links %s: %s", p, d, r.why))
				}
			}
		}
	}
	return out
}

// loadDeps runs `go list -deps -json ./...` in the module root.
func loadDeps(t *testing.T) map[string]*depPkg {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to read the import graph: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", "-json=ImportPath,Name,Standard,Imports,Deps,Module", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]*depPkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p depPkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = &p
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	pkgs := loadDeps(t)
	for _, v := range depViolations(pkgs, depRules) {
		t.Error(v)
	}
	// A rule whose packages were all renamed away would pass silently:
	// each must still hold for at least one package of the module.
	for _, r := range depRules {
		n := 0
		for p, pk := range pkgs {
			if pk.Module != nil && pk.Module.Path == module && r.of(strings.TrimPrefix(strings.TrimPrefix(p, module), "/")) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("rule %q holds for no package of the module: update it", r.why)
		}
	}
	// And the graph is the real one: the packages the rules protect exist,
	// and the forbidden libraries are linked somewhere (by the packages
	// whose job they are), so the forbid paths are spelled right.
	for _, want := range []string{module + "/registry", module + "/registry/opendata", module + "/auth", module + "/node/api", module + "/registry/gossip"} {
		if pkgs[want] == nil {
			t.Errorf("go list does not show %s", want)
		}
	}
	for _, lib := range []struct{ pkg, dep string }{
		{module + "/registry/gossip", memberlist}, {module + "/exchange", libp2p}, {module + "/exchange", badger}, {module + "/query", duckdb},
	} {
		if p := pkgs[lib.pkg]; p == nil || !slices.ContainsFunc(p.Deps, func(d string) bool { return within(d, lib.dep) }) {
			t.Errorf("%s does not link %s: the rule's path is misspelt or the layout changed", lib.pkg, lib.dep)
		}
	}
}

// TestImportRulesCatchRegressions runs the checker over small synthetic
// graphs: each rule broken once is reported, and the clean graph is not.
func TestImportRulesCatchRegressions(t *testing.T) {
	mod := &struct{ Path string }{module}
	other := &struct{ Path string }{"elsewhere"}
	graph := func(edit func(map[string]*depPkg)) map[string]*depPkg {
		g := map[string]*depPkg{
			module:                         {Name: "nii", Deps: []string{"fmt", "github.com/fxamacker/cbor/v2"}, Module: mod},
			module + "/registry":           {Name: "registry", Deps: []string{module, badger + "/v4"}, Module: mod},
			module + "/registry/opendata":  {Name: "opendata", Deps: []string{module}, Module: mod},
			module + "/registry/gossip":    {Name: "gossip", Deps: []string{module + "/registry", memberlist}, Module: mod},
			module + "/auth":               {Name: "auth", Deps: []string{module, badger + "/v4"}, Module: mod},
			module + "/node/api":           {Name: "api", Deps: []string{module}, Module: mod},
			module + "/exchange":           {Name: "exchange", Deps: []string{module, libp2p + "/go-libp2p"}, Module: mod},
			module + "/query":              {Name: "query", Imports: []string{duckdb + "/duckdb-go/v2"}, Deps: []string{duckdb + "/duckdb-go/v2"}, Module: mod},
			module + "/harmony":            {Name: "harmony", Deps: []string{module + "/registry/table"}, Module: mod},
			module + "/web":                {Name: "web", Deps: []string{module, module + "/node/api"}, Module: mod},
			module + "/node":               {Name: "node", Deps: []string{module + "/registry/gossip", module + "/exchange", module + "/query"}, Module: mod},
			"fmt":                          {Name: "fmt", Standard: true},
			"github.com/fxamacker/cbor/v2": {Name: "cbor", Module: other},
		}
		if edit != nil {
			edit(g)
		}
		return g
	}
	add := func(pkg string, deps ...string) func(map[string]*depPkg) {
		return func(g map[string]*depPkg) { g[pkg].Deps = append(g[pkg].Deps, deps...) }
	}
	cases := []struct {
		name string
		edit func(map[string]*depPkg)
		want string // a substring of the one violation
	}{
		{"opendata links memberlist through the catalog", add(module+"/registry/opendata", module+"/registry/gossip", memberlist), "registry/opendata links github.com/hashicorp/memberlist"},
		{"the catalog links libp2p", add(module+"/registry", libp2p+"/go-libp2p/core/peer"), "registry links github.com/libp2p/go-libp2p/core/peer"},
		{"auth links memberlist", add(module+"/auth", memberlist), "auth links github.com/hashicorp/memberlist"},
		{"auth links libp2p", add(module+"/auth", libp2p+"/go-libp2p/core/crypto"), "auth links github.com/libp2p"},
		{"node/api links badger", add(module+"/node/api", badger+"/v4"), "node/api links github.com/dgraph-io/badger/v4"},
		{"node/api links libp2p", add(module+"/node/api", libp2p+"/go-libp2p"), "node/api links github.com/libp2p/go-libp2p"},
		{"registry imports exchange", add(module+"/registry/gossip", module+"/exchange"), "registry/gossip links github.com/nii-uk/nii/exchange"},
		{"exchange imports registry", add(module+"/exchange", module+"/registry"), "exchange links github.com/nii-uk/nii/registry"},
		{"harmony imports the content store", add(module+"/harmony", module+"/exchange"), "harmony links github.com/nii-uk/nii/exchange"},
		{"something other than node and cmd imports node", add(module+"/registry/opendata", module+"/node"), "registry/opendata links github.com/nii-uk/nii/node"},
		{"web links the content store", add(module+"/web", module+"/exchange"), "web links github.com/nii-uk/nii/exchange"},
		{"web links node itself", add(module+"/web", module+"/node"), "web links github.com/nii-uk/nii/node:"},
		{"a second package imports DuckDB", func(g map[string]*depPkg) {
			g[module+"/harmony"].Imports = append(g[module+"/harmony"].Imports, duckdb+"/duckdb-go/v2")
		}, "harmony links github.com/duckdb/duckdb-go/v2"},
		{"the root package links a big library", add(module, "github.com/parquet-go/parquet-go"), "nii links github.com/parquet-go/parquet-go"},
		{"a util package", func(g map[string]*depPkg) {
			g[module+"/internal/util"] = &depPkg{Name: "util", Module: mod}
		}, `a package named "util"`},
	}
	if v := depViolations(graph(nil), depRules); len(v) != 0 {
		t.Fatalf("the clean synthetic graph breaks rules: %v", v)
	}
	for _, c := range cases {
		v := depViolations(graph(c.edit), depRules)
		if len(v) != 1 || !strings.Contains(v[0], c.want) {
			t.Errorf("%s: violations %q, want one naming %q", c.name, v, c.want)
		}
	}
	// A package importing DuckDB only through query (node does) is fine:
	// the cgo rule is about direct imports.
	if v := depViolations(graph(add(module+"/node", duckdb+"/duckdb-go/v2")), depRules); len(v) != 0 {
		t.Errorf("node linking DuckDB through query was reported: %v", v)
	}
}
