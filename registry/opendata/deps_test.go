package opendata

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the translation free of networking: it may use the
// registry's query types, but never node, exchange, libp2p or memberlist
// directly. (registry itself imports memberlist for gossip, so the
// transitive closure includes it; that is registry's business.)
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for _, banned := range []string{"github.com/nii-uk/nii/node", "github.com/nii-uk/nii/exchange", "libp2p", "memberlist"} {
				if strings.Contains(p, banned) {
					t.Errorf("%s imports %s", f, p)
				}
			}
		}
	}
}
