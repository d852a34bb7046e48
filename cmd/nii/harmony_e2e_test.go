package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii/internal/spenddata"

	"github.com/nii-uk/nii/node/api"
)

// Standards, mappings and merges with real processes, as their users run
// them: a standards body, three boroughs, a harmoniser (the GLA) and a
// fourth node that checks what the GLA published.

// sharedSpendFile is the path of one of the shared public spend files.
func sharedSpendFile(t *testing.T, name string) string { return spenddata.Path(name) }

func mappingFile(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "harmony", "testdata", "mappings", name+".map.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func standardFile(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "harmony", "standards", "lga-spend-over-500.json"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pollJSON runs a --json command until its decoded output satisfies ok
// or the deadline passes.
func pollJSON[T any](t *testing.T, home, what string, timeout time.Duration, ok func(v T) bool, args ...string) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := run(t, home, args...)
		var v T
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &v) == nil && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s; last: exit %d\n%s%s", timeout, what, r.code, r.stdout, r.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHarmonyOfProcesses(t *testing.T) {
	files := map[string]string{"lambeth": sharedSpendFile(t, "lambeth"), "trafford": sharedSpendFile(t, "trafford"), "leeds": sharedSpendFile(t, "leeds")}
	boroughs := []string{"lambeth", "trafford", "leeds"}

	lga := initHome(t, "lga")
	startDaemon(t, lga)
	var st api.Status
	json.Unmarshal([]byte(mustNii(t, lga, "status", "--json")), &st)
	join := st.Addresses["gossip"]
	homes := map[string]string{}
	for _, org := range append(boroughs, "gla") {
		homes[org] = initHome(t, org)
		startDaemon(t, homes[org], "--join", join)
	}
	gla := homes["gla"]

	out := mustNii(t, lga, "publish", standardFile(t), "--name", "spend-over-500", "--title", "Spend over £500 (LGA/LGTC 2015)", "--standard")
	if !strings.Contains(out, "published lga/spend-over-500@1") {
		t.Fatalf("publish --standard: %s", out)
	}
	for _, org := range boroughs {
		home := homes[org]
		mustNii(t, home, "publish", files[org], "--name", "spend", "--title", org+" spend over £500", "--licence", "OGL-UK-3.0")
		pollJSON(t, home, org+" knows the standard", 60*time.Second, func(s []api.StandardInfo) bool {
			return len(s) == 1 && s[0].Ref == "lga/spend-over-500@1"
		}, "standards", "--json")
		sug := mustNii(t, home, "map", "suggest", org+"/spend", "--to", "lga/spend-over-500")
		if !strings.Contains(sug, `standard = "lga/spend-over-500@1"`) || !strings.Contains(sug, "[fields.") {
			t.Fatalf("%s: map suggest printed:\n%s", org, sug)
		}
		var rep api.CheckReport
		if err := json.Unmarshal([]byte(mustNii(t, home, "map", "check", org+"/spend", mappingFile(t, org), "--json")), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Accepted == 0 || rep.Accepted+rep.Rejected != rep.DataRows {
			t.Fatalf("%s: map check: %+v", org, rep)
		}
		out := mustNii(t, home, "map", "publish", org+"/spend", mappingFile(t, org))
		if !strings.Contains(out, "published mapping "+org+"/spend--map--lga-spend-over-500@1") {
			t.Fatalf("%s: map publish: %s", org, out)
		}
	}

	// The GLA sees every borough's own mapping, and merges.
	pollJSON(t, gla, "gla sees three sources with their publishers' mappings", 60*time.Second, func(s []api.StandardInfo) bool {
		if len(s) != 1 || len(s[0].Sources) != 3 {
			return false
		}
		for _, src := range s[0].Sources {
			if src.Choice != api.ChoicePublisher {
				return false
			}
		}
		return true
	}, "standards", "--json")
	human := mustNii(t, gla, "standards")
	if !strings.Contains(human, "lambeth/spend--map--lga-spend-over-500@1 (publisher)") {
		t.Errorf("nii standards:\n%s", human)
	}
	dir := t.TempDir()
	pq, rejects := filepath.Join(dir, "london-spend.parquet"), filepath.Join(dir, "rejects.csv")
	var res api.MergeResult
	if err := json.Unmarshal([]byte(mustNii(t, gla, "merge", "lga/spend-over-500", "-o", pq, "--rejects", rejects, "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Sources) != 3 || res.Rows < 5000 || len(res.Missing) != 0 {
		t.Fatalf("merge: %+v", res)
	}
	if b, err := os.ReadFile(pq); err != nil || !bytes.HasPrefix(b, []byte("PAR1")) {
		t.Fatalf("merge -o %s: %v", pq, err)
	}
	if b, err := os.ReadFile(rejects); err != nil || !bytes.HasPrefix(b, []byte("_publisher,")) {
		t.Fatalf("merge --rejects: %v %.80q", err, b)
	}
	out = mustNii(t, gla, "merge", "lga/spend-over-500", "--publish", "gla/london-spend", "--watch")
	if !strings.Contains(out, "published gla/london-spend@1") || !strings.Contains(out, "keeping gla/london-spend current") {
		t.Fatalf("merge --publish --watch:\n%s", out)
	}

	// A fourth node pulls the merged dataset and checks its lineage.
	pollJSON(t, lga, "lga lists the merged dataset", 60*time.Second, func(cd api.CatalogDataset) bool { return cd.Version == 1 },
		"show", "gla/london-spend", "--json")
	merged := filepath.Join(dir, "london-spend.csv")
	mustNii(t, lga, "pull", "gla/london-spend", "-o", merged)
	f, err := os.Open(merged)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || int64(len(recs)-1) != res.Rows || recs[0][len(recs[0])-1] != "_mapping" {
		t.Fatalf("pulled merged table: %d rows (%v), header %v", len(recs)-1, err, recs[0])
	}
	// Every cite must be listed in lga's own catalog to check out, and the
	// mappings' adverts may still be spreading (a cite came back
	// "unlisted" on a fast run): poll, with pollNii's deadline, until the
	// lineage checks, then hold it to the assertions below.
	var lr api.LineageReport
	lout := pollNii(t, lga, "lga can check the merged dataset's lineage", func(o string) bool {
		var r api.LineageReport
		return json.Unmarshal([]byte(o), &r) == nil && r.OK
	}, "show", "gla/london-spend@1", "--lineage", "--json")
	if err := json.Unmarshal([]byte(lout), &lr); err != nil {
		t.Fatal(err)
	}
	if !lr.OK || len(lr.Inputs) != 3 {
		t.Fatalf("lineage: %+v", lr)
	}
	for _, in := range lr.Inputs {
		if in.Source.Status != api.LineageOK || in.Mapping == nil || in.Mapping.Status != api.LineageOK {
			t.Errorf("lineage input %+v", in)
		}
	}
	human = mustNii(t, lga, "show", "gla/london-spend@1", "--lineage")
	if !strings.Contains(human, "every cite checked out") || !strings.Contains(human, "leeds/spend@1") {
		t.Errorf("show --lineage:\n%s", human)
	}

	// Lambeth publishes a new version: the followed merge updates by
	// itself, re-mapping Lambeth alone.
	b, err := os.ReadFile(files["lambeth"])
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "lambeth-v2.csv")
	os.WriteFile(cut, bytes.Join(bytes.SplitAfter(b, []byte("\n"))[:1500], nil), 0o644)
	mustNii(t, homes["lambeth"], "publish", cut, "--name", "spend")
	ws := pollJSON(t, gla, "the merge is kept current", 120*time.Second, func(s []api.StandardInfo) bool {
		return len(s) == 1 && len(s[0].Watches) == 1 && s[0].Watches[0].Version == 2 && s[0].Watches[0].State == api.WatchCurrent
	}, "standards", "--json")
	if w := ws[0].Watches[0]; w.Remapped != 1 || w.Sources != 3 {
		t.Fatalf("the kept-current merge re-mapped %d of %d sources, want 1", w.Remapped, w.Sources)
	}
	pollJSON(t, lga, "lga lists version 2", 60*time.Second, func(cd api.CatalogDataset) bool { return cd.Version == 2 },
		"show", "gla/london-spend", "--json")
	if err := json.Unmarshal([]byte(mustNii(t, lga, "show", "gla/london-spend@2", "--lineage", "--json")), &lr); err != nil {
		t.Fatal(err)
	}
	if !lr.OK || lr.Inputs[0].Source.Ref != "lambeth/spend@2" {
		t.Fatalf("lineage of version 2: %+v", lr)
	}

	det := mustNii(t, gla, "standards", "show", "lga/spend-over-500")
	for _, want := range []string{"supplier_name", "MONTH (rows, reject rate)", "total £", "lambeth", "2012-06", "leeds/spend"} {
		if !strings.Contains(det, want) {
			t.Errorf("standards show lacks %q:\n%s", want, det)
		}
	}
}

// TestHarmonyBadInputsCLI: what a user who gets it wrong sees.
func TestHarmonyBadInputsCLI(t *testing.T) {
	home := initHome(t, "lga")
	startDaemon(t, home)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.schema.json")
	os.WriteFile(bad, []byte(`{"fields": [{"name": "amount", "type": "money"}]}`), 0o644)
	mustNii(t, home, "publish", standardFile(t), "--name", "spend-over-500", "--standard")
	mustNii(t, home, "publish", sharedSpendFile(t, "trafford"), "--name", "spend")
	m, err := os.ReadFile(mappingFile(t, "trafford"))
	if err != nil {
		t.Fatal(err)
	}
	misnamed := filepath.Join(dir, "misnamed.map.toml")
	os.WriteFile(misnamed, bytes.Replace(bytes.ReplaceAll(m, []byte(`"trafford/spend*"`), []byte(`"lga/spend"`)),
		[]byte(`from = "Supplier Name"`), []byte(`from = "Supplier Nmae"`), 1), 0o644)

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"a standard that is not a Table Schema", []string{"publish", bad, "--name", "bad", "--standard"},
			[]string{"not a valid Table Schema", `field "amount"`, `type "money"`}},
		{"a mapping naming a header the file lacks", []string{"map", "publish", "lga/spend", misnamed},
			[]string{`no column headed "Supplier Nmae"`, `the file's headers are "Body"`, `nearest match "Supplier Name"`}},
		{"map check, the same", []string{"map", "check", "lga/spend", misnamed}, []string{`nearest match "Supplier Name"`}},
		{"an unknown standard", []string{"merge", "nosuch/standard", "-o", filepath.Join(dir, "x.csv")}, []string{"unknown standard nosuch/standard"}},
		{"suggest to an unknown standard", []string{"map", "suggest", "lga/spend", "--to", "lga/nosuch"}, []string{"unknown standard lga/nosuch"}},
		{"a dataset that is not a standard", []string{"standards", "show", "lga/spend"}, []string{"is a dataset, not a standard"}},
		{"a watch without --publish", []string{"merge", "lga/spend-over-500", "--watch"}, []string{"--publish"}},
		{"an unknown format", []string{"merge", "lga/spend-over-500", "-o", filepath.Join(dir, "x.xlsx"), "--format", "xlsx"}, []string{"csv, parquet or ndjson"}},
		{"lineage of a plain dataset", []string{"show", "lga/spend@1", "--lineage"}, []string{"has no lineage"}},
	} {
		r := run(t, home, tc.args...)
		if r.code == 0 {
			t.Errorf("%s: exit 0\n%s", tc.name, r.stdout)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr %q does not say %q", tc.name, r.stderr, w)
			}
		}
	}
	// Nothing the refused commands did is visible.
	var ds []api.DatasetInfo
	json.Unmarshal([]byte(mustNii(t, home, "datasets", "--json")), &ds)
	if len(ds) != 2 {
		t.Fatalf("after refused commands the node holds %d datasets: %+v", len(ds), ds)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.csv")); !os.IsNotExist(err) {
		t.Error("a failed merge created its output file")
	}
}
