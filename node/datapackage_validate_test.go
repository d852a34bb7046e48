package node_test

import (
	"bytes"
	"context"
	"github.com/nii-uk/nii/internal/spenddata"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

// frictionlessJS finds node.js and the npm packages .ci/run installs
// (NII_FRICTIONLESS, else build/frictionless at the repository's root).
// Under CI (NII_CI=1) a missing one fails the test: it must run there.
func frictionlessJS(t *testing.T) (nodeBin, modules string) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("NII_CI") == "1" {
			t.Fatalf(format+" (NII_CI=1: .ci/run installs them)", args...)
		}
		t.Skipf(format+"; run .ci/run, or npm ci in build/frictionless, to validate Data Packages", args...)
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		missing("node.js is not installed")
	}
	dir := os.Getenv("NII_FRICTIONLESS")
	if dir == "" {
		dir = filepath.Join("..", "build", "frictionless")
	}
	modules, _ = filepath.Abs(filepath.Join(dir, "node_modules"))
	for _, pkg := range []string{"datapackage", "tableschema"} {
		if _, err := os.Stat(filepath.Join(modules, pkg, "package.json")); err != nil {
			missing("npm package %s is not installed in %s", pkg, modules)
		}
	}
	return nodeBin, modules
}

// sharedSpendDir is where the real public spend files are.
func sharedSpendDir(t testing.TB) string { return spenddata.Dir() }

// TestServedDataPackagesValidate publishes every shared spend file and
// every demo file on a node, fetches the datapackage.json the node serves
// for each, and validates each against its file with Frictionless's
// JavaScript implementation (.ci/frictionless/validate.js): the
// descriptor must be valid and every row must cast, with 0 errors beyond
// the rows the descriptor declares ragged.
func TestServedDataPackagesValidate(t *testing.T) {
	nodeBin, modules := frictionlessJS(t)
	var files []string
	for _, dir := range []string{sharedSpendDir(t), filepath.Join("..", "cmd", "nii", "demodata")} {
		m, err := filepath.Glob(filepath.Join(dir, "*.csv"))
		if err != nil || len(m) == 0 {
			t.Fatalf("no CSV files in %s (%v)", dir, err)
		}
		files = append(files, m...)
	}
	n := nodetest.Start(t, nodetest.Config(t.TempDir(), "greenwich", nodetest.Options{}))
	var urls []string
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".csv")
		if strings.Contains(f, "demodata") {
			name = "demo-" + name
		}
		rec, err := n.Publish(context.Background(), bytes.NewReader(b), node.PublishRequest{Name: name, Filename: filepath.Base(f),
			Meta: nii.Metadata{Title: name, Licence: "OGL-UK-3.0"}})
		if err != nil {
			t.Fatalf("publish %s: %v", f, err)
		}
		if rec.Meta.Table == nil {
			t.Fatalf("%s (file %d) was not profiled as a table", f, i)
		}
		urls = append(urls, n.APIAddr()+"/api/v1/datasets/"+rec.Ref.Dataset.String()+"/datapackage.json")
	}
	script, _ := filepath.Abs(filepath.Join("..", ".ci", "frictionless", "validate.js"))
	cmd := exec.Command(nodeBin, append([]string{script}, urls...)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		t.Fatalf("validate.js: %v\n%s%s", err, out.String(), errb.String())
	}
	if got := strings.Count(out.String(), `"errors":[]`); got != len(files) {
		t.Fatalf("%d of %d resources validated:\n%s", got, len(files), out.String())
	}
}
