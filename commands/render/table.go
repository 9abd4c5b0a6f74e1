// Package render writes what the commands print, whatever the command:
// plain tables (Table, Layout), GitHub-flavoured Markdown tables and text
// (MarkdownTable, MarkdownText), JSON (JSON, NDJSON), and the escaping
// that keeps other people's ids and labels from breaking a table or
// driving a terminal (SafeCell). The commands decide what goes into a
// row; this package decides how a row looks.
package render

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/olekukonko/tablewriter/pkg/twwidth"
)

// Table is a plain, borderless table in the style of kubectl and docker:
// left-aligned columns two spaces apart, no trailing blanks, so that it
// pipes into cut, awk and grep. It holds its rows until Flush; Layout
// writes a table whose rows are not held.
//
// It gives tablewriter's bytes (TestTableMatchesTablewriter) at a fraction
// of its cost: a cell of printable ASCII, by far the common case, is as
// wide as it is long; any other is measured with tablewriter's twwidth.
// A Table is not safe for concurrent use.
type Table struct {
	w     io.Writer
	hdr   []string
	rows  [][]string
	ascii bool
}

// NewTable returns an empty table that Flush writes to w.
func NewTable(w io.Writer) *Table { return &Table{w: w, ascii: true} }

// Header sets the header row.
func (tb *Table) Header(cells []string) {
	tb.hdr = cells
	tb.ascii = tb.ascii && printableASCII(cells)
}

// Append adds a row, its cells made safe (SafeCell). A row may have
// fewer or more cells than the header.
func (tb *Table) Append(cells []string) {
	if !printableASCII(cells) {
		cells = SafeCells(cells)
	}
	tb.rows = append(tb.rows, cells)
	tb.ascii = tb.ascii && printableASCII(cells)
}

// Flush writes the table: each column as wide as its widest cell, in
// display width (tablewriter's twwidth rules: East Asian wide characters
// take two columns, combining marks none), then two spaces. It returns
// the error of writing.
func (tb *Table) Flush() error {
	l := Layout{ascii: tb.ascii}
	l.measure(tb.hdr)
	for _, r := range tb.rows {
		l.measure(r)
	}
	lw := l.Writer(tb.w)
	lw.write(tb.hdr)
	for _, r := range tb.rows {
		lw.write(r)
	}
	return lw.Flush()
}

// Layout is the column widths of a table written in two passes over its
// rows, so that no row is held: Measure every row (the header included),
// then write each again, in any order, with a Writer. It gives the bytes
// a Table of the same rows gives. The zero Layout is ready to use.
type Layout struct {
	widths []int
	ascii  bool // every cell measured is printable ASCII
	mixed  bool // some cell measured is not
}

// Measure widens the columns to the cells of a row, made safe as
// Table.Append makes them.
func (l *Layout) Measure(cells []string) {
	if !printableASCII(cells) {
		cells = SafeCells(cells)
		l.mixed = l.mixed || !printableASCII(cells)
	}
	l.ascii = !l.mixed
	l.measure(cells)
}

// measure widens the columns to cells, already safe; l.ascii says
// whether every cell so far is printable ASCII.
func (l *Layout) measure(cells []string) {
	for i, c := range cells {
		if i >= len(l.widths) {
			l.widths = append(l.widths, 0)
		}
		if l.ascii {
			l.widths[i] = max(l.widths[i], len(c))
		} else {
			l.widths[i] = max(l.widths[i], twwidth.Width(c))
		}
	}
}

// Select keeps the columns keep keeps of the widths measured (keep gets
// one width per column and returns those of the columns shown): a table
// that learns which columns it shows while measuring them.
func (l *Layout) Select(keep func([]int) []int) { l.widths = keep(l.widths) }

// Writer returns a Writer of rows laid out by l, buffered on w.
func (l *Layout) Writer(w io.Writer) *Writer {
	width := func(c string) int { return len(c) }
	if !l.ascii {
		width = twwidth.Width
	}
	return &Writer{bw: bufio.NewWriterSize(w, 64<<10), widths: l.widths, width: width}
}

// Writer writes the rows of a Layout. It is not safe for concurrent use.
type Writer struct {
	bw     *bufio.Writer
	widths []int
	width  func(string) int
	line   []byte
}

// Row writes a row, its cells made safe (SafeCell).
func (lw *Writer) Row(cells []string) {
	if !printableASCII(cells) {
		cells = SafeCells(cells)
	}
	lw.write(cells)
}

// write writes a row of safe cells, each padded to its column's width and
// two spaces, the line without trailing blanks.
func (lw *Writer) write(cells []string) {
	lw.line = lw.line[:0]
	for i, c := range cells {
		lw.line = append(lw.line, c...)
		for n := lw.width(c); n < lw.widths[i]+2; n++ {
			lw.line = append(lw.line, ' ')
		}
	}
	lw.bw.Write(bytes.TrimRight(lw.line, " "))
	lw.bw.WriteByte('\n')
}

// Flush writes what is buffered and returns the first error of writing.
func (lw *Writer) Flush() error { return lw.bw.Flush() }

// SafeCells returns the cells made safe (SafeCell) and short (ShortCell),
// in a new slice.
func SafeCells(cells []string) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = SafeCell(ShortCell(c, MaxCell))
	}
	return out
}

// MaxCell is the most bytes of a cell a table shows: a longer one (a
// stream key of megabytes, from a hostile or broken client; issue 13) is
// shortened by ShortCell, so that one row cannot take megabytes of every
// line's padding or of the terminal.
const MaxCell = 1024

// ShortCell returns c if it holds at most max bytes, else its start and its
// end (3/4 and 1/4 of what max leaves, cut on rune boundaries) around
// "...(N bytes)...", N being len(c), in at most max bytes: a key's build
// id and invocation id both show. The result is printable ASCII if c is.
func ShortCell(c string, max int) string {
	if len(c) <= max {
		return c
	}
	budget := max - len("...( bytes)...") - 20 // 20: the digits of any length
	head, tail := budget*3/4, budget/4
	for head > 0 && !utf8.RuneStart(c[head]) {
		head--
	}
	t := len(c) - tail
	for t < len(c) && !utf8.RuneStart(c[t]) {
		t++
	}
	return c[:head] + "...(" + strconv.Itoa(len(c)) + " bytes)..." + c[t:]
}

// SafeCell escapes, Go style (\n, \x1b, \u202e), what in a cell could
// break a table or drive a terminal: control characters, invalid UTF-8
// (each bad byte as \xNN), and the bidirectional overrides that reorder
// what a terminal shows. Ids and labels come from other people's builds.
// Every line bes writes on standard error about an input goes through it.
func SafeCell(c string) string {
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
// control characters, no tabs) and no longer than MaxCell: a table can
// show it as it is.
func printableASCII(cells []string) bool {
	for _, c := range cells {
		if len(c) > MaxCell {
			return false
		}
		for i := 0; i < len(c); i++ {
			if c[i] < 0x20 || c[i] > 0x7e {
				return false
			}
		}
	}
	return true
}
