package render

import (
	"bufio"
	"io"
	"strings"
)

// MarkdownTable writes a bare GitHub-flavoured Markdown table: a header
// row, the delimiter row, then one row per entry (MarkdownRow). An empty
// list is a table with just its header. It returns the error of writing.
func MarkdownTable(w io.Writer, header []string, rows [][]string) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(MarkdownRow(header))
	bw.WriteString(MarkdownDelimiter(len(header)))
	for _, r := range rows {
		bw.WriteString(MarkdownRow(r))
	}
	return bw.Flush()
}

// MarkdownDelimiter is the delimiter row of a Markdown table of n
// columns, which follows its header row.
func MarkdownDelimiter(n int) string {
	return "|" + strings.Repeat(" --- |", n) + "\n"
}

// MarkdownRow is one row of a Markdown table, its cells escaped
// (MarkdownCell) and unpadded, so that long URIs do not widen every row;
// it ends with a newline.
func MarkdownRow(cells []string) string {
	var b strings.Builder
	b.WriteString("|")
	for _, c := range cells {
		b.WriteString(" ")
		b.WriteString(MarkdownCell(c))
		b.WriteString(" |")
	}
	b.WriteString("\n")
	return b.String()
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

// MarkdownCell makes s safe as the text of a Markdown table cell: trimmed,
// a pipe and a backslash escaped, <, > and & as HTML entities, a line
// break as <br>.
func MarkdownCell(s string) string {
	return markdownReplacer.Replace(strings.TrimSpace(s))
}

// MarkdownText makes s safe as Markdown inline text (a heading, a bold
// title): control characters escaped as in tables (SafeCell), line breaks
// a space, and a backslash before each ASCII punctuation character that
// Markdown could read as markup (emphasis, links, code, HTML, a heading's
// closing #, a table's pipe); an underscore inside a word (TIMEOUT_FAILURE)
// is no emphasis and is kept as it is.
func MarkdownText(s string) string {
	s = SafeCell(strings.Join(strings.Fields(s), " "))
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' && i > 0 && i+1 < len(s) && isWordByte(s[i-1]) && isWordByte(s[i+1]):
		case strings.IndexByte("\\`*_[]<>#|~!&", c) >= 0:
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isWordByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
