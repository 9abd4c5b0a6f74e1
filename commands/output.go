package commands

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/olekukonko/tablewriter/pkg/twwidth"
)

// Output formats shared by every command.
const (
	formatTable  = "table"
	formatJSON   = "json"
	formatNDJSON = "ndjson"
	formatOBE    = "obe" // dump only: varint-delimited OrderedBuildEvents
	// formatMarkdown is a GitHub-flavoured Markdown document, for
	// $GITHUB_STEP_SUMMARY, merge request notes and the like: the views
	// frame their table with a heading (see markdown.go).
	formatMarkdown = "markdown"
)

// column describes one column of a table: its header and how to render a
// row's cell. JSON output uses the row struct's own json tags instead, so the
// table and the JSON come from the same row values.
type column[T any] struct {
	header string
	cell   func(T) string
}

// render writes rows in the chosen format. An empty list is "[]" in JSON and
// a table with just its header. The views write through renderView, which
// frames Markdown as a document and applies --limit.
func render[T any](w io.Writer, format string, rows []T, cols []column[T]) error {
	switch format {
	case formatJSON:
		if rows == nil {
			rows = []T{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(rows)
	case formatNDJSON:
		bw := bufio.NewWriter(w)
		enc := json.NewEncoder(bw)
		enc.SetEscapeHTML(false)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return bw.Flush()
	case formatTable, formatMarkdown:
		hdr := make([]string, len(cols))
		for i, c := range cols {
			hdr[i] = c.header
		}
		cells := make([][]string, len(rows))
		for j, r := range rows {
			cells[j] = make([]string, len(cols))
			for i, c := range cols {
				cells[j][i] = c.cell(r)
			}
		}
		if format == formatMarkdown {
			return writeMarkdown(w, hdr, cells)
		}
		t := newTable(w)
		t.header(hdr)
		for _, c := range cells {
			t.append(c)
		}
		return t.flush()
	default:
		return &usageError{msg: fmt.Sprintf("unknown --format %q", format)}
	}
}

// table is a plain, borderless table in the style of kubectl and docker:
// left-aligned columns two spaces apart, no trailing blanks, so that it
// pipes into cut, awk and grep.
//
// It gives tablewriter's bytes (TestTableMatchesTablewriter) at a fraction
// of its cost: a cell of printable ASCII, by far the common case, is as
// wide as it is long; any other is measured with tablewriter's twwidth.
type table struct {
	w     io.Writer
	hdr   []string
	rows  [][]string
	ascii bool
}

func newTable(w io.Writer) *table { return &table{w: w, ascii: true} }

func (tb *table) header(cells []string) {
	tb.hdr = cells
	tb.ascii = tb.ascii && printableASCII(cells)
}

func (tb *table) append(cells []string) {
	if !printableASCII(cells) {
		cells = terminalSafe(cells)
	}
	tb.rows = append(tb.rows, cells)
	tb.ascii = tb.ascii && printableASCII(cells)
}

// terminalSafe escapes, Go style (\n, \x1b, \u202e), what in a cell could
// break the table or drive a terminal: control characters, invalid UTF-8,
// and the bidirectional overrides that reorder what a terminal shows. Ids
// and labels come from other people's builds.
func terminalSafe(cells []string) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = safeCell(c)
	}
	return out
}

func safeCell(c string) string {
	var b strings.Builder
	for i, r := range c {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(c[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, c[i])
		case unicode.IsControl(r), r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// printableASCII reports whether every cell is printable ASCII (no
// control characters, no tabs).
func printableASCII(cells []string) bool {
	for _, c := range cells {
		for i := 0; i < len(c); i++ {
			if c[i] < 0x20 || c[i] > 0x7e {
				return false
			}
		}
	}
	return true
}

// flush writes the table: each column as wide as its widest cell, in
// display width (tablewriter's twwidth rules: East Asian wide characters
// take two columns, combining marks none), then two spaces.
func (tb *table) flush() error {
	width := func(c string) int { return len(c) }
	if !tb.ascii {
		width = twwidth.Width
	}
	widths := make([]int, len(tb.hdr))
	measure := func(cells []string) {
		for i, c := range cells {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], width(c))
		}
	}
	measure(tb.hdr)
	for _, r := range tb.rows {
		measure(r)
	}
	bw := bufio.NewWriterSize(tb.w, 64<<10)
	var line []byte
	write := func(cells []string) {
		line = line[:0]
		for i, c := range cells {
			line = append(line, c...)
			for n := width(c); n < widths[i]+2; n++ {
				line = append(line, ' ')
			}
		}
		line = bytes.TrimRight(line, " ")
		bw.Write(line)
		bw.WriteByte('\n')
	}
	write(tb.hdr)
	for _, r := range tb.rows {
		write(r)
	}
	return bw.Flush()
}

// writeMarkdown writes a bare GitHub-flavoured Markdown table: a header
// row, the delimiter row, then one row per entry (markdownRow). An empty
// list is a table with just its header; the views' documents
// (writeMarkdownDoc) say so in a sentence instead.
func writeMarkdown(w io.Writer, header []string, rows [][]string) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(markdownRow(header))
	bw.WriteString("|" + strings.Repeat(" --- |", len(header)) + "\n")
	for _, r := range rows {
		bw.WriteString(markdownRow(r))
	}
	return bw.Flush()
}

// markdownReplacer makes text safe inside a Markdown table cell: a pipe
// would end the cell, a newline the row, and < or & could start HTML.
var markdownReplacer = strings.NewReplacer(
	"|", `\|`,
	"\\", `\\`,
	"&", "&amp;",
	"<", "&lt;",
	">", "&gt;",
	"\r\n", "<br>",
	"\n", "<br>",
	"\r", "<br>",
)

func markdownCell(s string) string {
	return markdownReplacer.Replace(strings.TrimSpace(s))
}
