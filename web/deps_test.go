package web

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the pages apart from the node's machinery: web knows
// the node only through Backend, and links neither node (node/api's types
// aside), nor the stores, nor the networking, nor the SQL engine.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %v", deps)
	}
	for _, p := range deps {
		if p == "github.com/nii-uk/nii/node/api" {
			continue
		}
		for _, banned := range []string{"github.com/nii-uk/nii/node", "github.com/nii-uk/nii/exchange", "github.com/nii-uk/nii/query",
			"github.com/nii-uk/nii/harmony", "libp2p", "memberlist", "badger", "duckdb"} {
			if strings.HasPrefix(p, banned) || strings.Contains(p, "/"+banned) {
				t.Errorf("web links %s", p)
			}
		}
	}
}
