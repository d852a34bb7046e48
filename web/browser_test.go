package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/nii-uk/nii/query"
)

// The browser tests drive Debian's chromium through chromedp: one browser
// per test binary (started on first use, closed by TestMain), a tab per
// test. Each page a test opens is checked with axe-core (no serious or
// critical violations) and for Content-Security-Policy violations, and a
// screenshot of it is saved.

var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	err    error
}

// missing fails the test under CI (NII_CI=1) and skips it otherwise,
// saying what is missing and how to get it.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("NII_CI") == "1" {
		t.Fatalf(format+" (NII_CI=1: .ci/run installs it)", args...)
	}
	t.Skipf(format+"; install it (.ci/run does) to run the browser tests", args...)
}

// chromiumPath finds the browser: NII_CHROMIUM, else chromium on PATH.
func chromiumPath(t *testing.T) string {
	if p := os.Getenv("NII_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	missing(t, "chromium is not installed (apt-get install -y chromium)")
	return ""
}

// axeSource is axe-core's script, from NII_AXE (the directory .ci/run
// installs it into), else build/axe at the repository's root.
func axeSource(t *testing.T) string {
	dir := os.Getenv("NII_AXE")
	if dir == "" {
		dir = filepath.Join("..", "build", "axe")
	}
	p := filepath.Join(dir, "node_modules", "axe-core", "axe.min.js")
	b, err := os.ReadFile(p)
	if err != nil {
		missing(t, "axe-core is not installed in %s (npm ci in build/axe from .ci/axe)", dir)
	}
	return string(b)
}

func TestMain(m *testing.M) {
	// The SQL page's queries start this binary as their SQL worker.
	query.RunWorkerIfAsked()
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	os.Exit(code)
}

// tab is one browser tab for a test, with what it saw.
type tab struct {
	t    *testing.T
	ctx  context.Context
	axe  string
	mu   sync.Mutex
	csp  []string // Content-Security-Policy violations reported
	errs []string // uncaught script exceptions
}

func newTab(t *testing.T) *tab {
	t.Helper()
	exe := chromiumPath(t)
	axe := axeSource(t)
	browser.once.Do(func() {
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
			chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 900))
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		browser.ctx, browser.cancel = bctx, func() { bcancel(); acancel() }
		browser.err = chromedp.Do(bctx) // starts the browser
	})
	if browser.err != nil {
		t.Fatalf("start chromium %s: %v", exe, browser.err)
	}
	tb := &tab{t: t, axe: axe}
	ctx, cancel := chromedp.NewContext(browser.ctx, chromedp.WithListener(func(ev any) {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		switch e := ev.(type) {
		case *log.EventEntryAdded:
			if strings.Contains(e.Entry.Text, "Content Security Policy") {
				tb.csp = append(tb.csp, e.Entry.Text)
			}
		case *runtime.EventExceptionThrown:
			tb.errs = append(tb.errs, e.ExceptionDetails.Text)
		}
	}))
	t.Cleanup(cancel)
	tb.ctx = ctx
	if err := chromedp.Do(ctx); err != nil { // opens the tab
		t.Fatal(err)
	}
	return tb
}

// run runs actions, failing the test on error.
func (tb *tab) run(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.t.Fatal(err)
	}
}

// value runs an action that returns a value, failing the test on error.
func value[T any](tb *tab, a chromedp.Action[T]) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, a)
	if err != nil {
		tb.t.Fatal(err)
	}
	return v
}

// text returns the text of the first node sel matches.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return value(tb, chromedp.Text(chromedp.CSS(sel)))
}

// eval evaluates a JavaScript expression.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	return value(tb, chromedp.Evaluate[T](expr))
}

// check checks the page now shown: axe-core finds no serious or critical
// violation, no CSP violation or script error was reported, and a
// screenshot is saved as name.png.
func (tb *tab) check(name string) {
	tb.t.Helper()
	tb.run(chromedp.WaitReady(chromedp.CSS("body")))
	eval[bool](tb, tb.axe+";true")
	type violation struct {
		ID      string `json:"id"`
		Impact  string `json:"impact"`
		Help    string `json:"help"`
		Targets []any  `json:"targets"`
	}
	res, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]violation](`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, targets: v.nodes.slice(0, 5).map(n => n.target)})))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("%s: axe: %v", name, err)
	}
	for _, v := range res {
		if v.Impact == "serious" || v.Impact == "critical" {
			b, _ := json.Marshal(v.Targets)
			tb.t.Errorf("%s: accessibility (axe, %s): %s: %s at %s", name, v.Impact, v.ID, v.Help, b)
		}
	}
	tb.mu.Lock()
	csp, errs := tb.csp, tb.errs
	tb.csp, tb.errs = nil, nil
	tb.mu.Unlock()
	for _, c := range csp {
		tb.t.Errorf("%s: CSP violation: %s", name, c)
	}
	for _, e := range errs {
		tb.t.Errorf("%s: script error: %s", name, e)
	}
	tb.screenshot(name)
}

// screenshot saves the page as NAME.png in NII_SCREENSHOTS (default
// build/screenshots at the repository's root).
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	dir := os.Getenv("NII_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "build", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	png := value(tb, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// open navigates to url and waits for the page.
func (tb *tab) open(url string) {
	tb.t.Helper()
	tb.run(chromedp.Navigate(url))
	for v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string]("document.readyState")); err != nil || v != "complete"; v, err = chromedp.Run(tb.ctx, chromedp.Evaluate[string]("document.readyState")) {
		select {
		case <-tb.ctx.Done():
			tb.t.Fatalf("%s did not load", url)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// click clicks sel, which loads another page (perhaps at the same URL,
// after a form post), and waits for that page: the old document is
// marked first, so its going is seen.
func (tb *tab) click(sel string) {
	tb.t.Helper()
	before := tb.location()
	eval[bool](tb, "window.__niiOld = true")
	tb.run(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
	// Mid-navigation an evaluation may fail (its context is gone): not
	// loaded yet.
	loaded := func() bool {
		v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](`window.__niiOld !== true && document.readyState === "complete"`))
		return err == nil && v
	}
	for !loaded() {
		select {
		case <-tb.ctx.Done():
			tb.t.Fatalf("clicking %s did not leave %s", sel, before)
		case <-time.After(10 * time.Millisecond):
		}
	}
	tb.run(chromedp.WaitReady(chromedp.CSS("main")))
}

// count returns how many nodes sel matches.
func (tb *tab) count(sel string) int {
	tb.t.Helper()
	return eval[int](tb, fmt.Sprintf("document.querySelectorAll(%q).length", sel))
}

// attr returns attribute a of the first node sel matches.
func (tb *tab) attr(sel, a string) string {
	tb.t.Helper()
	return value(tb, chromedp.AttributeValue(chromedp.CSS(sel), a)).Value
}

// location is the page's current URL.
func (tb *tab) location() string {
	tb.t.Helper()
	return value(tb, chromedp.Location())
}
