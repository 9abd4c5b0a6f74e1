package htmlreport

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"html"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestAssetsPinned checks the inlined libraries against the SHA-256 sums
// assets/README.md records, so that an update is deliberate and recorded.
func TestAssetsPinned(t *testing.T) {
	readme, err := os.ReadFile("assets/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"chart.umd.min.js": chartJS, "terminal.css": terminalCSS} {
		sum := sha256.Sum256([]byte(text))
		want := hex.EncodeToString(sum[:])
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(name) + "` .*`([0-9a-f]{64})` \\|$").FindStringSubmatch(string(readme))
		if row == nil {
			t.Errorf("assets/README.md has no row for %s", name)
			continue
		}
		if row[1] != want {
			t.Errorf("%s: SHA-256 %s, assets/README.md records %s", name, want, row[1])
		}
	}
	if !strings.HasPrefix(chartJS, "/*!\n * Chart.js v4.6.1\n") {
		t.Errorf("chart.umd.min.js is not Chart.js 4.6.1: %.40q", chartJS)
	}
}

// TestInlineScriptsSafe: no inlined script can end its element early, and
// the source map comment is gone.
func TestInlineScriptsSafe(t *testing.T) {
	for name, s := range map[string]string{"chart.js": inlineScript(chartJS), "page.js": pageJS} {
		if i := strings.Index(strings.ToLower(s), "</script"); i >= 0 {
			t.Errorf("%s holds </script at %d", name, i)
		}
		if strings.Contains(s, "<!--") || strings.Contains(strings.ToLower(s), "<script") {
			t.Errorf("%s holds <!-- or <script", name)
		}
		if strings.Contains(s, "sourceMappingURL") {
			t.Errorf("%s keeps a sourceMappingURL comment", name)
		}
	}
	if !strings.Contains(chartJS, "sourceMappingURL") {
		t.Error("the pinned chart.umd.min.js was expected to end with a sourceMappingURL comment that inlineScript drops")
	}
}

// hostile are strings a build may well hold (labels, messages, console
// lines) that would break a page that did not escape them.
var hostile = []string{
	`</script><script>document.title="pwned"</script>`,
	`//pkg:"quoted" 'single' <b>bold</b> & amp`,
	`<!-- <script>`,
	"\u2028\u2029 line separators",
	`</SCRIPT >`,
	`{{.Title}}`,
}

func hostilePage() Page {
	return Page{
		Title:       hostile[0],
		Verdict:     `tests_failed" onload="x`,
		VerdictText: hostile[1],
		Fields:      []Field{{Name: hostile[2], Value: hostile[3]}, {Name: "link", Value: hostile[1], Link: `javascript:alert(1)`}},
		Failures:    []Failure{{Title: hostile[0], Message: hostile[1], Blocks: []Block{{Heading: hostile[4], Text: hostile[0]}}}},
		Console:     []byte("\x1b[31m" + hostile[0] + "\x1b[0m\n" + hostile[1] + "\n"),
		Data:        map[string]any{"labels": hostile, "tests": []map[string]string{{"label": hostile[1], "status": hostile[0]}}},
	}
}

// TestHostileStrings: whatever the strings, the page has exactly its own
// three script elements, its data parses back to the same strings, and
// the text shows them as text.
func TestHostileStrings(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, hostilePage()); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if n := strings.Count(strings.ToLower(page), "<script"); n != 3 {
		t.Errorf("%d <script elements, want 3 (data, Chart.js, page.js)", n)
	}
	if n := strings.Count(strings.ToLower(page), "</script"); n != 3 {
		t.Errorf("%d </script, want 3", n)
	}
	data := DataOf(t, page)
	var got struct {
		Labels []string            `json:"labels"`
		Tests  []map[string]string `json:"tests"`
	}
	if err := json.Unmarshal([]byte(data), &got); err != nil {
		t.Fatalf("the inlined data is not JSON: %v", err)
	}
	if strings.Join(got.Labels, "\x00") != strings.Join(hostile, "\x00") || got.Tests[0]["status"] != hostile[0] {
		t.Errorf("the data came back as %q, want %q", got.Labels, hostile)
	}
	for _, s := range []string{hostile[0], hostile[1]} {
		if !strings.Contains(page, html.EscapeString(s)) {
			t.Errorf("the page does not show %q escaped", s)
		}
	}
	if strings.Contains(page, `href="javascript:`) {
		t.Error("a javascript: link was written")
	}
	if strings.Contains(page, `onload="x`) {
		t.Error("the verdict broke out of its class attribute")
	}
	// The console's red escape is rendered as terminal-to-html's class,
	// around the line's text, escaped.
	m := regexp.MustCompile(`<div class="line"><span class="term-fg31">([^<]*)</span></div>`).FindStringSubmatch(page)
	if m == nil || html.UnescapeString(m[1]) != hostile[0] {
		t.Errorf("the console's red line is not rendered as text: %q", m)
	}
}

// DataOf returns the text of the page's <script type="application/json"
// id="bes-data"> element.
func DataOf(t testing.TB, page string) string {
	t.Helper()
	const open = `<script type="application/json" id="bes-data">`
	i := strings.Index(page, open)
	if i < 0 {
		t.Fatal("no bes-data element")
	}
	rest := page[i+len(open):]
	j := strings.Index(rest, "</script>")
	if j < 0 {
		t.Fatal("bes-data element not closed")
	}
	return rest[:j]
}

// TestConsoleCut: a console over MaxConsole keeps its end, from a line's
// start, and says how much was left out.
func TestConsoleCut(t *testing.T) {
	line := strings.Repeat("x", 99) + "\n"
	console := []byte(strings.Repeat(line, MaxConsole/len(line)+10) + "THE END\n")
	var buf bytes.Buffer
	if err := Write(&buf, Page{Title: "t", Verdict: "passed", Console: console}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	m := regexp.MustCompile(`The first (\d+) bytes of the console are left out`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no note of the cut")
	}
	cut, _ := strconv.Atoi(m[1])
	if low := len(console) - MaxConsole; cut < low || cut > low+len(line) || cut%len(line) != 0 {
		t.Errorf("cut %d bytes, want the first whole line boundary from %d", cut, low)
	}
	if !strings.Contains(page, `<div class="line">THE END</div>`) {
		t.Error("the console's end is not shown")
	}
	if strings.Count(page, `<div class="line">x`) > MaxConsole/len(line) {
		t.Errorf("more than %d lines shown", MaxConsole/len(line))
	}
}
