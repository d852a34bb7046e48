package opendata

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the translation free of networking: it may use the
// registry's catalog and query types, but never node, exchange, libp2p or
// memberlist, directly or through what it imports.
func TestImports(t *testing.T) {
	if out, err := exec.Command("go", "list", "-deps", ".", "..").Output(); err != nil {
		t.Errorf("go list -deps: %v", err)
	} else {
		for _, p := range strings.Fields(string(out)) {
			for _, banned := range []string{"github.com/nii-uk/nii/node", "github.com/nii-uk/nii/exchange", "libp2p", "memberlist"} {
				if strings.Contains(p, banned) {
					t.Errorf("registry or registry/opendata links %s", p)
				}
			}
		}
	}
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
