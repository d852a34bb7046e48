package web_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/internal/spenddata"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// officerSession logs in over HTTP, as a browser would, and returns the
// session cookie and a form's CSRF token.
func officerSession(t *testing.T, base, token string) (*http.Cookie, string) {
	t.Helper()
	resp, err := noRedirect.Get(base + "/officer/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(body)
	var login *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "nii_login" {
			login = c
		}
	}
	if m == nil || login == nil {
		t.Fatalf("login form without a CSRF token or its cookie: %s", body)
	}
	form := url.Values{"csrf": {string(m[1])}, "token": {token}, "next": {"/officer"}}
	req, _ := http.NewRequest("POST", base+"/officer/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(login)
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var sess *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "nii_session" {
			sess = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || sess == nil {
		t.Fatalf("login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	if !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/" || strings.Contains(sess.Value, token) {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not the token", sess)
	}
	req, _ = http.NewRequest("GET", base+"/officer/publish", nil)
	req.AddCookie(sess)
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	m = csrfField.FindSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("publish form with a session: %d", resp.StatusCode)
	}
	return sess, string(m[1])
}

// TestOfficerPages logs in as the officer, publishes through the upload
// form, edits a mapping and sees the rejects change, publishes it, and
// inspects and revokes a grant, in chromium; and checks the session
// cookie, the login redirect and the CSRF refusals over HTTP.
func TestOfficerPages(t *testing.T) {
	tb := newTab(t)
	orgs := []string{"lga", "lambeth"}
	nodes := nodetest.Federation(t, 2, nodetest.Options{Configure: func(i int, cfg *node.Config) { cfg.Org = orgs[i] }})
	lga, lambeth := nodes[0], nodes[1]
	std, err := harmony.SampleStandard(harmony.LGASpend)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lga.Publish(context.Background(), bytes.NewReader(std), node.PublishRequest{Name: "spend-over-500", Filename: "lga-spend.schema.json",
		Meta: nii.Metadata{Title: "Spend over £500", Kind: nii.KindStandard}}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 30*time.Second, "lambeth sees the standard", func() bool {
		s, err := lambeth.Standards()
		return err == nil && len(s) == 1
	})
	base := lambeth.APIAddr()

	// Without a session: a redirect to the login page, and a refusal of
	// a form post.
	resp, err := noRedirect.Get(base + "/officer/grants")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/officer/login?next=%2Fofficer%2Fgrants" {
		t.Errorf("/officer/grants without a session: %d to %q", resp.StatusCode, loc)
	}
	resp, err = noRedirect.PostForm(base+"/officer/mapping", url.Values{"action": {"publish"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a form post without a session: %d", resp.StatusCode)
	}

	// With a session but no CSRF token, or a token from another page load
	// that is not this session's, or from another site: refused, and
	// nothing published.
	sess, csrf := officerSession(t, base, lambeth.AdminToken())
	for _, c := range []struct {
		name, csrf, origin string
	}{{"no token", "", ""}, {"a wrong token", "x" + csrf, ""}, {"another site", csrf, "http://evil.example"}} {
		var body bytes.Buffer
		body.WriteString("--B\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + c.csrf + "\r\n")
		body.WriteString("--B\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nforged\r\n")
		body.WriteString("--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.csv\"\r\n\r\na,b\n1,2\n\r\n--B--\r\n")
		req, _ := http.NewRequest("POST", base+"/officer/publish", &body)
		req.Header.Set("Content-Type", "multipart/form-data; boundary=B")
		if c.origin != "" {
			req.Header.Set("Origin", c.origin)
		}
		req.AddCookie(sess)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("publish with %s: %d, want 403", c.name, resp.StatusCode)
		}
	}
	if _, err := lambeth.LookupDataset(nii.DatasetID{Org: "lambeth", Name: "forged"}); err == nil {
		t.Error("a forged form published a dataset")
	}

	// The browser: the officer's pages lead to the login.
	tb.open(base + "/officer")
	if !strings.Contains(tb.location(), "/officer/login") {
		t.Fatalf("/officer led to %s", tb.location())
	}
	tb.check("login")
	tb.run(setValue("#token", "not-the-token"))
	tb.click("#login")
	if got := tb.text("#login-error"); !strings.Contains(got, "not this node's admin token") {
		t.Errorf("wrong token: %q", got)
	}
	tb.run(setValue("#token", lambeth.AdminToken()))
	tb.click("#login")
	if !strings.HasSuffix(tb.location(), "/officer") {
		t.Fatalf("after login: %s", tb.location())
	}
	if c := eval[string](tb, "document.cookie"); strings.Contains(c, "nii_session") {
		t.Errorf("the session cookie is readable by script: %q", c)
	}
	tb.check("officer")

	// Publish Lambeth's spend file through the upload form.
	file := spenddata.Path("lambeth")
	tb.open(base + "/officer/publish")
	tb.run(setValue("#p-name", "spend"), setValue("#p-title", "Lambeth payments over £500"), setValue("#p-themes", "finance, spend"),
		chromedp.SetUploadFiles(chromedp.CSS("#p-file"), []string{file}))
	tb.check("publish")
	tb.click("#publish")
	if !strings.Contains(tb.location(), "/datasets/lambeth/spend") {
		t.Fatalf("after publishing: %s", tb.location())
	}
	if got := tb.text("#dataset-title"); got != "Lambeth payments over £500" {
		t.Errorf("published title %q", got)
	}
	held, err := lambeth.Datasets()
	if err != nil || len(held) != 1 || held[0].ID != "lambeth/spend" || held[0].Versions[0].Meta.Filename != filepath.Base(file) || held[0].Versions[0].Size != fileSize(t, file) {
		t.Fatalf("lambeth holds %+v (%v)", held, err)
	}

	// The mapping editor: the suggestion, then the real mapping; the
	// rejects change.
	tb.open(base + "/officer/mapping")
	tb.run(setSelect("#m-dataset", "lambeth/spend"), setSelect("#m-standard", "lga/spend-over-500"))
	tb.click("#suggest")
	suggested := tb.text("#check-result")
	if eval[string](tb, `document.querySelector("#m-toml").value`) == "" {
		t.Fatal("no suggestion in the editor")
	}
	// Edit in place: htmx checks the new text as it changes.
	mapping := string(readFile(t, filepath.Join("..", "harmony", "testdata", "mappings", "lambeth.map.toml")))
	tb.run(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](`(() => { const e = document.querySelector("#m-toml"); e.value = `+jsString(mapping)+`; e.dispatchEvent(new Event("input", {bubbles: true})) })()`)(ctx, tg)
		return err
	}))
	nodetest.WaitFor(t, 60*time.Second, "the live check shows the real mapping's rejects", func() bool {
		// One evaluation reads both counts: htmx swaps the result in as
		// it is polled, and a node found by one query may be gone by the
		// next ("No node with given id found").
		return eval[string](tb, `(() => { const r = document.querySelectorAll("#check-rejected"), a = document.querySelector("#check-accepted"); return r.length === 1 && a ? r[0].innerText.trim() + "/" + a.innerText.trim() : "" })()`) == "0/2000"
	})
	if suggested == tb.text("#check-result") {
		t.Errorf("the check did not change from the suggestion's: %q", suggested)
	}
	tb.check("mapping")
	tb.click("#publish-mapping")
	if got := tb.text("#mapping-published"); !strings.Contains(got, "lambeth/spend--map--lga-spend-over-500@1") {
		t.Errorf("published mapping: %q", got)
	}

	// Grants: inspect one, then revoke it with the issuer's key.
	dir := t.TempDir()
	kp, err := auth.WriteKeyPair(filepath.Join(dir, "issuer.key"), "test issuer")
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.LoadPrivateKey(filepath.Join(dir, "issuer.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lambeth.AddTrust(key.Public().(ed25519.PublicKey), "test issuer"); err != nil {
		t.Fatal(err)
	}
	_ = kp
	grant, claims, err := auth.IssueGrant(key, auth.GrantSpec{Federation: lambeth.Config().Federation, Subject: "lga", Datasets: []string{"lambeth/*"}, Actions: []nii.Action{nii.ActionRead}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tb.open(base + "/officer/grants")
	tb.run(setValue("#g-token", grant))
	tb.click("#inspect")
	if got := tb.text("#report-valid"); got != "yes" {
		t.Errorf("the grant inspected as valid=%q", got)
	}
	tb.open(base + "/officer/grants")
	tb.run(setValue("#g-jti", claims.ID), chromedp.SetUploadFiles(chromedp.CSS("#g-key"), []string{filepath.Join(dir, "issuer.key")}))
	tb.click("#revoke")
	if got := tb.text("#revoked"); !strings.Contains(got, claims.ID) {
		t.Errorf("revoke: %q", got)
	}
	revoked := false
	for _, r := range lambeth.Revocations() {
		revoked = revoked || r.Revokes == claims.ID
	}
	if !revoked {
		t.Errorf("the node holds no revocation of %s", claims.ID)
	}
	tb.check("grants")
	tb.open(base + "/officer/grants")
	tb.run(setValue("#g-token", grant))
	tb.click("#inspect")
	if got := tb.text("#report-valid"); got != "no" {
		t.Errorf("a revoked grant inspected as valid=%q", got)
	}

	tb.open(base + "/officer/audit?result=refused")
	if tb.count("#audit") != 1 {
		t.Error("no audit table")
	}
	tb.check("audit")
}

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func jsString(s string) string {
	b, _ := jsonMarshal(s)
	return string(b)
}

// TestPublishUploadProgress publishes a file of a few MB through the
// upload form with its script: the <progress> element follows the upload
// to its max (the file's size), the live status says it is published, and
// the node lists the dataset with the file's bytes.
func TestPublishUploadProgress(t *testing.T) {
	tb := newTab(t)
	n := nodetest.Federation(t, 1, nodetest.Options{})[0]
	base := n.APIAddr()
	var csvData bytes.Buffer
	csvData.WriteString("id,supplier,amount\n")
	for i := 0; csvData.Len() < 4<<20; i++ {
		fmt.Fprintf(&csvData, "%d,Supplier %d Ltd,%d.%02d\n", i, i%977, i%100000, i%100)
	}
	file := filepath.Join(t.TempDir(), "payments.csv")
	if err := os.WriteFile(file, csvData.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tb.open(base + "/officer/login")
	tb.run(setValue("#token", n.AdminToken()))
	tb.click("#login")
	tb.open(base + "/officer/publish")
	if !eval[bool](tb, `document.getElementById("upload-progress-group").hidden`) {
		t.Error("the progress element shows before an upload")
	}
	tb.run(setValue("#p-name", "payments"), setValue("#p-title", "Payments, a few MB"),
		chromedp.SetUploadFiles(chromedp.CSS("#p-file"), []string{file}))
	// Hold the page when the upload is done, to read the progress.
	eval[bool](tb, `window.__up = null; document.getElementById("publish-form").addEventListener("nii:uploaded", e => {
		e.preventDefault();
		const bar = document.getElementById("upload-progress");
		window.__up = {value: bar.value, max: bar.max, url: e.detail.url, status: document.getElementById("upload-status").textContent};
	}); true`)
	tb.run(chromedp.Click(chromedp.CSS("#publish"), chromedp.NodeVisible))
	type upload struct {
		Value, Max  float64
		URL, Status string
	}
	var up upload
	nodetest.WaitFor(t, 60*time.Second, "the upload finishes", func() bool {
		up = eval[upload](tb, `window.__up || {value: -1}`)
		return up.Value >= 0
	})
	// The upload is the whole form: the file and the few fields before it.
	if up.Value != up.Max || up.Max < float64(csvData.Len()) || up.Max > float64(csvData.Len()+16<<10) {
		t.Errorf("progress %v of %v, want the whole form's bytes (the file's %d and its fields)", up.Value, up.Max, csvData.Len())
	}
	if !strings.Contains(up.Status, "Published") || !strings.Contains(up.URL, "/datasets/org0/payments") {
		t.Errorf("after the upload: status %q, url %q", up.Status, up.URL)
	}
	tb.check("publish-progress")
	tb.open(up.URL)
	if got := tb.text("#dataset-title"); got != "Payments, a few MB" {
		t.Errorf("published title %q", got)
	}
	held, err := n.Datasets()
	if err != nil || len(held) != 1 || held[0].ID != "org0/payments" || held[0].Versions[0].Size != int64(csvData.Len()) {
		t.Fatalf("the node holds %+v (%v)", held, err)
	}
}

// An officer's session outlives a restart of the node (it is kept in the
// node's store under its ID's hash), and a made-up session ID is still
// sent to the login page after it.
func TestOfficerSessionSurvivesRestart(t *testing.T) {
	f := nodetest.NewFederation(t, 1, nodetest.Options{})
	sess, _ := officerSession(t, f.Nodes[0].APIAddr(), f.Nodes[0].AdminToken())
	n := f.Restart(0)
	get := func(c *http.Cookie) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", n.APIAddr()+"/officer/publish", nil)
		req.AddCookie(c)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get(sess); resp.StatusCode != http.StatusOK {
		t.Fatalf("/officer/publish with the session from before the restart: %d (to %q); want 200", resp.StatusCode, resp.Header.Get("Location"))
	}
	forged := *sess
	forged.Value = strings.Repeat("A", len(sess.Value))
	if resp := get(&forged); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/officer/login") {
		t.Fatalf("/officer/publish with a made-up session: %d to %q; want the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
}

var issuedToken = regexp.MustCompile(`id="issued-token"[^>]*>([^<]+)</textarea>`)

// A grant issued from the grants page, with the issuer key pasted for
// that one action, is a real grant: the subject pulls the restricted
// dataset with it. The key appears in no answer, and a lifetime past the
// federation's maximum is refused in words.
func TestOfficerIssuesGrantFromPage(t *testing.T) {
	orgs := []string{"greenwich", "lambeth"}
	nodes := nodetest.Federation(t, 2, nodetest.Options{Configure: func(i int, cfg *node.Config) { cfg.Org = orgs[i] }})
	greenwich, lambeth := nodes[0], nodes[1]
	kp, err := auth.WriteKeyPair(filepath.Join(t.TempDir(), "admin.key"), "admin")
	if err != nil {
		t.Fatal(err)
	}
	keyFile, err := os.ReadFile(kp.Path)
	if err != nil {
		t.Fatal(err)
	}
	pub := kp.Key.Public().(ed25519.PublicKey)
	for _, n := range nodes {
		if _, err := n.AddTrust(pub, "admin"); err != nil {
			t.Fatal(err)
		}
		cred, _, err := auth.IssueCredential(kp.Key, n.Config().Federation, n.ID(), n.Config().Org, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.InstallCredential(cred); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := greenwich.Publish(context.Background(), strings.NewReader("a,b\n1,2\n"), node.PublishRequest{Name: "planning", Filename: "planning.csv",
		Meta: nii.Metadata{Title: "Planning", Access: nii.AccessRestricted}})
	if err != nil {
		t.Fatal(err)
	}
	nodetest.WaitListed(t, nodetest.FastTiming, rec.Ref.Dataset, rec.Ref.Version, lambeth)

	base := greenwich.APIAddr()
	sess, csrf := officerSession(t, base, greenwich.AdminToken())
	issue := func(ttl string) (int, string) {
		t.Helper()
		form := url.Values{"csrf": {csrf}, "action": {"issue"}, "to": {"lambeth"}, "datasets": {"greenwich/planning"},
			"ttl": {ttl}, "read": {"on"}, "key_text": {string(keyFile)}}
		req, _ := http.NewRequest("POST", base+"/officer/grants", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(sess)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		keyBody := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(string(keyFile)), "-----BEGIN PRIVATE KEY-----"), "-----END PRIVATE KEY-----"))
		if bytes.Contains(body, []byte(keyBody)) {
			t.Fatalf("the grants page's answer holds the issuer key")
		}
		return resp.StatusCode, string(body)
	}
	code, body := issue("1h")
	m := issuedToken.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		t.Fatalf("issue a grant from the page: %d\n%s", code, body)
	}
	if _, err := lambeth.Pull(context.Background(), rec.Ref, node.PullOptions{Grant: strings.TrimSpace(m[1])}); err != nil {
		t.Fatalf("lambeth pulls with the grant issued from the page: %v", err)
	}
	if code, body := issue("100000h"); code != http.StatusBadRequest || !strings.Contains(body, "Not issued") || issuedToken.MatchString(body) {
		t.Fatalf("a grant past the maximum lifetime: %d, issued=%v", code, issuedToken.MatchString(body))
	}
}
