package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
	"github.com/nii-uk/nii/registry/search"
	"github.com/nii-uk/nii/web"
)

// A CSV whose cells and title try to run script: the pages must show
// them as text.
const (
	hostileTitle = `Spend over £500 <script>window.__pwned="title"</script>`
	hostileCell  = `<script>window.__pwned="cell"</script>`
)

var spendCSV = "Date,Supplier,Amount,Note\n" +
	"2026-01-05,Acme Ltd,1200.50," + hostileCell + "\n" +
	"2026-01-19,Bravo & Sons,560.00,ok\n" +
	"2026-02-02,Acme Ltd,730.25,\n" +
	"2026-02-14,Charlie plc,9100.00,\"quoted, cell\"\n"

func publish(t *testing.T, n *node.Node, name, filename, data string, m nii.Metadata) {
	t.Helper()
	if _, err := n.Publish(context.Background(), strings.NewReader(data), node.PublishRequest{Name: name, Filename: filename, Meta: m}); err != nil {
		t.Fatalf("publish %s: %v", name, err)
	}
}

// fed is a two-node federation: org0 publishes, org1 (which holds
// nothing) serves the pages people read.
func fed(t *testing.T) (pub, reader *node.Node, total int) {
	t.Helper()
	nodes := nodetest.Federation(t, 2, nodetest.Options{})
	pub, reader = nodes[0], nodes[1]
	publish(t, pub, "spend", "spend-2026.csv", spendCSV, nii.Metadata{
		Title: hostileTitle, Description: "Payments over £500, January and February 2026.",
		Licence: "OGL-UK-3.0", Themes: []string{"finance"}, Keywords: []string{"spend"}, Access: nii.AccessOpen,
	})
	for i, theme := range []string{"environment", "environment", "transport", "transport", "planning", "planning"} {
		publish(t, pub, fmt.Sprintf("data-%d", i), fmt.Sprintf("data-%d.csv", i), fmt.Sprintf("id,value\n%d,%d\n", i, i*10),
			nii.Metadata{Title: fmt.Sprintf("%s data %d", theme, i), Licence: "OGL-UK-3.0", Themes: []string{theme}, Access: nii.AccessOpen})
	}
	publish(t, pub, "contracts", "contracts.csv", "id,amount\n1,2\n", nii.Metadata{Title: "Contracts register", Access: nii.AccessRestricted, Themes: []string{"finance"}})
	total = 8
	nodetest.WaitFor(t, 30*time.Second, "the reader's catalog lists every dataset", func() bool {
		return reader.Search(searchAll()).Total == total
	})
	return pub, reader, total
}

func get(t *testing.T, url, accept string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// TestCataloguePages searches and facets the catalogue, opens a dataset,
// checks its preview, dictionary, snippets and download, in chromium; and
// checks content negotiation, Content-Disposition, the CSP header and
// that script in a title or a cell stays text.
func TestCataloguePages(t *testing.T) {
	tb := newTab(t)
	pub, reader, total := fed(t)
	base := reader.APIAddr()

	// The catalogue: every dataset, with counts and facets.
	tb.open(base + "/")
	if got := tb.text("#result-count"); !strings.Contains(got, fmt.Sprintf("of %d datasets", total)) {
		t.Errorf("result count %q, want %d datasets", got, total)
	}
	tb.check("catalogue")

	// A facet narrows the results; its count says by how much.
	label := tb.text(`label[for="f-theme-0"]`)
	if !strings.Contains(label, "(2)") {
		t.Fatalf("first theme facet %q: want a count of 2", label)
	}
	tb.run(clickBox(`#f-theme-0`))
	tb.click("#search-button")
	if got := tb.text("#result-count"); !strings.Contains(got, "of 2 datasets") {
		t.Errorf("after ticking %q: %q", label, got)
	}
	if !strings.Contains(tb.location(), "theme=") {
		t.Errorf("the facet is not in the URL: %s", tb.location())
	}

	// Free text and paging.
	tb.open(base + "/?q=data&limit=2")
	if got := tb.text("#result-count"); !strings.Contains(got, "Showing 1 to 2 of 6") {
		t.Errorf("search 'data', 2 a page: %q", got)
	}
	tb.click(`.govuk-pagination__next a`)
	if got := tb.text("#result-count"); !strings.Contains(got, "Showing 3 to 4 of 6") {
		t.Errorf("second page: %q", got)
	}
	tb.check("catalogue-page-2")

	// The dataset page, from a search result.
	tb.open(base + "/?q=payments")
	tb.click(`#results a[href="/datasets/org0/spend"]`)
	if got := tb.text("#dataset-title"); got != hostileTitle {
		t.Errorf("title shown as %q, want the text %q", got, hostileTitle)
	}
	pwned := eval[any](tb, `window.__pwned === undefined ? null : window.__pwned`)
	if pwned != nil {
		t.Errorf("script in the title or a cell ran: window.__pwned = %v", pwned)
	}
	if n := tb.count("#preview tbody tr"); n != 4 {
		t.Errorf("preview has %d rows, want 4", n)
	}
	if got := tb.text("#preview tbody tr:first-child td:last-child"); got != hostileCell {
		t.Errorf("hostile cell shown as %q", got)
	}
	if got := tb.text("#preview tbody tr:last-child td:last-child"); got != "quoted, cell" {
		t.Errorf("quoted cell shown as %q", got)
	}
	if n := tb.count("#preview script, #dataset-title script"); n != 0 {
		t.Errorf("%d script elements in the preview or title", n)
	}
	dict := tb.text("#dictionary")
	for _, want := range []string{"Amount", "number", "560", "9100", "Acme Ltd"} {
		if !strings.Contains(dict, want) {
			t.Errorf("data dictionary lacks %q: %s", want, dict)
		}
	}
	rec, err := pub.Datasets()
	if err != nil {
		t.Fatal(err)
	}
	var manifest string
	for _, d := range rec {
		if d.ID == "org0/spend" {
			manifest = d.Versions[0].Manifest.String()
		}
	}
	if got := tb.text("#manifest-hash"); got != manifest {
		t.Errorf("manifest hash shown %q, want %q", got, manifest)
	}
	if got := tb.text("#snippet-pull"); got != "nii pull org0/spend@1" {
		t.Errorf("pull snippet %q", got)
	}
	if got := tb.text("#providers"); !strings.Contains(got, "org0") || !strings.Contains(got, "online now") {
		t.Errorf("providers: %q", got)
	}
	tb.check("dataset")

	// Download: the link the page offers relays the verified bytes under
	// the file's own name (the reader node does not hold them).
	href := tb.attr("#download", "href")
	if tb.attr("#download", "download") != "spend-2026.csv" {
		t.Errorf("download attribute %q", tb.attr("#download", "download"))
	}
	resp, body := get(t, base+href, "")
	if resp.StatusCode != 200 || string(body) != spendCSV {
		t.Fatalf("download %s: %d, %d bytes, want the file's %d", href, resp.StatusCode, len(body), len(spendCSV))
	}
	checkDisposition(t, resp, "spend-2026.csv")
	resp, _ = get(t, pub.APIAddr()+"/api/v1/datasets/org0/spend/versions/1/content", "")
	checkDisposition(t, resp, "spend-2026.csv")

	// A restricted dataset: no rows, no download button.
	tb.open(base + "/datasets/org0/contracts")
	if tb.count("#download") != 0 || tb.count("#preview") != 0 {
		t.Error("a restricted dataset's page offers its rows")
	}
	if got := tb.text("#snippet-pull"); !strings.Contains(got, "--grant") {
		t.Errorf("restricted pull snippet %q", got)
	}

	// A CKAN dataset URL leads to the page.
	tb.open(base + "/dataset/org0-spend")
	if !strings.HasSuffix(tb.location(), "/datasets/org0/spend") {
		t.Errorf("CKAN URL led to %s", tb.location())
	}

	// An unknown dataset: an error page, with its status.
	resp, body = get(t, base+"/datasets/org0/nope", browserAccept)
	if resp.StatusCode != 404 || !strings.Contains(string(body), "not found") {
		t.Errorf("unknown dataset page: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, base+"/datasets/org0/nope", "application/json")
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" || !bytes.Contains(body, []byte(`"status":404`)) {
		t.Errorf("unknown dataset, as JSON: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	// Content negotiation: browsers get pages, API clients what they had.
	for _, c := range []struct {
		path, accept, wantType string
	}{
		{"/catalog", browserAccept, "text/html"},
		{"/catalog", "", "application/ld+json"},
		{"/catalog", "application/ld+json", "application/ld+json"},
		{"/catalog", "text/turtle", "text/turtle"},
		{"/api/v1/catalog/org0/spend", browserAccept, "text/html"},
		{"/api/v1/catalog/org0/spend", "", "application/json"},
		{"/api/v1/catalog/org0/spend", "application/json", "application/json"},
		{"/api/v1/catalog/org0/spend", "*/*", "application/json"},
	} {
		resp, _ := get(t, base+c.path, c.accept)
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); resp.StatusCode != 200 || mt != c.wantType {
			t.Errorf("GET %s Accept %q: %d %s, want %s", c.path, c.accept, resp.StatusCode, resp.Header.Get("Content-Type"), c.wantType)
		}
	}

	// Every page carries the CSP, and its HTML holds no inline script or
	// style.
	for _, p := range []string{"/", "/catalog", "/datasets/org0/spend", "/api/v1/catalog/org0/spend", "/datasets/org0/nope", "/static/nii.css"} {
		resp, body := get(t, base+p, browserAccept)
		if got := resp.Header.Get("Content-Security-Policy"); got != web.CSP {
			t.Errorf("%s: CSP %q", p, got)
		}
		checkNoInline(t, p, string(body))
	}
}

// checkNoInline fails if html has a script element with a body, a style
// element or attribute, or an on* handler.
func checkNoInline(t *testing.T, page, html string) {
	t.Helper()
	low := strings.ToLower(html)
	for i := 0; ; {
		j := strings.Index(low[i:], "<script")
		if j < 0 {
			break
		}
		i += j
		end := strings.Index(low[i:], "</script>")
		open := strings.Index(low[i:], ">")
		if end < 0 || end != open+1 {
			t.Errorf("%s: inline script at byte %d", page, i)
		}
		i++
	}
	for _, bad := range []string{"<style", " style=", " onclick=", " onload=", " onerror=", "javascript:"} {
		if strings.Contains(low, bad) {
			t.Errorf("%s: holds %q", page, bad)
		}
	}
}

func checkDisposition(t *testing.T, resp *http.Response, want string) {
	t.Helper()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
	if err != nil || params["filename"] != want {
		t.Errorf("%s: Content-Disposition %q, want attachment; filename=%q", resp.Request.URL.Path, resp.Header.Get("Content-Disposition"), want)
	}
}

func searchAll() search.Query { return search.Query{Limit: 1} }

// clickBox ticks a checkbox (GOV.UK's are styled over a hidden input).
func clickBox(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](fmt.Sprintf("document.querySelector(%q).click()", sel))(ctx, t)
		return err
	})
}

// setValue sets a form control's value.
func setValue(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(sel), v)
}

// setSelect chooses an option of a select by its value.
func setSelect(sel, v string) chromedp.Action[chromedp.Void] { return setValue(sel, v) }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
