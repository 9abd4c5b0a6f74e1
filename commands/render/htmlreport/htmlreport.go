// Package htmlreport writes the page of one Bazel invocation that `bes
// report` makes (issue 16): one self-contained HTML file, its styles,
// scripts and data inlined, that makes no request to any other host (a
// Content-Security-Policy in the page says so to the browser).
//
// The header and the failures are HTML written here, so that they read with
// JavaScript off; so is the console, Bazel's output with its ANSI colours
// rendered by Buildkite's terminal-to-html. The rest (tests table, timing
// charts drawn with Chart.js, artifacts, options, metrics) is drawn in the
// browser by page.js from the data, inlined as JSON in a
// <script type="application/json" id="bes-data"> element.
//
// The package knows nothing of Bazel's events: the caller (commands'
// report.go) gives it the words and the data.
package htmlreport

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"

	terminal "github.com/buildkite/terminal-to-html/v3"
)

// Page is what one page shows.
type Page struct {
	// Title is the page's <title> and heading: the Bazel command and its
	// patterns ("bazel test //...").
	Title string
	// Verdict colours the header: "passed", "build_failed",
	// "tests_failed" or "did_not_finish" (invocation.Verdict); VerdictText
	// says it in words ("tests failed (exit 6)").
	Verdict, VerdictText string
	// Fields are the header's facts, in order (result, start, duration,
	// user, host, commit…); empty values are left out.
	Fields []Field
	// Failures are shown first, each with Bazel's own words.
	Failures []Failure
	// TestLogs are the ends of test attempts' test.log files, shown as
	// HTML (with their colours, for JavaScript off too), failing ones
	// open; page.js links each from its attempt's row.
	TestLogs []TestLog
	// Console is Bazel's console output as it printed it (Progress events'
	// stderr and stdout, ANSI escapes kept): rendered to HTML with its
	// colours. At most MaxConsole bytes of its end are shown.
	Console []byte
	// Data is inlined as JSON for page.js: it must marshal with
	// encoding/json. page.js reads its fields summary, tests, failures,
	// actions, artifacts, command_lines, critical_path (see report.go in
	// package commands).
	Data any
}

// Field is one fact of the header.
type Field struct {
	Name, Value string
	// Link, when set, makes Value a link (a file:// URI of the machine
	// that ran Bazel).
	Link string
}

// Failure is one failure with its words.
type Failure struct {
	// Title names it: "test //tests:fail (FAILED)".
	Title string
	// Message is the failure's reason in one paragraph (a failure detail,
	// root causes).
	Message string
	// Blocks are Bazel's ERROR messages for it (with the action's output
	// that followed them) and the last lines of its local log files; each
	// is shown preformatted, its Heading above it when set.
	Blocks []Block
}

// TestLog is the end of one test attempt's test.log.
type TestLog struct {
	// ID makes the element's id, "log-ID": the data's runs name it
	// (log_tail) for page.js.
	ID int
	// Title names the attempt ("//tests:fail run 1 shard 1 attempt 2"),
	// Status is its TestStatus name, URI the file's.
	Title, Status, URI string
	// Open shows it unfolded (a failing attempt's).
	Open bool
	// Text is the end of the file, ANSI escapes kept (rendered as the
	// console is), Cut the number of bytes before it left out.
	Text []byte
	Cut  int64
}

// Block is one preformatted text of a failure.
type Block struct {
	Heading string
	Text    string
}

// MaxConsole bounds the console bytes a page renders: the end of a longer
// console is shown, with a line saying how much was left out (bes log
// prints it whole). Each line is an element of the page: 1 MiB is some
// 15,000 of Bazel's lines, which a browser lays out in a fraction of a
// second.
const MaxConsole = 1 << 20

var (
	//go:embed page.html.tmpl
	pageTemplate string
	//go:embed page.css
	pageCSS string
	//go:embed page.js
	pageJS string
	//go:embed assets/chart.umd.min.js
	chartJS string
	//go:embed assets/terminal.css
	terminalCSS string

	tmpl = template.Must(template.New("page").Parse(pageTemplate))
)

// inlineScript returns a library's script fit to be inlined: without its
// source map comment (which would make developer tools fetch a file).
func inlineScript(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndex(s, "\n//# sourceMappingURL="); i >= 0 {
		s = s[:i]
	}
	return s
}

// Write writes p as one HTML document to w. An error is w's, or Data's
// from encoding/json.
func Write(w io.Writer, p Page) error {
	data, err := inlineJSON(p.Data)
	if err != nil {
		return fmt.Errorf("report data: %w", err)
	}
	console, cut := p.Console, 0
	if len(console) > MaxConsole {
		cut = len(console) - MaxConsole
		console = console[cut:]
		if i := bytes.IndexByte(console, '\n'); i >= 0 {
			cut += i + 1
			console = console[i+1:]
		}
	}
	type testLogView struct {
		TestLog
		HTML template.HTML
	}
	logs := make([]testLogView, len(p.TestLogs))
	for i, l := range p.TestLogs {
		// Escaped by terminal-to-html, as the console.
		logs[i] = testLogView{TestLog: l, HTML: template.HTML(consoleHTML(l.Text))}
	}
	var fields []Field
	for _, f := range p.Fields {
		if f.Value != "" {
			fields = append(fields, f)
		}
	}
	return tmpl.Execute(w, struct {
		Page
		Fields      []Field
		Logs        []testLogView
		ConsoleHTML template.HTML
		ConsoleCut  int
		HasConsole  bool
		CSS         template.CSS
		DataJSON    template.JS
		ChartJS     template.JS
		PageJS      template.JS
	}{
		Page:   p,
		Fields: fields,
		Logs:   logs,
		// terminal-to-html escapes the text it is given (<, >, &, quotes)
		// and writes only its own spans and links.
		ConsoleHTML: template.HTML(consoleHTML(console)),
		ConsoleCut:  cut,
		HasConsole:  len(console) > 0,
		CSS:         template.CSS(terminalCSS + "\n" + pageCSS),
		DataJSON:    template.JS(data),
		ChartJS:     template.JS(inlineScript(chartJS)),
		PageJS:      template.JS(pageJS),
	})
}

// consoleHTML renders console output (ANSI escapes, carriage returns and
// Bazel's cursor movements) as HTML, one <div class="line"> per line, so
// that page.js can filter lines and the browser can find words. A control
// character that the terminal does not act on (NUL, BEL, a stray ESC; any
// of U+0000 to U+001F but tab, newline and carriage return, and DEL) is
// shown as U+FFFD, as JUnit's files show it: raw, it has no place in HTML.
func consoleHTML(b []byte) string {
	return withoutControls(terminalHTML(b))
}

// withoutControls returns s with each control character but tab, newline
// and carriage return (U+0000 to U+001F, U+007F) replaced by U+FFFD.
func withoutControls(s string) string {
	control := func(r rune) bool { return (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f }
	if !strings.ContainsFunc(s, control) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if control(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

// terminalHTML is consoleHTML before its control characters are replaced.
func terminalHTML(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.Grow(len(b) + len(b)/4)
	line := func(html string) {
		sb.WriteString(`<div class="line">`)
		sb.WriteString(strings.TrimSuffix(html, "\n"))
		sb.WriteString("</div>")
	}
	// A screen of at most 1,000 lines: the lines that scroll out of it are
	// written as they go, so that memory does not grow with the console
	// (its cursor movements reach at most that far up).
	screen, err := terminal.NewScreen(terminal.WithMaxSize(0, 1000))
	if err != nil {
		return template.HTMLEscapeString(string(b))
	}
	screen.Timestamps = false
	screen.ScrollOutFunc = line
	if _, err := screen.Write(b); err != nil {
		return template.HTMLEscapeString(string(b))
	}
	if rest := screen.AsHTMLWithTimestamps(false); rest != "" {
		for l := range strings.SplitSeq(rest, "\n") {
			line(l)
		}
	}
	return sb.String()
}

// inlineJSON marshals v for a <script type="application/json"> element:
// encoding/json writes <, > and & as \u003c, \u003e and \u0026 (and
// U+2028, U+2029 escaped), so that no "</script>" nor "<!--" can end or
// change the element, whatever the strings of the build hold.
func inlineJSON(v any) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(true)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}
