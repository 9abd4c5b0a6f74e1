package commands

import (
	"fmt"
	"io"

	rendering "github.com/bes-cli/bes/commands/render"
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

// render writes rows in the chosen format, laid out by package render
// (imported as rendering: this function has its name). An empty list is
// "[]" in JSON and a table with just its header. The views write through
// renderView, which frames Markdown as a document and applies --limit.
func render[T any](w io.Writer, format string, rows []T, cols []column[T]) error {
	switch format {
	case formatJSON:
		if rows == nil {
			rows = []T{}
		}
		return rendering.JSON(w, rows)
	case formatNDJSON:
		return rendering.NDJSON(w, rows)
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
			return rendering.MarkdownTable(w, hdr, cells)
		}
		t := rendering.NewTable(w)
		t.Header(hdr)
		for _, c := range cells {
			t.Append(c)
		}
		return t.Flush()
	default:
		return &usageError{msg: fmt.Sprintf("unknown --format %q", format)}
	}
}

// The renderers' helpers that the commands' files use under these names.
var (
	safeCell     = rendering.SafeCell
	markdownText = rendering.MarkdownText
)
