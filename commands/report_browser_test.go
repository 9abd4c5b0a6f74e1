package commands

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/bes-cli/bes/commands/render/htmlreport"
)

// The pages of bes report in a real browser: Debian's chromium, headless,
// driven with chromedp (.ci/run installs it; CI fails without it).

// browser starts a headless Chromium with a fresh profile and no
// background traffic of its own, and returns its context.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	needTool(t, err == nil, "chromium (Debian's chromium)")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// pageVisit is what a browser did on one page.
type pageVisit struct {
	origin string
	mu     sync.Mutex
	urls   []string          // every request the page made
	csp    map[string]string // request id → blocked reason, for requests the browser refused
	ids    map[string]string // request id → URL
}

// outside returns the requests that went to another origin than the
// page's and were not refused by the browser.
func (v *pageVisit) outside() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for id, u := range v.ids {
		if strings.HasPrefix(u, v.origin+"/") || strings.HasPrefix(u, "data:") {
			continue
		}
		if v.csp[id] != "" {
			continue // refused: it never left
		}
		out = append(out, u)
	}
	return out
}

// open serves html over HTTP on loopback, opens it, and waits for the
// page's script to be done (or, with scripts off, for the load).
func open(t *testing.T, ctx context.Context, html []byte, scripts bool) *pageVisit {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(html)
	}))
	t.Cleanup(srv.Close)
	v := &pageVisit{origin: srv.URL, csp: map[string]string{}, ids: map[string]string{}}
	err := chromedp.Listen(ctx, func(ev any) {
		v.mu.Lock()
		defer v.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			v.ids[string(e.RequestID)] = e.Request.URL
			v.urls = append(v.urls, e.Request.URL)
		case *network.EventLoadingFailed:
			v.csp[string(e.RequestID)] = string(e.BlockedReason)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: !scripts}); err != nil {
		t.Fatal(err)
	}
	ready := chromedp.WaitReady(chromedp.CSS(`#metrics`))
	if scripts {
		ready = chromedp.WaitReady(chromedp.CSS(`html[data-ready="true"]`))
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), ready); err != nil {
		t.Fatalf("opening the page: %v", err)
	}
	return v
}

// distinctColors counts the colours of a PNG image.
func distinctColors(t *testing.T, b []byte) (int, image.Image) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	seen := map[[4]uint32]bool{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c0, c1, c2, c3 := img.At(x, y).RGBA()
			seen[[4]uint32{c0, c1, c2, c3}] = true
		}
	}
	return len(seen), img
}

func reportHTML(t *testing.T, file string) []byte {
	t.Helper()
	out, stderr, code := runCLI(t, "report", filepath.Join("..", "testdata", file), "--exit-zero")
	if code != 0 {
		t.Fatalf("report %s: exit %d: %s", file, code, stderr)
	}
	return []byte(out)
}

// TestReportBrowser: the pages of test_mixed and build_keep_going_fail in
// Chromium: the tests table shows //tests:fail, //tests:timeout and
// //tests:flaky with their statuses (drawn by the page's script from the
// inlined data), the header TESTS_FAILED; the genrule's own output is
// among the failures with scripts off too; the charts are drawn; the
// screenshot is not blank; no request leaves the page's origin.
func TestReportBrowser(t *testing.T) {
	ctx := browser(t)

	v := open(t, ctx, reportHTML(t, "test_mixed.bep"), true)
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](`Array.from(document.querySelectorAll('#tests-table tbody tr')).map(r => [r.cells[1].innerText, r.cells[0].innerText, r.cells[5].innerText])`))
	if err != nil {
		t.Fatal(err)
	}
	header, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#header`)))
	if err != nil {
		t.Fatal(err)
	}
	charts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Array.from(document.querySelectorAll('#timing canvas')).filter(c => c.width > 0 && Chart.getChart(c)).length`))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	var order []string
	for _, r := range rows {
		got[r[0]] = r[1] + " in " + r[2] + " attempts"
		order = append(order, r[0])
	}
	for label, want := range map[string]string{"//tests:fail": "FAILED in 2 attempts", "//tests:timeout": "TIMEOUT in 2 attempts", "//tests:flaky": "FLAKY in 2 attempts", "//tests:pass_a": "PASSED in 1 attempts"} {
		if got[label] != want {
			t.Errorf("%s: the table shows %q, want %q", label, got[label], want)
		}
	}
	if len(order) != 9 || order[2] != "//tests:flaky" || got[order[0]][:1] == "P" || got[order[1]][:1] == "P" {
		t.Errorf("rows %q: want 9, the failing first, then the flaky one", order)
	}
	if !strings.Contains(header, "TESTS_FAILED (3)") || !strings.Contains(header, "tests failed (exit 6)") {
		t.Errorf("header %q lacks TESTS_FAILED (3)", header)
	}
	if charts != 3 {
		t.Errorf("%d charts drawn, want 3 (timeline, critical path, slowest)", charts)
	}
	// The header's colour is the verdict's (#cf222e for failed), and the
	// page has the colours of text, charts and console.
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	n, img := distinctColors(t, shot)
	if n < 100 {
		t.Errorf("the screenshot has %d colours: blank?", n)
	}
	if r, g, b, _ := img.At(5, 5).RGBA(); r>>8 != 0xcf || g>>8 != 0x22 || b>>8 != 0x2e {
		t.Errorf("header colour #%02x%02x%02x, want the failed verdict's #cf222e", r>>8, g>>8, b>>8)
	}
	if *update {
		if err := os.WriteFile(filepath.Join("..", "docs", "report-test_mixed.png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out := v.outside(); len(out) > 0 {
		t.Errorf("requests left the page's origin: %q", out)
	}
	if len(v.urls) != 1 {
		t.Errorf("the page made %d requests, want 1 (itself): %q", len(v.urls), v.urls)
	}

	// Failures with scripts off: the genrule's own output, in HTML.
	for _, scripts := range []bool{false, true} {
		v := open(t, ctx, reportHTML(t, "build_keep_going_fail.bep"), scripts)
		failures, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#failures`)))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"action //broken:fails_to_build (NON_ZERO_EXIT)", "Executing genrule //broken:fails_to_build failed", "genrule about to fail"} {
			if !strings.Contains(failures, want) {
				t.Errorf("scripts %v: failures lack %q:\n%s", scripts, want, failures)
			}
		}
		if out := v.outside(); len(out) > 0 {
			t.Errorf("requests left the page's origin: %q", out)
		}
		shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := distinctColors(t, shot); n < 50 {
			t.Errorf("scripts %v: the screenshot has %d colours: blank?", scripts, n)
		}
	}
}

// TestReportBrowserHostile: strings that would break out of the page's
// elements (</script>, quotes, comments) stay text in a browser, its
// script runs to the end, and an image the console asks for from another
// host (terminal-to-html renders Buildkite's image escape as <img>) is
// refused by the page's Content-Security-Policy: no request leaves.
func TestReportBrowserHostile(t *testing.T) {
	ctx := browser(t)
	title := `</script><script>window.pwned=1</script>"'<!--`
	label := `//pkg:"q'<b>x</b>`
	var buf bytes.Buffer
	p := htmlreport.Page{
		Title: title, Verdict: "passed", VerdictText: "passed (exit 0)",
		Failures: []htmlreport.Failure{{Title: label, Blocks: []htmlreport.Block{{Text: title}}}},
		Console:  []byte("before\n\x1b]1338;url=http://192.0.2.1/x.png;alt=x\a\nafter " + title + "\n"),
		Data: reportData{Tests: []testRow{{Label: label, Status: title, Runs: []runRow{}}},
			Summary: summaryRow{Command: title}},
	}
	if err := htmlreport.Write(&buf, p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte(`<img`)) {
		t.Fatal("terminal-to-html wrote no <img> for the image escape: the test checks nothing")
	}
	v := open(t, ctx, buf.Bytes(), true)
	docTitle, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.pwned === 1`))
	if err != nil {
		t.Fatal(err)
	}
	cell, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#tests-table tbody tr').cells[1].innerText`))
	if err != nil {
		t.Fatal(err)
	}
	if docTitle != title+": passed (exit 0)" || pwned || cell != label {
		t.Errorf("title %q, pwned %v, label cell %q", docTitle, pwned, cell)
	}
	if out := v.outside(); len(out) > 0 {
		t.Errorf("requests left the page's origin: %q", out)
	}
	refused := 0
	for id, u := range v.ids {
		if strings.Contains(u, "192.0.2.1") && v.csp[id] == "csp" {
			refused++
		}
	}
	t.Logf("requests: %q; refused by the CSP: %d", v.urls, refused)
}

// TestReportOpenTime measures how long Chromium takes to open a page and
// run its script to the end: BES_REPORT_PAGE=FILE.html (see BENCHMARKS.md).
func TestReportOpenTime(t *testing.T) {
	path := os.Getenv("BES_REPORT_PAGE")
	if path == "" {
		t.Skip("BES_REPORT_PAGE=FILE.html measures opening it")
	}
	html, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	for i := range 3 {
		start := time.Now()
		open(t, ctx, html, true)
		opened := time.Since(start)
		m, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]float64](`(() => { const n = performance.getEntriesByType('navigation')[0]; return Object.assign({dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd}, window.besTimings); })()`))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("open %d: %d bytes, ready (script done) after %v; DOMContentLoaded %.0f ms, load %.0f ms; %v\n", i, len(html), opened.Round(time.Millisecond), m["dcl"], m["load"], m)
	}
}
