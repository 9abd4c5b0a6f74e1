package commands

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

const testMixedID = "657fb236-551f-4f88-ab84-e114caf29e48"

// mdDoc checks that md is one Markdown document as markdown.go frames it
// (the heading, a blank line, ..., a blank line to end) and returns its
// heading and body.
func mdDoc(t *testing.T, md string) (heading, body string) {
	t.Helper()
	heading, body, ok := strings.Cut(md, "\n\n")
	if !ok || !strings.HasPrefix(heading, "### bes ") || strings.Contains(heading, "\n") {
		t.Fatalf("no heading: %q", md)
	}
	if !strings.HasSuffix(md, "\n\n") || strings.HasSuffix(md, "\n\n\n") {
		t.Fatalf("does not end with one blank line: %q", md[max(0, len(md)-80):])
	}
	return strings.TrimPrefix(heading, "### "), body
}

// mdTableRows counts the data rows of the first Markdown table in body.
func mdTableRows(body string) int {
	n := 0
	for _, line := range strings.Split(body, "\n") {
		switch {
		case strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| --- |"):
			n++
		case n > 0 && line == "":
			return n - 1 // less the header
		}
	}
	return max(n-1, 0)
}

// TestMarkdownDocuments checks the frame of each view's document: a
// heading naming the view and the invocation, the table, a blank line to
// end; a sentence when there is nothing to show.
func TestMarkdownDocuments(t *testing.T) {
	mixed := tdPath("test_mixed.bep")
	for _, c := range []struct {
		args    []string
		code    int
		heading string
		rows    int
		none    string // the sentence instead of a table
	}{
		{[]string{"summary", mixed}, ExitTestFail, "bes summary: " + testMixedID, 1, ""},
		{[]string{"failures", mixed}, ExitTestFail, "bes failures: " + testMixedID, 2, ""},
		{[]string{"tests", mixed}, ExitTestFail, "bes tests: " + testMixedID, 9, ""},
		{[]string{"tests", "--runs", mixed}, ExitTestFail, "bes tests: " + testMixedID, 14, ""},
		{[]string{"artifacts", mixed}, ExitOK, "bes artifacts: " + testMixedID, 32, ""},
		{[]string{"summary", mixed, tdPath("build_keep_going_fail.bep")}, ExitTestFail, "bes summary: 2 invocations", 2, ""},
		{[]string{"failures", tdPath("build_ok.bep")}, ExitOK, "bes failures: 716bc5f2-0416-4984-bf6d-e57bb3dc67a7", 0, "No failures."},
		{[]string{"tests", tdPath("build_ok.bep")}, ExitNoData, "bes tests: 716bc5f2-0416-4984-bf6d-e57bb3dc67a7", 0, "No tests."},
		{[]string{"tests", "--status", "incomplete,no_status", tdPath("test_cached.bep")}, ExitTestFail, "bes tests: 520ce742-a0b9-4acc-b1a6-73c2f9313d08", 0, "No tests with status INCOMPLETE or NO_STATUS."},
		{[]string{"artifacts", "--label", "^//nothing", mixed}, ExitOK, "bes artifacts: " + testMixedID, 0, "No output files."},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			stdout, stderr, code := runCLI(t, append(c.args, "--format", "markdown")...)
			if code != c.code {
				t.Fatalf("exit %d, want %d: %s", code, c.code, stderr)
			}
			heading, body := mdDoc(t, stdout)
			if heading != markdownText(c.heading) {
				t.Errorf("heading %q, want %q", heading, markdownText(c.heading))
			}
			if c.none != "" {
				if body != c.none+"\n\n" {
					t.Errorf("body %q, want the sentence %q", body, c.none)
				}
				return
			}
			if got := mdTableRows(body); got != c.rows {
				t.Errorf("%d rows, want %d:\n%s", got, c.rows, body)
			}
		})
	}
}

// TestMarkdownRelativePaths: file:// URIs of the CI machine are shown
// relative to the exec root (bazel-out/…), the output base (external/…) or
// the workspace (source files) in Markdown; JSON and tables keep them.
func TestMarkdownRelativePaths(t *testing.T) {
	mixed := tdPath("test_mixed.bep")
	md := runOK(t, ExitTestFail, "tests", "--format", "markdown", "--status", "failed", mixed)
	if !strings.HasPrefix(strings.Split(md, "\n")[4], "| //tests:fail | FAILED |") || !strings.HasSuffix(md, " | bazel-out/k8-fastbuild/testlogs/tests/fail/test.log |\n\n") {
		t.Errorf("tests: want //tests:fail with its log bazel-out/k8-fastbuild/testlogs/tests/fail/test.log:\n%s", md)
	}
	md = runOK(t, ExitTestFail, "failures", "--format", "markdown", mixed)
	if want := "| bazel-out/k8-fastbuild/testlogs/tests/timeout/test_attempts/attempt_1.log bazel-out/k8-fastbuild/testlogs/tests/timeout/test.log |\n"; !strings.Contains(md, want) {
		t.Errorf("failures: no OUTPUT %q in\n%s", want, md)
	}
	md = runOK(t, ExitOK, "artifacts", "--format", "markdown", "--label", "^//tests:junit_xml$", mixed)
	if want := "| //tests:junit_xml | default | tests/junit_xml.sh | tests/junit_xml.sh |\n"; !strings.Contains(md, want) {
		t.Errorf("artifacts: no source file row %q in\n%s", want, md)
	}
	if strings.Contains(md, "file://") {
		t.Errorf("a file:// URI left in\n%s", md)
	}
	// JSON and the table keep the URI.
	js := runOK(t, ExitTestFail, "tests", "--format", "json", "--status", "failed", mixed)
	if want := `"file:///var/cache/bazel-out/1aa29ad37f9221d087614c667b81dbd7/execroot/bep_corpus/bazel-out/k8-fastbuild/testlogs/tests/fail/test.log"`; !strings.Contains(js, want) {
		t.Errorf("JSON lost the URI %s:\n%s", want, js)
	}
	if tb := runOK(t, ExitTestFail, "tests", "--status", "failed", mixed); !strings.Contains(tb, "file:///var/cache/bazel-out/") {
		t.Errorf("the table lost the URI:\n%s", tb)
	}

	d := &viewDoc{bases: []string{
		"/var/cache/bazel-out/1aa2/execroot/ws",
		"/var/cache/bazel-out/1aa2",
		"/src/my ws",
	}}
	for in, want := range map[string]string{
		"file:///var/cache/bazel-out/1aa2/execroot/ws/bazel-out/k8-fastbuild/testlogs/t/test.log": "bazel-out/k8-fastbuild/testlogs/t/test.log",
		"file:///var/cache/bazel-out/1aa2/external/rules_cc/BUILD":                                "external/rules_cc/BUILD",
		"file:///src/my%20ws/pkg/a.sh":                                                            "pkg/a.sh",
		"file:///elsewhere/a.txt":                                                                 "file:///elsewhere/a.txt",
		"file:///src/my%20wsx/a.sh":                                                               "file:///src/my%20wsx/a.sh", // a sibling, not inside
		"file:///src/my%20ws":                                                                     "file:///src/my%20ws",       // the base itself
		"bytestream://remote/blobs/abc/12":                                                        "bytestream://remote/blobs/abc/12",
		"file://otherhost/var/cache/bazel-out/1aa2/x":                                             "file://otherhost/var/cache/bazel-out/1aa2/x",
		"see file:///src/my%20ws/a and file:///src/my%20ws/b":                                     "see a and b",
	} {
		if got := d.relative(in); got != want {
			t.Errorf("relative(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMarkdownLimit: a Markdown document shows 100 rows unless told, and
// stays under 200 KiB (GitHub refuses a step summary over 1 MiB), with a
// line saying how many more; --limit sets the rows, 0 shows all.
func TestMarkdownLimit(t *testing.T) {
	large := tdPath("large_test.bep.gz")
	const total = 5000 // output files of large_test: 1000 tests, 4000 generated files
	all := runOK(t, ExitOK, "artifacts", "--format", "markdown", "--limit", "0", large)
	_, body := mdDoc(t, all)
	if n := mdTableRows(body); n != total || strings.Contains(body, "more output files") {
		t.Fatalf("--limit 0: %d rows, want %d, and no line for more", n, total)
	}
	for _, c := range []struct {
		limit []string
		rows  int
	}{
		{nil, markdownLimit},
		{[]string{"--limit", "10"}, 10},
		{[]string{"--limit", "4999"}, -1}, // cut by size
	} {
		md := runOK(t, ExitOK, append([]string{"artifacts", "--format", "markdown", large}, c.limit...)...)
		_, body := mdDoc(t, md)
		n := mdTableRows(body)
		if c.rows >= 0 && n != c.rows {
			t.Errorf("%v: %d rows, want %d", c.limit, n, c.rows)
		}
		if len(md) > markdownBudget {
			t.Errorf("%v: %d bytes, over %d", c.limit, len(md), markdownBudget)
		}
		if c.rows < 0 && (n < 1000 || n >= 4999 || len(md) < markdownBudget-4<<10) {
			t.Errorf("%v: %d rows in %d bytes: want the rows that fill %d bytes", c.limit, n, len(md), markdownBudget)
		}
		more := fmt.Sprintf("\n\n… and %d more output files (`--limit 0` shows all; `--format json` lists every one).\n\n", total-n)
		if !strings.HasSuffix(md, more) {
			t.Errorf("%v: does not end with %q: %q", c.limit, more, md[len(md)-200:])
		}
	}
	// A table shows all rows unless told.
	tb := runOK(t, ExitOK, "artifacts", "--limit", "2", large)
	lines := strings.Split(strings.TrimSuffix(tb, "\n"), "\n")
	if len(lines) != 4 || lines[3] != "… and 4998 more output files (--limit 0 shows all)" {
		t.Errorf("table --limit 2:\n%s", tb)
	}
	if tb := runOK(t, ExitOK, "artifacts", large); strings.Count(tb, "\n") != total+1 {
		t.Errorf("table: %d lines, want %d", strings.Count(tb, "\n"), total+1)
	}
	// Failures: their words only for the rows shown.
	md := runOK(t, ExitBuildFail, "failures", "--format", "markdown", "--limit", "1", tdPath("build_keep_going_fail.bep"))
	_, body = mdDoc(t, md)
	if n := mdTableRows(body); n != 1 || strings.Count(body, "\n```\n") != 2 || !strings.Contains(body, "\n\n… and 6 more failures (") {
		t.Errorf("failures --limit 1: %d rows, %d fences:\n%s", n, strings.Count(body, "\n```\n"), md)
	}
	// Only tables and Markdown are cut.
	for _, args := range [][]string{
		{"artifacts", "--format", "json", "--limit", "3", large},
		{"tests", "--format", "junit", "--limit", "3", large},
		{"summary", "--limit", "-1", large},
	} {
		if _, stderr, code := runCLI(t, args...); code != ExitUsage || !strings.Contains(stderr, "--limit: ") {
			t.Errorf("%v: exit %d, %q; want a usage error", args, code, stderr)
		}
	}
}

// TestMarkdownWordsBudget: failures' words that do not fit in the room
// left are left out, in order, and a line says how many.
func TestMarkdownWordsBudget(t *testing.T) {
	long := strings.Repeat("x", 700)
	rows := []failureRow{
		{Kind: "test", Label: "//a:first", Reason: "FAILED", Console: []string{"ERROR: " + long}},
		{Kind: "test", Label: "//a:second", Reason: "FAILED", Console: []string{"ERROR: " + long}},
		{Kind: "test", Label: "//a:third", Reason: "FAILED", Console: []string{"ERROR: short"}},
	}
	var b bytes.Buffer
	if err := writeFailureWords(&b, &viewDoc{format: formatMarkdown}, rows, invNames{}, 1000); err != nil {
		t.Fatal(err)
	}
	want := "**test //a:first (FAILED)**\n\n```\nERROR: " + long + "\n```\n\n" +
		"… and the console and log lines of 2 more failures (`--format json` gives them).\n\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

// renderMarkdown renders md as HTML with marked, a GitHub-flavoured
// Markdown renderer (testdata/markdown, installed by .ci/run with npm ci).
// Without node or marked the test is skipped, unless CI is set.
func renderMarkdown(t *testing.T, md string) *html.Node {
	t.Helper()
	if !markedAvailable(t) {
		t.Skip("node and marked are needed (npm ci --prefix testdata/markdown; .ci/run does it)")
	}
	cmd := exec.Command("node", tdPath("markdown/render.mjs"))
	cmd.Stdin = strings.NewReader(md)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("render.mjs: %v: %s", err, stderr.String())
	}
	doc, err := html.Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// markedAvailable reports whether node and marked are there to render
// Markdown; without them under CI the test fails.
func markedAvailable(t *testing.T) bool {
	t.Helper()
	_, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(tdPath("markdown/node_modules/marked/package.json"))
	}
	if err != nil && os.Getenv("CI") != "" {
		t.Fatalf("node and marked are needed, and CI is set (.ci/run installs them): %v", err)
	}
	return err == nil
}

// htmlBlock is a top-level block of rendered HTML: its tag and text, and
// for a table its header cells and number of body rows.
type htmlBlock struct {
	tag    string
	text   string
	header []string
	rows   int
}

func htmlBlocks(doc *html.Node) []htmlBlock {
	var body *html.Node
	var find func(n *html.Node)
	find = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "body" {
			body = n
		}
		for c := n.FirstChild; c != nil && body == nil; c = c.NextSibling {
			find(c)
		}
	}
	find(doc)
	var blocks []htmlBlock
	for c := body.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != html.ElementNode {
			continue
		}
		b := htmlBlock{tag: c.Data, text: htmlText(c)}
		if c.Data == "table" {
			eachElement(c, func(n *html.Node) {
				switch n.Data {
				case "th":
					b.header = append(b.header, htmlText(n))
				case "tr":
					if n.Parent.Data == "tbody" {
						b.rows++
					}
				}
			})
		}
		blocks = append(blocks, b)
	}
	return blocks
}

func eachElement(n *html.Node, fn func(*html.Node)) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode {
			fn(c)
			eachElement(c, fn)
		}
	}
}

func htmlText(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.TrimSpace(b.String())
}

// TestMarkdownRenders appends the summary, failures and tests of test_mixed
// into one document, as a CI step appends them to $GITHUB_STEP_SUMMARY,
// and renders it with a GitHub-flavoured Markdown renderer: three headings,
// each followed by its own table.
func TestMarkdownRenders(t *testing.T) {
	mixed := tdPath("test_mixed.bep")
	var md strings.Builder
	for _, view := range []string{"summary", "failures", "tests"} {
		md.WriteString(runOK(t, ExitTestFail, view, "--format", "markdown", mixed))
	}
	blocks := htmlBlocks(renderMarkdown(t, md.String()))
	want := []htmlBlock{
		{tag: "h3", text: "bes summary: " + testMixedID},
		{tag: "table", header: []string{"INVOCATION", "COMMAND", "RESULT"}, rows: 1},
		{tag: "h3", text: "bes failures: " + testMixedID},
		{tag: "table", header: []string{"KIND", "EVENT", "LABEL"}, rows: 2},
		{tag: "h3", text: "bes tests: " + testMixedID},
		{tag: "table", header: []string{"LABEL", "STATUS"}, rows: 9},
	}
	checkBlocks(t, blocks, want)

	// More documents after them: failures with their words (fenced
	// blocks), a document cut by --limit, and one without rows.
	md.WriteString(runOK(t, ExitBuildFail, "failures", "--format", "markdown", "--limit", "3", tdPath("build_keep_going_fail.bep")))
	md.WriteString(runOK(t, ExitOK, "failures", "--format", "markdown", tdPath("build_ok.bep")))
	blocks = htmlBlocks(renderMarkdown(t, md.String()))
	more := []htmlBlock{
		{tag: "h3", text: "bes failures: 5a64b61f-5c5f-48dd-94e7-685ae0e6aab0"},
		{tag: "table", header: []string{"KIND", "EVENT", "LABEL"}, rows: 3},
		{tag: "p", text: "… and 4 more failures (--limit 0 shows all; --format json lists every one)."},
		{tag: "p", text: "aborted //no/such/package:file.txt (ANALYSIS_FAILURE)"},
		{tag: "pre"},
		{tag: "p", text: "aborted //broken:bad_dep (ANALYSIS_FAILURE)"},
		{tag: "pre"},
		{tag: "p", text: "action //broken:fails_to_build (NON_ZERO_EXIT)"},
		{tag: "pre", text: "ERROR: /src/ws_small/broken/BUILD:2:8: Executing genrule //broken:fails_to_build failed: (Exit 1): bash failed: error executing command /bin/bash -c 'source external/bazel_tools/tools/genrule/genrule-setup.sh; echo '\\''genrule about to fail'\\'' >&2; exit 1'\ngenrule about to fail"},
		{tag: "h3", text: "bes failures: 716bc5f2-0416-4984-bf6d-e57bb3dc67a7"},
		{tag: "p", text: "No failures."},
	}
	checkBlocks(t, blocks, append(want, more...))
}

// checkBlocks compares rendered blocks with those wanted: a wanted text
// or header (its first cells; other engineers' columns may follow) only
// when given.
func checkBlocks(t *testing.T, got, want []htmlBlock) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d blocks, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.tag != w.tag || (w.text != "" && g.text != w.text) || fmt.Sprint(g.header[:min(len(g.header), len(w.header))]) != fmt.Sprint(w.header) || g.rows != w.rows {
			t.Errorf("block %d: got %s %q %q %d rows, want %s %q %q %d rows", i, g.tag, g.text, g.header, g.rows, w.tag, w.text, w.header, w.rows)
		}
	}
}
