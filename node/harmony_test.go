package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii/internal/spenddata"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
)

// sharedSpend returns the path of a shared public spend file.
func sharedSpend(t testing.TB, name string) string { return spenddata.Path(name) }

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testMapping(t testing.TB, name string) string {
	t.Helper()
	return string(readFile(t, filepath.Join("..", "harmony", "testdata", "mappings", name+".map.toml")))
}

var lgaStd = nii.DatasetID{Org: "lga", Name: "spend-over-500"}

func publishStandard(t testing.TB, n *node.Node) *api.VersionInfo {
	t.Helper()
	b, err := harmony.SampleStandard(harmony.LGASpend)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := n.Publish(context.Background(), bytes.NewReader(b), node.PublishRequest{Name: lgaStd.Name, Filename: "lga-spend.schema.json",
		Meta: nii.Metadata{Title: "Spend over £500 (LGA/LGTC 2015)", Kind: nii.KindStandard}})
	if err != nil {
		t.Fatal(err)
	}
	v := api.VersionInfo{Ref: rec.Ref.String(), Manifest: rec.Manifest}
	return &v
}

func publishSpend(t testing.TB, n *node.Node, name string, data []byte) {
	t.Helper()
	if _, err := n.Publish(context.Background(), bytes.NewReader(data), node.PublishRequest{Name: name, Filename: name + ".csv",
		Meta: nii.Metadata{Title: n.Config().Org + " spend", Licence: "OGL-UK-3.0"}}); err != nil {
		t.Fatal(err)
	}
}

// harmonyFederation is lga (the standard), lambeth and trafford (their
// spend files), and gla (a harmoniser that merges), gla trusting its own
// mappings.
func harmonyFederation(t *testing.T) (lga, lambeth, trafford, gla *node.Node) {
	orgs := []string{"lga", "lambeth", "trafford", "gla"}
	nodes := nodetest.Federation(t, len(orgs), nodetest.Options{Configure: func(i int, cfg *node.Config) {
		cfg.Org = orgs[i]
		if orgs[i] == "gla" {
			cfg.Harmony.TrustedHarmonisers = []string{"gla"}
		}
	}})
	return nodes[0], nodes[1], nodes[2], nodes[3]
}

// readCSV reads a merged table's records, header first.
func readCSV(t testing.TB, b []byte) [][]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func content(t testing.TB, n *node.Node, ref nii.Ref) []byte {
	t.Helper()
	rec, err := n.Store().Version(ref)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := n.Store().WriteTo(context.Background(), rec, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestHarmonyFederation runs the whole path through real nodes: a
// standard published as a dataset, a publisher's own mapping and a
// harmoniser's, the merge choosing between them, the merged dataset
// published with its lineage, its rows traceable to signed source lines,
// lineage verified from another node and a forged cite detected, and a
// watched merge re-mapping only the source that changed while the next
// version shares the unchanged partition's chunks.
func TestHarmonyFederation(t *testing.T) {
	lambethCSV := readFile(t, sharedSpend(t, "lambeth"))
	traffordCSV := readFile(t, sharedSpend(t, "trafford"))
	lga, lambeth, trafford, gla := harmonyFederation(t)
	ctx := context.Background()
	publishStandard(t, lga)
	publishSpend(t, lambeth, "spend", lambethCSV)
	publishSpend(t, trafford, "spend", traffordCSV)
	nodetest.WaitFor(t, 30*time.Second, "every node lists the standard and both files", func() bool {
		for _, n := range []*node.Node{lambeth, gla} {
			if !sees(n, "lga/spend-over-500", 1) || !sees(n, "lambeth/spend", 1) || !sees(n, "trafford/spend", 1) {
				return false
			}
		}
		return true
	})

	// Lambeth publishes its own mapping; the GLA publishes one for
	// Trafford, as a harmoniser, and one for Lambeth that Lambeth's own
	// must beat.
	pub, err := lambeth.PublishMapping(ctx, api.MappingPublishRequest{Dataset: "lambeth/spend", Mapping: testMapping(t, "lambeth")})
	if err != nil {
		t.Fatal(err)
	}
	if pub.Version.Ref != "lambeth/spend--map--lga-spend-over-500@1" || pub.Check == nil || pub.Check.Rejected != 0 || pub.Check.Accepted == 0 {
		t.Fatalf("lambeth's mapping: %+v %+v", pub.Version, pub.Check)
	}
	lambethMap := pub.Version.Manifest
	tpub, err := gla.PublishMapping(ctx, api.MappingPublishRequest{Dataset: "trafford/spend", Mapping: testMapping(t, "trafford")})
	if err != nil {
		t.Fatal(err)
	}
	if tpub.Version.Ref != "gla/trafford-spend--map--lga-spend-over-500@1" {
		t.Fatalf("the harmoniser's mapping is %s", tpub.Version.Ref)
	}
	if _, err := gla.PublishMapping(ctx, api.MappingPublishRequest{Dataset: "lambeth/spend", Mapping: testMapping(t, "lambeth")}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 30*time.Second, "gla and lambeth list each other's mappings", func() bool {
		return sees(gla, "lambeth/spend--map--lga-spend-over-500", 1) && sees(lambeth, "gla/trafford-spend--map--lga-spend-over-500", 1)
	})

	stds, err := gla.Standards()
	if err != nil || len(stds) != 1 || len(stds[0].Sources) != 2 {
		t.Fatalf("standards: %+v %v", stds, err)
	}
	for _, s := range stds[0].Sources {
		want := map[string]string{"lambeth/spend": api.ChoicePublisher, "trafford/spend": api.ChoiceHarmoniser}[s.Dataset]
		if s.Choice != want || s.Mapping == nil {
			t.Errorf("%s: choice %s (%s), want %s", s.Dataset, s.Choice, s.Why, want)
		}
	}
	// Lambeth does not trust the GLA: trafford/spend has no usable mapping there.
	if lstds, _ := lambeth.Standards(); len(lstds) != 1 || len(lstds[0].Sources) != 2 {
		t.Fatalf("lambeth's standards: %+v", lstds)
	} else {
		for _, s := range lstds[0].Sources {
			if s.Dataset == "trafford/spend" && (s.Choice != api.ChoiceNone || !strings.Contains(s.Why, "trusted_harmonisers")) {
				t.Errorf("lambeth applies %s (%s) to trafford/spend", s.Choice, s.Why)
			}
		}
	}

	out, err := gla.Merge(ctx, nii.Ref{Dataset: lgaStd}, node.MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Inputs) != 2 || len(out.Missing) != 0 || out.Merged.Remapped != 2 {
		t.Fatalf("merge: %d inputs, %d missing, %d remapped", len(out.Inputs), len(out.Missing), out.Merged.Remapped)
	}
	var accepted int64
	for _, in := range out.Inputs {
		r := in.Result.Report
		if r.Accepted+r.Rejected != r.DataRows || r.DataRows < 1900 {
			t.Errorf("%s: %d accepted + %d rejected of %d data rows", in.Source.Ref, r.Accepted, r.Rejected, r.DataRows)
		}
		accepted += r.Accepted
	}
	rec, err := gla.PublishMerged(ctx, out, "london-spend", "")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Meta.Kind != nii.KindMerged || rec.Meta.ConformsTo != "lga/spend-over-500@1" || rec.Meta.Table == nil || rec.Meta.Table.Rows != accepted {
		t.Fatalf("merged metadata: %+v", rec.Meta)
	}
	m, err := gla.Store().OpenManifest(rec)
	if err != nil {
		t.Fatal(err)
	}
	l := m.Lineage
	if l == nil || len(l.Inputs) != 2 || l.Standard.Dataset != lgaStd || l.Inputs[0].Mapping.Manifest != lambethMap ||
		l.Inputs[1].Mapping.Manifest != tpub.Version.Manifest {
		t.Fatalf("lineage: %+v", l)
	}

	// Provenance: each sampled row cites its source's manifest, its
	// mapping's manifest and a line that holds the row's raw supplier.
	merged := readCSV(t, content(t, gla, rec.Ref))
	col := map[string]int{}
	for i, c := range merged[0] {
		col[c] = i
	}
	sourceLines := map[nii.Hash][]string{}
	for _, in := range out.Inputs {
		sourceLines[in.Source.Manifest] = strings.Split(string(content(t, gla, in.Source.Ref)), "\n")
	}
	for i := 1; i < len(merged); i += 97 {
		row := merged[i]
		h, _ := nii.ParseHash(row[col[harmony.ColManifest]])
		lines := sourceLines[h]
		if lines == nil {
			t.Fatalf("row %d cites manifest %s, no input's", i, h)
		}
		var mapping nii.Hash
		for _, x := range l.Inputs {
			if x.Source.Manifest == h {
				mapping = x.Mapping.Manifest
			}
		}
		if row[col[harmony.ColMapping]] != mapping.String() {
			t.Fatalf("row %d cites mapping %s, the lineage %s", i, row[col[harmony.ColMapping]], mapping)
		}
		line, _ := strconv.Atoi(row[col[harmony.ColLine]])
		sup := row[col["supplier_name"]]
		if raw := lines[line-1]; !strings.Contains(raw, sup) && !strings.Contains(raw, strings.ReplaceAll(sup, `"`, `""`)) {
			t.Fatalf("row %d: line %d of %s is %q, not from supplier %q", i, line, row[col[harmony.ColDataset]], raw, sup)
		}
	}

	// Lineage from another node, which holds none of it: every cite
	// fetched and checked.
	nodetest.WaitFor(t, 30*time.Second, "lambeth lists the merged dataset", func() bool { return sees(lambeth, "gla/london-spend", 1) })
	lr, err := lambeth.CheckLineage(ctx, nii.Ref{Dataset: rec.Ref.Dataset, Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !lr.OK || lr.Merged.Status != api.LineageOK || lr.Standard.Status != api.LineageOK || len(lr.Inputs) != 2 {
		t.Fatalf("lineage report: %+v", lr)
	}
	for _, in := range lr.Inputs {
		if in.Source.Status != api.LineageOK || in.Mapping == nil || in.Mapping.Status != api.LineageOK || in.Source.Signer == "" {
			t.Errorf("input %+v", in)
		}
	}
	// A merged version citing a manifest its publisher never signed for
	// that version (here, trafford's cite replaced) is caught.
	forged := *l
	forged.Inputs = append([]nii.LineageInput(nil), l.Inputs...)
	forged.Inputs[1].Source.Manifest = nii.HashOf([]byte("not what trafford published"))
	if _, err := gla.Publish(ctx, bytes.NewReader(content(t, gla, rec.Ref)), node.PublishRequest{Name: "london-spend-forged",
		Meta: nii.Metadata{Kind: nii.KindMerged, ConformsTo: "lga/spend-over-500@1", MediaType: "text/csv"}, Lineage: &forged}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 30*time.Second, "lambeth lists the forged dataset", func() bool { return sees(lambeth, "gla/london-spend-forged", 1) })
	fr, err := lambeth.CheckLineage(ctx, nii.Ref{Dataset: nii.DatasetID{Org: "gla", Name: "london-spend-forged"}})
	if err != nil {
		t.Fatal(err)
	}
	if fr.OK || fr.Problems != 1 || fr.Inputs[1].Source.Status != api.LineageMismatch || fr.Inputs[0].Source.Status != api.LineageOK {
		t.Fatalf("forged lineage not caught: %+v", fr)
	}
	if !strings.Contains(fr.Inputs[1].Source.Detail, "not built from what the publisher published") {
		t.Errorf("mismatch detail: %s", fr.Inputs[1].Source.Detail)
	}

	// Keep it current: the watch's first merge changes nothing; Lambeth's
	// next version re-maps Lambeth alone and shares Trafford's chunks.
	if _, err := gla.StartWatch(node.WatchRequest{Standard: nii.Ref{Dataset: lgaStd}, Name: "london-spend"}); err != nil {
		t.Fatal(err)
	}
	waitWatch := func(what string, ok func(w node.Watch) bool) node.Watch {
		var got node.Watch
		nodetest.WaitFor(t, 60*time.Second, what, func() bool {
			ws, err := gla.Watches()
			if err != nil || len(ws) != 1 {
				return false
			}
			got = ws[0]
			return ok(got)
		})
		return got
	}
	w := waitWatch("the watch is current", func(w node.Watch) bool { return w.State == node.WatchCurrent })
	if w.Version != 1 || w.Remapped != 0 {
		t.Fatalf("watch after its first merge: version %d, remapped %d", w.Version, w.Remapped)
	}
	lines := bytes.SplitAfter(lambethCSV, []byte("\n"))
	publishSpend(t, lambeth, "spend", bytes.Join(lines[:1200], nil))
	w = waitWatch("the watch publishes version 2", func(w node.Watch) bool { return w.Version == 2 && w.State == node.WatchCurrent })
	if w.Remapped != 1 || w.Sources != 2 {
		t.Fatalf("re-merge: %d of %d sources re-mapped, want 1", w.Remapped, w.Sources)
	}
	v1, _ := gla.Store().OpenManifest(rec)
	rec2, err := gla.Store().Version(nii.Ref{Dataset: rec.Ref.Dataset, Version: 2})
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := gla.Store().OpenManifest(rec2)
	if v2.Lineage.Inputs[0].Source.Version != 2 || v2.Lineage.Inputs[1].Source != v1.Lineage.Inputs[1].Source {
		t.Fatalf("v2 lineage: %+v", v2.Lineage.Inputs)
	}
	// Each source's rows are chunked apart: every v1 chunk of Trafford's
	// partition is in v2.
	body := content(t, gla, rec.Ref)
	start := int64(bytes.Index(body, []byte(",trafford,trafford/spend,")))
	start = int64(bytes.LastIndexByte(body[:start], '\n') + 1)
	in2 := map[nii.Hash]bool{}
	for _, c := range v2.Chunks {
		in2[c.Hash] = true
	}
	var off int64
	shared, inside := 0, 0
	for _, c := range v1.Chunks {
		if off >= start {
			inside++
			if in2[c.Hash] {
				shared++
			}
		}
		off += int64(c.Size)
	}
	if inside == 0 || shared != inside {
		t.Fatalf("v2 shares %d of the %d chunks of trafford's unchanged partition", shared, inside)
	}
	t.Logf("v2 shares all %d chunks of the unchanged partition; %d of v1's %d chunks in all", shared, countShared(v1, in2), len(v1.Chunks))
}

func countShared(m *nii.Manifest, in map[nii.Hash]bool) int {
	k := 0
	for _, c := range m.Chunks {
		if in[c.Hash] {
			k++
		}
	}
	return k
}

// TestHarmonyBadInputs: the refusals a user meets through the API, each
// saying what is wrong and what to do.
func TestHarmonyBadInputs(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t.TempDir(), "lga", nodetest.Options{}))
	ctx := context.Background()
	cl := &api.Client{Base: n.APIAddr(), Token: n.AdminToken()}
	publishStandard(t, n)
	publishSpend(t, n, "spend", readFile(t, sharedSpend(t, "trafford")))
	traffordMap := strings.ReplaceAll(testMapping(t, "trafford"), `"trafford/spend*"`, `"lga/spend"`)

	badSchema := `{"fields": [{"name": "amount", "type": "money"}]}`
	cases := []struct {
		name string
		call func() error
		kind error
		want []string
	}{
		{"a standard that is not a Table Schema", func() error {
			_, err := cl.Publish(ctx, nii.DatasetID{Org: "lga", Name: "bad-standard"}, strings.NewReader(badSchema),
				api.PublishOptions{Filename: "bad.schema.json", Meta: nii.Metadata{Kind: nii.KindStandard}})
			return err
		}, nii.ErrInvalid, []string{"not a valid Table Schema", `field "amount"`, `"money"`}},
		{"a standard that is not JSON", func() error {
			_, err := cl.Publish(ctx, nii.DatasetID{Org: "lga", Name: "bad-standard"}, strings.NewReader("name,type\n"),
				api.PublishOptions{Meta: nii.Metadata{Kind: nii.KindStandard}})
			return err
		}, nii.ErrInvalid, []string{"not a valid Table Schema"}},
		{"a mapping naming a header the file lacks", func() error {
			_, err := cl.PublishMapping(ctx, api.MappingPublishRequest{Dataset: "lga/spend",
				Mapping: strings.Replace(traffordMap, `from = "Supplier Name"`, `from = "Supplier Nmae"`, 1)})
			return err
		}, nii.ErrInvalid, []string{`no column headed "Supplier Nmae"`, `the file's headers are "Body", "Body name"`, `nearest match "Supplier Name"`}},
		{"map check with a header the file lacks", func() error {
			_, err := cl.Check(ctx, api.CheckRequest{Ref: "lga/spend", Mapping: strings.Replace(traffordMap, `from = "Supplier Name"`, `from = "Supplier Nmae"`, 1)})
			return err
		}, nii.ErrInvalid, []string{`nearest match "Supplier Name"`}},
		{"merge of an unknown standard", func() error {
			_, err := cl.Merge(ctx, api.MergeRequest{Standard: "nosuch/standard"})
			return err
		}, nii.ErrNotFound, []string{"unknown standard nosuch/standard", "nii standards"}},
		{"merge of a dataset that is not a standard", func() error {
			_, err := cl.Merge(ctx, api.MergeRequest{Standard: "lga/spend"})
			return err
		}, nii.ErrInvalid, []string{"lga/spend is a dataset, not a standard", "--standard"}},
		{"a mapping for an unknown standard", func() error {
			_, err := cl.PublishMapping(ctx, api.MappingPublishRequest{Dataset: "lga/spend",
				Mapping: strings.Replace(traffordMap, `"lga/spend-over-500@1"`, `"lga/spend-over-25k@1"`, 1)})
			return err
		}, nii.ErrNotFound, []string{"unknown standard lga/spend-over-25k"}},
		{"a mapping that does not name the dataset", func() error {
			_, err := cl.PublishMapping(ctx, api.MappingPublishRequest{Dataset: "lga/spend", Mapping: testMapping(t, "trafford")})
			return err
		}, nii.ErrInvalid, []string{"does not name lga/spend"}},
		{"a mapping for another version of the standard", func() error {
			_, err := cl.PublishMapping(ctx, api.MappingPublishRequest{Dataset: "lga/spend",
				Mapping: strings.Replace(traffordMap, `"lga/spend-over-500@1"`, `"lga/spend-over-500@2"`, 1)})
			return err
		}, nii.ErrNotFound, []string{"lga/spend-over-500 has no version 2"}},
		{"a mapping that is not TOML", func() error {
			_, err := cl.Check(ctx, api.CheckRequest{Ref: "lga/spend", Mapping: "standard = "})
			return err
		}, nii.ErrInvalid, []string{"TOML syntax"}},
		{"a merged dataset published by hand", func() error {
			_, err := cl.Publish(ctx, nii.DatasetID{Org: "lga", Name: "merged"}, strings.NewReader("a,b\n1,2\n"),
				api.PublishOptions{Meta: nii.Metadata{Kind: nii.KindMerged}})
			return err
		}, nii.ErrInvalid, []string{"nii merge STANDARD --publish"}},
		{"a watch without a name to publish", func() error {
			_, err := cl.Merge(ctx, api.MergeRequest{Standard: "lga/spend-over-500", Watch: true})
			return err
		}, nii.ErrInvalid, []string{"give publish too"}},
		{"a lineage of a dataset that is not merged", func() error {
			_, err := cl.Lineage(ctx, nii.Ref{Dataset: nii.DatasetID{Org: "lga", Name: "spend"}})
			return err
		}, nii.ErrInvalid, []string{"has no lineage"}},
		{"a merge with no source", func() error {
			_, err := cl.Merge(ctx, api.MergeRequest{Standard: "lga/spend-over-500"})
			return err
		}, nii.ErrNotFound, []string{"no dataset in the federated catalog conforms to it"}},
		{"a merge kept no longer", func() error {
			_, err := cl.MergeTable(ctx, "0123456789abcdef", api.FormatCSV, false, false, io.Discard)
			return err
		}, nii.ErrNotFound, []string{"merge again"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, c.kind) {
				t.Errorf("error %v is not of kind %v", err, c.kind)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}

}

// TestHarmonyIdentityAndOutputs: a dataset that declares conformance is
// merged with the identity mapping, and the kept merge streams as CSV,
// NDJSON and Parquet, with rejects, through the API.
func TestHarmonyIdentityAndOutputs(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t.TempDir(), "lga", nodetest.Options{}))
	ctx := context.Background()
	cl := &api.Client{Base: n.APIAddr(), Token: n.AdminToken()}
	publishStandard(t, n)
	data := "body_name,date,amount,supplier_name,capital_revenue\n" +
		"Local Government Association,2024-04-02,1234.50,Acme Ltd,Revenue\n" +
		"Local Government Association,2024-04-03,99.00,\"Smith, Jones & Co Limited\",Capital\n" +
		"Local Government Association,03/04/2024,12.00,Acme Ltd,Revenue\n"
	if _, err := n.Publish(ctx, strings.NewReader(data), node.PublishRequest{Name: "spend", Filename: "spend.csv",
		Meta: nii.Metadata{ConformsTo: "lga/spend-over-500"}}); err != nil {
		t.Fatal(err)
	}
	res, err := cl.Merge(ctx, api.MergeRequest{Standard: "lga/spend-over-500", Publish: "lga/merged-spend"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sources) != 1 || res.Sources[0].Choice != api.ChoiceIdentity || res.Rows != 2 || res.Rejected != 1 || res.Published == nil {
		t.Fatalf("identity merge: %+v", res)
	}
	var csvOut, nd, pq, rej bytes.Buffer
	for _, o := range []struct {
		format  string
		rejects bool
		w       *bytes.Buffer
	}{{api.FormatCSV, false, &csvOut}, {api.FormatNDJSON, false, &nd}, {api.FormatParquet, false, &pq}, {api.FormatCSV, true, &rej}} {
		if _, err := cl.MergeTable(ctx, res.ID, o.format, o.format == api.FormatCSV && !o.rejects, o.rejects, o.w); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.HasPrefix(csvOut.Bytes(), []byte("\ufeffbody,")) || bytes.Count(csvOut.Bytes(), []byte("\n")) != 3 {
		t.Errorf("csv: %q", csvOut.String())
	}
	if sc := bufio.NewScanner(&nd); !sc.Scan() || !strings.Contains(sc.Text(), `"amount":1234.50`) {
		t.Errorf("ndjson: %q", nd.String())
	}
	if _, err := cl.MergeTable(ctx, res.ID, "xlsx", false, false, io.Discard); !errors.Is(err, nii.ErrInvalid) || !strings.Contains(err.Error(), `format "xlsx"`) {
		t.Errorf("an unknown format: %v", err)
	}
	if !bytes.HasPrefix(pq.Bytes(), []byte("PAR1")) {
		t.Errorf("parquet: %d bytes", pq.Len())
	}
	if !strings.Contains(rej.String(), "03/04/2024") || !strings.Contains(rej.String(), ",type,date,") {
		t.Errorf("rejects: %q", rej.String())
	}
	// Published again with nothing changed: the same version.
	again, err := cl.Merge(ctx, api.MergeRequest{Standard: "lga/spend-over-500", Publish: "merged-spend"})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Unchanged || again.Published.Version != 1 || again.Remapped != 0 {
		t.Fatalf("re-publish of an unchanged merge: unchanged %v, version %d, remapped %d", again.Unchanged, again.Published.Version, again.Remapped)
	}
	lr, err := cl.Lineage(ctx, nii.Ref{Dataset: nii.DatasetID{Org: "lga", Name: "merged-spend"}})
	if err != nil {
		t.Fatal(err)
	}
	if !lr.OK || len(lr.Inputs) != 1 || lr.Inputs[0].Mapping != nil || !lr.Inputs[0].Source.Held {
		t.Fatalf("lineage of an identity merge: %+v", lr)
	}
	det, err := cl.Standard(ctx, nii.Ref{Dataset: lgaStd})
	if err != nil {
		t.Fatal(err)
	}
	if len(det.Fields) != 15 || det.Fitness == nil || len(det.Fitness.Coverage) == 0 || det.Fitness.Sources[0].Rejected != 1 {
		t.Fatalf("standards show: %+v", det)
	}
}

// TestMergedViews: what the node offers SQL — the newest kept merge of
// each standard, and after a restart (no merge kept) the merged dataset it
// published.
func TestMergedViews(t *testing.T) {
	cfg := nodetest.Config(t.TempDir(), "lga", nodetest.Options{})
	n := nodetest.Start(t, cfg)
	ctx := context.Background()
	publishStandard(t, n)
	publishSpend(t, n, "spend", readFile(t, sharedSpend(t, "trafford")))
	m := strings.ReplaceAll(testMapping(t, "trafford"), `"trafford/spend*"`, `"lga/spend"`)
	if _, err := n.PublishMapping(ctx, api.MappingPublishRequest{Dataset: "lga/spend", Mapping: m}); err != nil {
		t.Fatal(err)
	}
	if vs, err := n.MergedViewsForTest(ctx); err != nil || len(vs) != 0 {
		t.Fatalf("views before any merge: %v %v", vs, err)
	}
	out, err := n.Merge(ctx, nii.Ref{Dataset: lgaStd}, node.MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.PublishMerged(ctx, out, "merged-spend", ""); err != nil {
		t.Fatal(err)
	}
	rows := func(v node.MergedView) int {
		k := 0
		if err := v.Rows(ctx, func(rec []string) error {
			if len(rec) != len(v.Columns) {
				t.Fatalf("a row of %d cells, %d columns", len(rec), len(v.Columns))
			}
			k++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return k
	}
	vs, err := n.MergedViewsForTest(ctx)
	if err != nil || len(vs) != 1 || vs[0].Standard.Dataset != lgaStd || !vs[0].Open || vs[0].Sources != 1 {
		t.Fatalf("views after a merge: %+v %v", vs, err)
	}
	if got := rows(vs[0]); int64(got) != out.Inputs[0].Result.Report.Accepted {
		t.Fatalf("the view has %d rows, the merge %d", got, out.Inputs[0].Result.Report.Accepted)
	}
	key := vs[0].Key
	n.Close()
	n = nodetest.Restart(t, cfg)
	vs, err = n.MergedViewsForTest(ctx)
	if err != nil || len(vs) != 1 || vs[0].Standard.Dataset != lgaStd || vs[0].Key == key || vs[0].Sources != 1 {
		t.Fatalf("views after a restart: %+v %v", vs, err)
	}
	if got := rows(vs[0]); int64(got) != out.Inputs[0].Result.Report.Accepted {
		t.Fatalf("the held merged dataset's view has %d rows, the merge %d", got, out.Inputs[0].Result.Report.Accepted)
	}
	// A restricted source makes the merge, its view and its published
	// dataset restricted.
	if _, err := n.Publish(ctx, bytes.NewReader(readFile(t, sharedSpend(t, "trafford"))), node.PublishRequest{Name: "spend", Filename: "spend.csv",
		Meta: nii.Metadata{Access: nii.AccessRestricted}}); err != nil {
		t.Fatal(err)
	}
	out, err = n.Merge(ctx, nii.Ref{Dataset: lgaStd}, node.MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := n.PublishMerged(ctx, out, "merged-spend", "")
	if err != nil {
		t.Fatal(err)
	}
	vs, _ = n.MergedViewsForTest(ctx)
	if rec.Meta.Access != nii.AccessRestricted || len(vs) != 1 || vs[0].Open {
		t.Fatalf("a merge of a restricted source: published %s, views %+v", rec.Meta.Access, vs)
	}
}
