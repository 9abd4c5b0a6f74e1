package commands

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bes-cli/bes/commands/render/htmlreport"
)

// TestReportConsoleOffscreen: in Chromium, the lines of a long console
// below the viewport are not rendered (content-visibility: auto on the
// console's box: laying out tens of thousands of lines before the script
// ran took most of a 200 MB BEP's page opening, BENCHMARKS.md, issue 16),
// yet are in the page, found by the search, and rendered once the console
// is scrolled into view; with JavaScript off too.
func TestReportConsoleOffscreen(t *testing.T) {
	var console bytes.Buffer
	for i := range 5000 {
		fmt.Fprintf(&console, "[%d / 5000] \x1b[32mINFO:\x1b[0m line %d of the console\n", i, i)
	}
	var failures []htmlreport.Failure
	for i := range 40 { // pushes the console below the viewport
		failures = append(failures, htmlreport.Failure{Title: fmt.Sprintf("//pkg:t%d", i), Blocks: []htmlreport.Block{{Text: "ERROR: failed"}}})
	}
	var buf bytes.Buffer
	p := htmlreport.Page{
		Title: "test //...", Verdict: "build_failed", VerdictText: "BUILD_FAILED (exit 1)",
		Failures: failures, Console: console.Bytes(),
		Data: reportData{Tests: []testRow{}, Summary: summaryRow{Command: "test"}},
	}
	if err := htmlreport.Write(&buf, p); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	for _, scripts := range []bool{false, true} {
		open(t, ctx, buf.Bytes(), scripts)
		// checkVisibility({contentVisibilityAuto: true}) is false for an
		// element in a subtree that content-visibility: auto skips.
		const state = `(() => { const l = document.querySelectorAll('#console-lines .line'); return [String(l.length), String(l[4999].checkVisibility({contentVisibilityAuto: true})), l[4999].textContent]; })()`
		before, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](state))
		if err != nil {
			t.Fatal(err)
		}
		if before[0] != "5000" || before[2] != "[4999 / 5000] INFO: line 4999 of the console" {
			t.Errorf("scripts %v: %s lines, the last %q", scripts, before[0], before[2])
		}
		if before[1] != "false" {
			t.Errorf("scripts %v: the console's lines are rendered while the console is below the viewport (checkVisibility %s)", scripts, before[1])
		}
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('#console .term-container').scrollIntoView(), true`)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // a few frames
		after, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](state))
		if err != nil {
			t.Fatal(err)
		}
		if after[1] != "true" {
			t.Errorf("scripts %v: the console's lines are not rendered once scrolled into view (checkVisibility %s)", scripts, after[1])
		}
		if !scripts {
			continue
		}
		hits, err := chromedp.Run(ctx, chromedp.Evaluate[string](`new Promise(r => { const i = document.getElementById('console-search'); i.value = 'line 4321 '; i.dispatchEvent(new Event('input')); setTimeout(() => r(document.getElementById('console-count').textContent + '|' + document.querySelector('#console-lines .line.hit').textContent), 400); })`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(hits, "1 matching lines of 5000|[4321 / 5000]") {
			t.Errorf("search: %q", hits)
		}
	}
}
