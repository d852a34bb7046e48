package web_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
)

// A visitor reports a problem from the dataset page of a node that does
// not publish the dataset, in a real browser: the report reaches the
// publisher, whose officer sees it with the message shown as text (a
// <script> in it does not run). Over HTTP, a post without the form's
// token, one from another origin and an oversize one are refused in words
// and record nothing.
func TestReportProblemFromPage(t *testing.T) {
	orgs := []string{"greenwich", "lambeth"}
	nodes := nodetest.Federation(t, 2, nodetest.Options{Configure: func(i int, cfg *node.Config) { cfg.Org = orgs[i] }})
	greenwich, lambeth := nodes[0], nodes[1]
	rec, err := greenwich.Publish(t.Context(), strings.NewReader("supplier,amount\nAcme,10\n"), node.PublishRequest{Name: "spend", Filename: "spend.csv",
		Meta: nii.Metadata{Title: "Spend", Access: nii.AccessOpen}})
	if err != nil {
		t.Fatal(err)
	}
	d := rec.Ref.Dataset
	nodetest.WaitListed(t, nodetest.FastTiming, d, rec.Ref.Version, lambeth)
	reports := func() []api.ProblemReport {
		t.Helper()
		got, err := greenwich.Problems(node.ProblemQuery{Dataset: d.String()})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	tb := newTab(t)
	page := lambeth.APIAddr() + "/datasets/" + d.String()
	tb.open(page)
	const msg = `<script>window.__pwned = 1</script> row 2's amount is in pence`
	tb.run(setValue("#r-name", "A Resident"), setValue("#r-message", msg))
	tb.run(chromedp.Click(chromedp.CSS("#report-send"), chromedp.NodeVisible), chromedp.WaitVisible(chromedp.CSS("#report-sent")))
	id := tb.text("#report-id")
	if sent := tb.text("#report-sent"); !strings.Contains(sent, "passed on to their node") {
		t.Errorf("receipt %q; want it to say the report was passed on", sent)
	}
	tb.check("report-sent")
	got := reports()
	if len(got) != 1 || got[0].ID != id || got[0].Message != msg || got[0].Name != "A Resident" || got[0].Via != lambeth.ID() {
		t.Fatalf("the publisher holds %+v; want report %s from the page, via %s", got, id, lambeth.ID())
	}
	if kept, _ := lambeth.Problems(node.ProblemQuery{}); len(kept) != 0 {
		t.Fatalf("the relaying node keeps %+v", kept)
	}

	tb.open(greenwich.APIAddr() + "/officer/login")
	tb.run(setValue("#token", greenwich.AdminToken()))
	tb.click("#login")
	tb.open(greenwich.APIAddr() + "/officer/problems")
	card := tb.text("#problem-" + id)
	if !strings.Contains(card, "<script>window.__pwned = 1</script>") {
		t.Errorf("the officer's card %q does not show the message as text", card)
	}
	if pwned := eval[bool](tb, `window.__pwned === 1`); pwned {
		t.Fatal("the report's <script> ran on the officer's page")
	}
	tb.check("officer-problems")

	// Over HTTP: the page's token and cookie, then three bad posts.
	resp, err := http.Get(page)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(body)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Value == string(m[1]) {
			cookie = c
		}
	}
	if m == nil || cookie == nil {
		t.Fatalf("the dataset page has no report token in both form and cookie (cookies %v)", resp.Cookies())
	}
	post := func(message, origin string, withCookie bool) (int, string) {
		t.Helper()
		form := url.Values{"csrf": {string(m[1])}, "message": {message}}
		req, _ := http.NewRequest("POST", page+"/problems", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if withCookie {
			req.AddCookie(cookie)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		name, message, origin string
		cookie                bool
		status                int
		says                  string
	}{
		{"no cookie", "a second report", "", false, http.StatusForbidden, "security token"},
		{"another origin", "a second report", "http://attacker.example", true, http.StatusForbidden, "security token"},
		{"oversize", strings.Repeat("x", 20<<10), "", true, http.StatusRequestEntityTooLarge, "too long"},
	} {
		status, text := post(c.message, c.origin, c.cookie)
		if status != c.status || !strings.Contains(text, c.says) {
			t.Errorf("%s: %d, want %d saying %q", c.name, status, c.status, c.says)
		}
	}
	if status, text := post("a second report, properly made", "", true); status != http.StatusOK || !strings.Contains(text, "report-sent") {
		t.Errorf("a proper post: %d", status)
	}
	nodetest.WaitFor(t, 10*time.Second, "the proper report is recorded", func() bool { return len(reports()) == 2 })
}
