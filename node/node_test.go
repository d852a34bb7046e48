package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/exchange/chunker"
	"github.com/nii-uk/nii/internal/niitest"
	"github.com/nii-uk/nii/internal/spenddata"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
	"github.com/nii-uk/nii/query"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The SQL tests start this binary as their SQL worker.
	query.RunWorkerIfAsked()
	code := m.Run()
	if code == 0 {
		// memberlist's probeNode goroutine outlives Shutdown by up to one
		// probe interval (it waits for an ack or ProbeInterval, with no
		// shutdown case); the calmest federation here probes every second.
		// Anything still running after twice that is a leak.
		deadline := time.Now().Add(2 * time.Second)
		err := goleak.Find()
		for err != nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // polling interval
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

type testNode struct {
	*node.Node
	home   string
	client *api.Client
}

func newHome(t *testing.T, org string) string {
	t.Helper()
	// nodetest's config: every listener on loopback port 0, so these tests
	// never meet a node with the default ports on the machine.
	cfg := nodetest.Config(t.TempDir(), org, nodetest.Options{Federation: "london"})
	cfg.OrgName = "London Borough of " + org
	return nodetest.Init(t, cfg)
}

func startNode(t testing.TB, home string) *testNode {
	t.Helper()
	cfg, err := node.LoadConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	c, err := api.Dial(home)
	if err != nil {
		t.Fatal(err)
	}
	return &testNode{Node: n, home: home, client: c}
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func (tn *testNode) publish(t *testing.T, name string, data []byte, req node.PublishRequest) *api.VersionInfo {
	t.Helper()
	req.Name = name
	v, err := tn.client.Publish(context.Background(), nii.DatasetID{Org: tn.Config().Org, Name: name}, bytes.NewReader(data), api.PublishOptions{Filename: req.Filename, Meta: req.Meta})
	if err != nil {
		t.Fatalf("publish %s: %v", name, err)
	}
	return v
}

func (tn *testNode) export(t *testing.T, ref string) []byte {
	t.Helper()
	r, err := nii.ParseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, _, err := tn.client.Content(context.Background(), r, &buf); err != nil {
		t.Fatalf("export %s: %v", ref, err)
	}
	return buf.Bytes()
}

func TestPublishExportRoundTrip(t *testing.T) {
	tn := startNode(t, newHome(t, "greenwich"))
	p := chunker.Default()
	sizes := []int{0, 1, p.Min - 1, p.Min, p.Min + 1, p.Max - 1, p.Max, p.Max + 1, 24 << 20}
	for i, n := range sizes {
		name := fmt.Sprintf("file-%d", i)
		data := randBytes(uint64(n), n)
		v := tn.publish(t, name, data, node.PublishRequest{Filename: name + ".bin"})
		if v.Version != 1 || v.Size != int64(n) || v.Meta.ByteSize != int64(n) {
			t.Fatalf("size %d: published %+v", n, v)
		}
		if got := tn.export(t, "greenwich/"+name+"@1"); !bytes.Equal(got, data) {
			t.Fatalf("size %d: export differs from the original (%d bytes back)", n, len(got))
		}
	}
	st, err := tn.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Store.Datasets != int64(len(sizes)) || st.ID != tn.ID() || st.Org != "greenwich" || st.Federation != "london" {
		t.Fatalf("status: %+v", st)
	}
}

// spendCSV generates a transparency-code style CSV of n rows.
func spendCSV(n int, edit func(i int) string) []byte {
	var b bytes.Buffer
	b.WriteString("Body,Body name,Date,Transaction number,Amount,Supplier Name,Expense Type\r\n")
	r := rand.New(rand.NewPCG(9, 9))
	for i := range n {
		supplier := fmt.Sprintf("Supplier %d Ltd", r.IntN(5000))
		if edit != nil {
			if s := edit(i); s != "" {
				supplier = s
			}
		}
		fmt.Fprintf(&b, "E09000011,Greenwich,%02d/%02d/2024,%d,\"%d.%02d\",%s,%s\r\n",
			1+r.IntN(28), 1+r.IntN(12), 1900000000+i, 500+r.IntN(90000), r.IntN(100), supplier,
			[]string{"Agency staff", "Rent", "Consultancy", "IT software"}[r.IntN(4)])
	}
	return b.Bytes()
}

func TestNewVersionStoresOnlyChangedChunks(t *testing.T) {
	tn := startNode(t, newHome(t, "greenwich"))
	v1 := spendCSV(300_000, nil) // ~20 MB
	tn.publish(t, "spend", v1, node.PublishRequest{Filename: "spend.csv", Meta: nii.Metadata{Title: "Spend over £500", Licence: "OGL-UK-3.0"}})
	before, _ := tn.client.Status(context.Background())

	edited := map[int]bool{1000: true, 150_000: true, 299_000: true}
	v2 := spendCSV(300_000, func(i int) string {
		if edited[i] {
			return "Corrected Supplier PLC"
		}
		return ""
	})
	ver := tn.publish(t, "spend", v2, node.PublishRequest{Filename: "spend.csv"})
	after, _ := tn.client.Status(context.Background())
	added := after.Store.Chunks - before.Store.Chunks
	addedBytes := after.Store.ChunkBytes - before.Store.ChunkBytes
	t.Logf("v1 %d bytes in %d chunks; editing 3 rows added %d chunks, %d bytes", len(v1), before.Store.Chunks, added, addedBytes)
	if ver.Version != 2 || added < 1 || added > 6 || addedBytes > int64(6*chunker.Default().Max) {
		t.Fatalf("3 edited rows added %d chunks (%d bytes), want 1..6", added, addedBytes)
	}
	if !bytes.Equal(tn.export(t, "greenwich/spend@2"), v2) || !bytes.Equal(tn.export(t, "greenwich/spend@1"), v1) {
		t.Fatal("versions do not export byte-identical")
	}
	// Version 2 keeps version 1's title and licence, and its issue date.
	info, err := tn.client.Dataset(context.Background(), nii.DatasetID{Org: "greenwich", Name: "spend"})
	if err != nil {
		t.Fatal(err)
	}
	m1, m2 := info.Versions[0].Meta, info.Versions[1].Meta
	if info.Latest != 2 || m2.Title != "Spend over £500" || m2.Licence != "OGL-UK-3.0" || !m2.Issued.Equal(m1.Issued) || !m2.Modified.After(m1.Modified) {
		t.Fatalf("v2 metadata did not carry over: v1 %+v, v2 %+v", m1, m2)
	}
	if m2.Table == nil || m2.Table.Rows != 300_000 || len(m2.Table.Columns) != 7 {
		t.Fatalf("v2 table profile: %+v", m2.Table)
	}
}

func TestPublishRealCouncilFiles(t *testing.T) {
	tn := startNode(t, newHome(t, "lambeth"))
	for _, f := range []string{"lambeth.csv", "trafford.csv"} {
		data, err := os.ReadFile(spenddata.Path(strings.TrimSuffix(f, ".csv")))
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(f, ".csv") + "-spend"
		v := tn.publish(t, name, data, node.PublishRequest{Filename: f, Meta: nii.Metadata{
			Title: "Spend over £500", Licence: "OGL-UK-3.0", Keywords: []string{"spend", "transparency"}, Themes: []string{"finance"},
		}})
		m := v.Meta
		if m.MediaType != "text/csv" || m.Table == nil || m.Table.Rows != 2000 || m.Publisher != "lambeth" ||
			m.Access != nii.AccessOpen || len(m.Keywords) != 2 || m.Filename != f {
			t.Fatalf("%s: metadata %+v table %+v", f, m, m.Table)
		}
		if !bytes.Equal(tn.export(t, "lambeth/"+name), data) {
			t.Fatalf("%s: export differs", f)
		}
	}
}

func TestBadRequests(t *testing.T) {
	tn := startNode(t, newHome(t, "greenwich"))
	ctx := context.Background()
	tn.publish(t, "spend", []byte("a,b\n1,2\n"), node.PublishRequest{})

	check := func(what string, err error, status int, contains string) {
		t.Helper()
		var re *api.RemoteError
		if !errors.As(err, &re) || re.Status != status || !strings.Contains(re.Error(), contains) {
			t.Errorf("%s: got %v, want HTTP %d mentioning %q", what, err, status, contains)
		}
	}
	_, err := tn.client.Version(ctx, nii.Ref{Dataset: nii.DatasetID{Org: "greenwich", Name: "nope"}})
	check("unknown dataset", err, 404, "greenwich/nope")
	_, err = tn.client.Version(ctx, nii.Ref{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend"}, Version: 7})
	check("unknown version", err, 404, "greenwich/spend@7")
	_, err = tn.client.Publish(ctx, nii.DatasetID{Org: "greenwich", Name: "Bad Name"}, strings.NewReader("x"), api.PublishOptions{})
	check("invalid name", err, 400, "dataset name")
	_, err = tn.client.Publish(ctx, nii.DatasetID{Org: "lambeth", Name: "spend"}, strings.NewReader("x"), api.PublishOptions{})
	check("another org", err, 400, "publishes for org")
	_, err = tn.client.Publish(ctx, nii.DatasetID{Org: "greenwich", Name: "spend"}, strings.NewReader("x"), api.PublishOptions{Meta: nii.Metadata{Keywords: []string{strings.Repeat("k", 100)}}})
	check("oversized keyword", err, 400, "keyword")

	anon := *tn.client
	anon.Token = ""
	_, err = anon.Publish(ctx, nii.DatasetID{Org: "greenwich", Name: "spend"}, strings.NewReader("x"), api.PublishOptions{})
	check("no admin token", err, 401, "admin token")
	anon.Token = strings.Repeat("0", 64)
	_, err = anon.Publish(ctx, nii.DatasetID{Org: "greenwich", Name: "spend"}, strings.NewReader("x"), api.PublishOptions{})
	check("wrong admin token", err, 401, "admin token")

	// None of the refused requests changed anything.
	ds, err := tn.client.Datasets(ctx)
	if err != nil || len(ds) != 1 || ds[0].Latest != 1 {
		t.Fatalf("after refused requests: %+v, %v", ds, err)
	}
}

// A publish whose upload breaks off leaves no version behind.
func TestInterruptedUploadLeavesNothing(t *testing.T) {
	tn := startNode(t, newHome(t, "greenwich"))
	r := io.MultiReader(bytes.NewReader(randBytes(1, 3<<20)), errReader{})
	_, err := tn.Publish(context.Background(), r, node.PublishRequest{Name: "spend"})
	if err == nil {
		t.Fatal("publish of a failing reader succeeded")
	}
	if _, err := tn.Store().Latest(nii.DatasetID{Org: "greenwich", Name: "spend"}); !errors.Is(err, nii.ErrNotFound) {
		t.Fatalf("a failed publish left a version: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk went away") }

func TestHomeIsPrivateAndLocked(t *testing.T) {
	home := newHome(t, "greenwich")
	cfg, _ := node.LoadConfig(home)
	if _, err := node.Init(cfg); !errors.Is(err, node.ErrHomeExists) {
		t.Fatalf("second init: %v, want ErrHomeExists", err)
	}
	tn := startNode(t, home)
	for f, want := range map[string]os.FileMode{".": 0o700, node.KeyFile: 0o600, node.TokenFile: 0o600, node.ConfigFile: 0o600} {
		fi, err := os.Stat(filepath.Join(home, f))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", f, fi.Mode().Perm(), err, want)
		}
	}
	// A second node on the same home is refused while the first runs.
	n2, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Start(context.Background()); !errors.Is(err, node.ErrInUse) {
		t.Fatalf("second Start on the same home: %v, want ErrInUse", err)
	}
	n2.Close()
	// Close is idempotent, removes the API files, and frees the home.
	if err := tn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tn.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, node.TokenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("admin token left behind after Close: %v", err)
	}
	if _, err := api.Dial(home); !errors.Is(err, api.ErrNotRunning) {
		t.Fatalf("Dial after Close: %v, want ErrNotRunning", err)
	}
	startNode(t, home)
}

func TestKeyWithLoosePermissionsIsRefused(t *testing.T) {
	home := newHome(t, "greenwich")
	os.Chmod(filepath.Join(home, node.KeyFile), 0o644)
	cfg, _ := node.LoadConfig(home)
	if _, err := node.New(cfg); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("node key readable by others: %v, want a refusal", err)
	}
}

// publishCorrupt publishes a 2 MiB version on a node of a new home, stops
// the node and flips a byte of one of its chunks where it lives, its pack
// file: an export of it must fail.
func publishCorrupt(t *testing.T) (string, *exchange.VersionRecord) {
	t.Helper()
	home := newHome(t, "greenwich")
	tn := startNode(t, home)
	data := randBytes(5, 2<<20)
	tn.publish(t, "spend", data, node.PublishRequest{})
	rec, err := tn.Store().Latest(nii.DatasetID{Org: "greenwich", Name: "spend"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := tn.Store().OpenManifest(rec)
	if err != nil {
		t.Fatal(err)
	}
	tn.Close()

	// Flip a byte of one stored chunk behind the node's back, where it
	// lives: its pack file.
	db := niitest.OpenDB(t, filepath.Join(home, node.StoreDir))
	st, err := exchange.NewStore(db, chunker.Default())
	if err != nil {
		t.Fatal(err)
	}
	path, off, _, err := st.ChunkFile(m.Chunks[3].Hash)
	st.Close()
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, off+100)
	b[0] ^= 1
	_, err = f.WriteAt(b, off+100)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return home, rec
}

func TestCorruptChunkFailsExport(t *testing.T) {
	home, rec := publishCorrupt(t)
	tn := startNode(t, home)
	out := filepath.Join(t.TempDir(), "copy.csv")
	err := node.WriteFileAtomic(out, 0o644, func(w io.Writer) error {
		_, _, err := tn.client.Content(context.Background(), nii.Ref{Dataset: rec.Ref.Dataset, Version: 1}, w)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("export over a corrupt chunk: %v, want an error saying corrupt", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 0 {
		t.Fatalf("a failed export left files behind: %v", entries)
	}
}
