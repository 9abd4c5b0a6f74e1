package commands

import (
	"html"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/bes-cli/bes/commands/web"
)

// testMixedRoot is the execution root of the machine that ran the corpus's
// test_mixed: its test.log URIs begin with it.
const testMixedRoot = "file:///var/cache/bazel-out/1aa29ad37f9221d087614c667b81dbd7/execroot/bep_corpus/"

// testMixedWithLogs writes a copy of test_mixed's events whose test.log
// URIs point into a temporary directory, and there the logs of
// //tests:fail (a long one, coloured, hostile), its first attempt, the
// flaky test's attempts and //tests:pass_a; the others' logs are absent.
func testMixedWithLogs(t *testing.T) (events, root string) {
	t.Helper()
	root = t.TempDir()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "test_mixed.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), testMixedRoot) {
		t.Fatalf("test_mixed.json has no URI under %s", testMixedRoot)
	}
	events = filepath.Join(root, "test_mixed.json")
	if err := os.WriteFile(events, []byte(strings.ReplaceAll(string(b), testMixedRoot, "file://"+root+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	var long strings.Builder
	long.WriteString("FIRST LINE OF THE LOG\n")
	for long.Len() < 100<<10 {
		long.WriteString("filler line of the test's output\n")
	}
	long.WriteString("\x1b[31mFAIL: expected 1, got 2\x1b[0m\n</script><b>not bold</b>\n")
	logs := map[string]string{
		"tests/fail/test.log":                     long.String(),
		"tests/fail/test_attempts/attempt_1.log":  "first attempt of fail\n",
		"tests/flaky/test.log":                    "flaky passed at last\n",
		"tests/flaky/test_attempts/attempt_1.log": "flaky failed first\n",
		"tests/pass_a/test.log":                   "pass_a passed\n",
	}
	for name, text := range logs {
		path := filepath.Join(root, "bazel-out", "k8-fastbuild", "testlogs", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return events, root
}

// TestReportTestLogs: the page holds the end of each test.log this
// machine has (64 KiB of the long one, from a line's start, its colours
// rendered and its HTML escaped), failing tests first, then the flaky one,
// then the others; a failing attempt's unfolded; the attempts link them;
// the logs that are not here stay URIs; --test-log-bytes 0 reads none.
func TestReportTestLogs(t *testing.T) {
	events, _ := testMixedWithLogs(t)
	page, stderr, code := runCLI(t, "report", events)
	if code != ExitTestFail {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	logs := section(t, page, "test-logs")
	if n := strings.Count(logs, `<details class="test-log"`); n != 5 {
		t.Errorf("%d logs in the page, want 5", n)
	}
	order := []string{"//tests:fail attempt 1", "//tests:fail attempt 2", "//tests:flaky attempt 1", "//tests:flaky attempt 2", "//tests:pass_a attempt 1"}
	last := -1
	for _, title := range order {
		i := strings.Index(logs, "<code>"+title+"</code>")
		if i < 0 || i < last {
			t.Errorf("%q missing or out of order (want %q)", title, order)
		}
		last = i
	}
	failed := logs[strings.Index(logs, `id="log-2"`):]
	failed = failed[:strings.Index(failed, "</details>")]
	if !strings.HasPrefix(failed, `id="log-2" open>`) || !strings.Contains(failed, "//tests:fail attempt 2") {
		t.Errorf("the failing attempt's log is not the second, unfolded: %.200s", failed)
	}
	if !strings.Contains(failed, `<span class="term-fg31">FAIL: expected 1, got 2</span>`) {
		t.Errorf("the log's red line is not rendered red: %s", failed[max(0, len(failed)-400):])
	}
	if strings.Contains(failed, "<b>not bold</b>") || strings.Contains(failed, "</script>") || !strings.Contains(html.UnescapeString(failed), "</script><b>not bold</b>") {
		t.Errorf("the log's HTML is not escaped: %s", failed[max(0, len(failed)-300):])
	}
	if strings.Contains(failed, "FIRST LINE") || !strings.Contains(failed, "bytes of <a href=") || strings.Count(html.UnescapeString(failed), "filler line") > (64<<10)/33 {
		t.Error("the long log is not cut to its last 64 KiB with a note")
	}
	if i := strings.Index(logs, "//tests:flaky attempt 1"); i < 0 || strings.Contains(logs[i-200:i], " open>") {
		t.Error("the flaky test's failed attempt is unfolded, or missing")
	}
	d := reportDataOf(t, page)
	tails := map[string]int{}
	for _, r := range d.Tests {
		for _, run := range r.Runs {
			if run.LogTail > 0 {
				tails[r.Label]++
			}
		}
	}
	if tails["//tests:fail"] != 2 || tails["//tests:flaky"] != 2 || tails["//tests:timeout"] != 0 {
		t.Errorf("attempts linked to their log's end: %v", tails)
	}
	page, _, _ = runCLI(t, "report", events, "--test-log-bytes", "0")
	if strings.Contains(page, `id="test-logs"`) {
		t.Error("--test-log-bytes 0 shows logs")
	}
}

// TestReportTestLogControls: a test.log holding NUL, BEL, vertical tab, form
// feed or DEL shows each as U+FFFD on the page, never raw, and
// keeps its colours, tabs and line breaks.
func TestReportTestLogControls(t *testing.T) {
	events, root := testMixedWithLogs(t)
	log := filepath.Join(root, "bazel-out", "k8-fastbuild", "testlogs", "tests", "pass_a", "test.log")
	if err := os.WriteFile(log, []byte("nul\x00 bel\x07 vt\x0b ff\x0c del\x7f\n\x1b[32mgreen\x1b[0m\tend\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	page, stderr, code := runCLI(t, "report", events)
	if code != ExitTestFail {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if i := strings.IndexFunc(page, func(r rune) bool { return (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f }); i >= 0 {
		t.Errorf("a raw control character in the page: %q", page[max(0, i-100):min(len(page), i+100)])
	}
	logs := section(t, page, "test-logs")
	if !strings.Contains(logs, "nul\uFFFD bel\uFFFD vt\uFFFD ff\uFFFD del\uFFFD") || !strings.Contains(logs, `<span class="term-fg32">green</span>`) {
		t.Errorf("pass_a's log: %s", logs[max(0, strings.Index(logs, "nul")-100):])
	}
}

// TestReportTestLogsNoScript: in Chromium with JavaScript off, the page
// shows the failures and the failing attempt's log end, coloured.
func TestReportTestLogsNoScript(t *testing.T) {
	events, _ := testMixedWithLogs(t)
	page, _, _ := runCLI(t, "report", events)
	ctx := browser(t)
	open(t, ctx, []byte(page), false)
	res, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[document.querySelector('#failures').innerText, document.querySelector('#log-2 .term').textContent, getComputedStyle(document.querySelector('#log-2 .term-fg31')).color, String(document.querySelector('#log-2 .term').checkVisibility()), String(document.querySelector('#log-3 .term').checkVisibility())]`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res[0], "test //tests:fail (FAILED)") {
		t.Errorf("failures without scripts: %.300q", res[0])
	}
	if !strings.Contains(res[1], "FAIL: expected 1, got 2") || res[3] != "true" {
		t.Errorf("the failing attempt's log is not shown without scripts: visible %s, %q", res[3], res[1][max(0, len(res[1])-200):])
	}
	if res[4] != "false" {
		t.Errorf("the flaky test's log (folded) is visible: %s", res[4])
	}
	if res[2] == "" || res[2] == "rgb(0, 0, 0)" {
		t.Errorf("the red line's colour is %q", res[2])
	}
}

// TestServedPageReadsNoLogs: bes serve's page of a stream whose test.log
// URIs name files of the server's machine shows none of them (a stream's
// URIs are its sender's: they must not make the server read its files),
// though bes report of the same stored stream, on this machine, does.
func TestServedPageReadsNoLogs(t *testing.T) {
	events, root := testMixedWithLogs(t)
	dir := filepath.Join(root, "store")
	if _, stderr, code := runCLI(t, "ingest", "--store", dir, events); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	const id = "657fb236-551f-4f88-ab84-e114caf29e48"
	page, stderr, _ := runCLI(t, "report", "--store", dir, id)
	if !strings.Contains(page, `id="test-logs"`) || !strings.Contains(page, "FAIL: expected 1, got 2") {
		t.Fatalf("bes report of the stored stream shows no log: %s", stderr)
	}
	code, body, _ := get(t, webHandler(t, dir, web.Options{}), "/invocation/"+id)
	if code != 200 {
		t.Fatalf("/invocation/%s: %d", id, code)
	}
	if strings.Contains(body, `id="test-logs"`) || strings.Contains(body, "FAIL: expected 1, got 2") || strings.Contains(body, "first attempt of fail") {
		t.Error("the served page shows the server's files")
	}
}
