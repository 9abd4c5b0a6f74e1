package commands

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/invocation"
	rendering "github.com/bes-cli/bes/commands/render"
)

// The views' Markdown documents (issue 11): what `--format markdown` of
// summary, tests, failures and artifacts writes for $GITHUB_STEP_SUMMARY or
// a merge request note, several of them appended into one file.
//
// A document starts with a heading that names the view and the invocation
// ("### bes failures: 657fb236-551f-4f88-ab84-e114caf29e48", or "### bes
// failures: 2 invocations"), holds the table, or a sentence when there is
// no row ("No failures."), and ends with a blank line: GitHub-flavoured
// Markdown continues a table over a line that follows it without one, so
// two bare tables appended render as one mangled table.

const (
	// markdownLimit is the rows a Markdown document shows without
	// --limit.
	markdownLimit = 100
	// markdownBudget is the most bytes a Markdown document holds unless
	// --limit is 0: GitHub refuses a step summary over 1 MiB (all that a
	// step appended to $GITHUB_STEP_SUMMARY), so the documents of the four
	// views fit into one.
	markdownBudget = 200 << 10
)

// markdownHelp documents the views' Markdown, --limit and --exit-zero.
const markdownHelp = `MARKDOWN: a GitHub-flavoured Markdown document to append to
$GITHUB_STEP_SUMMARY or a merge request note: a heading naming the view and
the invocation ("### bes tests: 657fb236-…"), the table (or a sentence when
there is nothing to show: "No tests."), and a blank line, so that documents
appended one after another stay apart. file:// URIs are shown relative to
the exec root, output base or workspace of the machine that ran Bazel
(bazel-out/k8-fastbuild/testlogs/…/test.log); JSON keeps them. It holds at
most 100 rows and 200 KiB (GitHub takes 1 MiB per step summary) unless
--limit N says (0: all), then a line "… and N more". --exit-zero exits 0
once the output is written, for the CI step that writes a report: gate
with the same command without it.`

// limitFlag is --limit, which every view takes.
func limitFlag() cli.Flag {
	return &cli.IntFlag{
		Name:  "limit",
		Usage: "show at most `N` rows, then a line saying how many more (table and markdown; markdown shows 100 rows and at most 200 KiB unless told, a table all; 0: all)",
		Action: func(c *cli.Context, n int) error {
			if n < 0 {
				return &usageError{msg: "--limit: want 0 or more"}
			}
			if f := c.String("format"); f != formatTable && f != formatMarkdown {
				return &usageError{msg: fmt.Sprintf("--limit: only for --format table and markdown (%s gives every row)", f)}
			}
			return nil
		},
	}
}

// limitFrom returns --limit, -1 when it was not given.
func limitFrom(c *cli.Context) int {
	if !c.IsSet("limit") {
		return -1
	}
	return c.Int("limit")
}

// viewDoc says how a view frames its rows in a table and in Markdown:
// --limit, and the Markdown document's heading, its sentence for no row,
// and the directories its file:// paths are shown relative to.
type viewDoc struct {
	format  string
	limit   int    // rows shown at most; 0: all
	budget  int    // bytes of a Markdown document at most; 0: no limit
	heading string // "bes failures: 657fb236-…"
	none    string // the sentence for no row: "No failures."
	noun    string // what a row is, singular: "failure", "output file"
	// bases are the directories a Markdown document shows file:// paths
	// relative to, longest first (see pathBases).
	bases []string
	// after, if set, writes what follows the table about its first shown
	// rows (failures' own words). In Markdown it is given the bytes left
	// (room; 0: no limit), and each block it writes ends with a blank line.
	after func(w io.Writer, shown, room int) error
}

// newViewDoc frames the rows of view (summary, tests, failures,
// artifacts) about invs; none is the sentence for no row, noun what a row
// is.
func newViewDoc(view string, opts viewOptions, invs []*invocation.Invocation, none, noun string) *viewDoc {
	d := &viewDoc{format: opts.Format, limit: opts.Limit, none: none, noun: noun}
	if d.format == formatMarkdown {
		d.heading = docHeading(view, invs)
		d.bases = pathBases(invs)
		if d.limit < 0 {
			d.limit = markdownLimit
		}
		if d.limit != 0 {
			d.budget = markdownBudget
		}
	}
	d.limit = max(d.limit, 0)
	return d
}

// docHeading names the view and the invocation: its id, its stream's key
// when Bazel gave no id (bepfile.IsSynthesizedID), or how many there are.
func docHeading(view string, invs []*invocation.Invocation) string {
	switch len(invs) {
	case 0:
		return "bes " + view + ": no invocation"
	case 1:
		id := invs[0].InvocationID
		if id == "" || bepfile.IsSynthesizedID(id) {
			id = invs[0].StreamKey
		}
		return "bes " + view + ": " + id
	}
	return fmt.Sprintf("bes %s: %d invocations", view, len(invs))
}

// pathBases returns the directories of the invocations' machines that
// file:// paths are shown relative to in Markdown, longest first: the
// exec root (WorkspaceConfig.local_exec_root, where bazel-out/ is), the
// output base (the exec root's grandparent, <output_base>/execroot/<name>
// in Bazel's layout: external/ is there) and the workspace
// (BuildStarted.workspace_directory: source files).
func pathBases(invs []*invocation.Invocation) []string {
	var bases []string
	add := func(dir string) {
		dir = strings.TrimRight(dir, "/")
		if dir != "" && !slices.Contains(bases, dir) {
			bases = append(bases, dir)
		}
	}
	for _, inv := range invs {
		if root := inv.ExecRoot; root != "" {
			add(root)
			if parent := filepath.Dir(strings.TrimRight(root, "/")); filepath.Base(parent) == "execroot" {
				add(filepath.Dir(parent))
			}
		}
		add(inv.WorkspaceDirectory)
	}
	slices.SortStableFunc(bases, func(a, b string) int { return len(b) - len(a) })
	return bases
}

// relative shows a cell's file:// URIs (the words that are one) as paths
// relative to the first base that holds them: "bazel-out/k8-fastbuild/
// testlogs/tests/fail/test.log". Other words, and URIs outside every base,
// are kept.
func (d *viewDoc) relative(cell string) string {
	if len(d.bases) == 0 || !strings.Contains(cell, "file://") {
		return cell
	}
	words := strings.Split(cell, " ")
	for i, word := range words {
		words[i] = d.relativeURI(word)
	}
	return strings.Join(words, " ")
}

func (d *viewDoc) relativeURI(uri string) string {
	if !strings.HasPrefix(uri, "file://") {
		return uri
	}
	path, ok := localPath(uri)
	if !ok {
		return uri
	}
	path = filepath.ToSlash(path)
	for _, base := range d.bases {
		if rest, ok := strings.CutPrefix(path, base+"/"); ok && rest != "" {
			return rest
		}
	}
	return uri
}

// more says how many rows were left out.
func (d *viewDoc) more(n int) string {
	if d.format == formatMarkdown {
		return fmt.Sprintf("… and %d more %s (`--limit 0` shows all; `--format json` lists every one).", n, plural(n, d.noun))
	}
	return fmt.Sprintf("… and %d more %s (--limit 0 shows all)", n, plural(n, d.noun))
}

// plural is noun ("failure") for 1, else its plural ("failures").
func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

// renderView writes rows as render does; a table or Markdown document
// shows at most d.limit rows, then a line saying how many more, and
// d.after's words about the rows shown. In Markdown the rows are framed as
// a document (see the top of this file) of at most d.budget bytes, its
// file:// paths relative to d.bases.
func renderView[T any](w io.Writer, d *viewDoc, rows []T, cols []column[T]) error {
	switch d.format {
	case formatMarkdown:
		return writeMarkdownDoc(w, d, rows, cols)
	case formatTable:
		shown := len(rows)
		if d.limit > 0 {
			shown = min(shown, d.limit)
		}
		if err := render(w, d.format, rows[:shown], cols); err != nil {
			return err
		}
		if shown < len(rows) {
			if _, err := fmt.Fprintln(w, d.more(len(rows)-shown)); err != nil {
				return err
			}
		}
		if d.after != nil {
			return d.after(w, shown, 0)
		}
		return nil
	}
	return render(w, d.format, rows, cols)
}

// writeMarkdownDoc writes rows as one Markdown document: the heading, the
// table (or d.none), a line saying how many rows were left out, d.after's
// words, and a blank line to end.
func writeMarkdownDoc[T any](w io.Writer, d *viewDoc, rows []T, cols []column[T]) error {
	bw := bufio.NewWriter(w)
	n := 0
	put := func(s string) {
		n += len(s)
		bw.WriteString(s)
	}
	put("### " + markdownText(d.heading) + "\n\n")
	if len(rows) == 0 {
		put(d.none + "\n\n")
		return bw.Flush()
	}
	hdr := make([]string, len(cols))
	for i, c := range cols {
		hdr[i] = c.header
	}
	put(rendering.MarkdownRow(hdr))
	put(rendering.MarkdownDelimiter(len(cols)))
	// What follows the rows: the line saying how many more, and room for
	// a word or two.
	const reserve = 1 << 10
	shown := 0
	cells := make([]string, len(cols))
	for _, r := range rows {
		if d.limit > 0 && shown == d.limit {
			break
		}
		for i, c := range cols {
			cells[i] = d.relative(c.cell(r))
		}
		line := rendering.MarkdownRow(cells)
		if d.budget > 0 && shown > 0 && n+len(line) > d.budget-reserve {
			break
		}
		put(line)
		shown++
	}
	put("\n")
	if shown < len(rows) {
		put(d.more(len(rows)-shown) + "\n\n")
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if d.after == nil {
		return nil
	}
	room := 0
	if d.budget > 0 {
		// Less the line that says how many were left out.
		room = max(d.budget-n-256, 1)
	}
	return d.after(w, shown, room)
}

// noTests is the tests view's sentence for no row.
func noTests(statuses []string) string {
	if len(statuses) == 0 {
		return "No tests."
	}
	return "No tests with status " + strings.Join(statuses, " or ") + "."
}

// exitZeroFlag is --exit-zero of summary, tests, failures and artifacts:
// the step that writes a report (JUnit, a step summary, a merge request
// note) exits 0, so that the job goes on to the upload and the gate.
func exitZeroFlag() cli.Flag {
	return &cli.BoolFlag{Name: "exit-zero", Usage: "exit 0 once the output is written, whatever the verdict (for the CI step that writes a report: gate with the same command without it); errors that leave no output still exit non-zero"}
}

// exit is the view's exit status: res's, or none with --exit-zero (the
// output is written; standard error has said what was wrong).
func (o viewOptions) exit(res *outcome) error {
	if o.ExitZero {
		return nil
	}
	return res.err()
}
