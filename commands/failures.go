package commands

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/bepfile/invocation"
)

// failureRow is one failure as `bes failures` prints it.
type failureRow struct {
	Stream        string `json:"stream,omitempty"`
	InvocationID  string `json:"invocation_id,omitempty"`
	Kind          string `json:"kind"`  // aborted, target, action, test, build
	Event         string `json:"event"` // the kind of the event's id, e.g. configuredLabel
	Label         string `json:"label"`
	Configuration string `json:"configuration,omitempty"`
	Reason        string `json:"reason,omitempty"`
	Message       string `json:"message,omitempty"`
	ActionType    string `json:"action_type,omitempty"`
	ExitCode      *int32 `json:"exit_code,omitempty"`
	Stdout        string `json:"stdout,omitempty"`
	Stderr        string `json:"stderr,omitempty"`
	// Logs are the test.log URIs of a test's failed attempts.
	Logs       []string `json:"logs,omitempty"`
	RootCauses []string `json:"root_causes,omitempty"`
	// Console holds the ERROR messages Bazel printed for this failure,
	// each with the output of the action that followed it.
	Console []string `json:"console,omitempty"`
	// Tails holds the last lines of the files named by Stderr, Stdout and
	// Logs that exist on this machine (file:// URIs), --log-lines each.
	Tails []fileTail `json:"tails,omitempty"`
}

// fileTail is the end of a local file a failure names.
type fileTail struct {
	URI   string   `json:"uri"`
	Lines []string `json:"lines"`
	// Truncated is set when the file has more lines than Lines.
	Truncated bool `json:"truncated"`
}

// message is the MESSAGE cell: for an action its mnemonic and exit code
// first, then the first line of the message.
func (r failureRow) message() string {
	msg := cellText(r.Message)
	if r.Kind != string(invocation.KindAction) {
		if msg == "" && len(r.RootCauses) > 0 && (len(r.RootCauses) > 1 || r.RootCauses[0] != r.Label) {
			msg = "root cause: " + strings.Join(r.RootCauses, " ")
		}
		return msg
	}
	head := strings.TrimSpace(r.ActionType + " action")
	if r.ExitCode != nil {
		head += fmt.Sprintf(", exit code %d", *r.ExitCode)
	}
	if msg == "" {
		return head
	}
	return head + ": " + msg
}

// output is the OUTPUT cell: the URIs to look at.
func (r failureRow) output() string {
	var uris []string
	for _, u := range []string{r.Stderr, r.Stdout} {
		if u != "" {
			uris = append(uris, u)
		}
	}
	return strings.Join(append(uris, r.Logs...), " ")
}

// String is the summary's FIRST FAILURE cell.
func (r failureRow) String() string {
	s := strings.TrimSpace(r.Kind + " " + r.Label)
	for _, p := range []string{r.Reason, r.message()} {
		if p != "" {
			s += ": " + p
		}
	}
	return s
}

func failureColumns(n invNames) []column[failureRow] {
	return withInvocation(n, func(r failureRow) (string, string) { return r.InvocationID, r.Stream }, []column[failureRow]{
		{"KIND", func(r failureRow) string { return r.Kind }},
		{"EVENT", func(r failureRow) string { return r.Event }},
		{"LABEL", func(r failureRow) string { return r.Label }},
		{"REASON", func(r failureRow) string { return r.Reason }},
		{"MESSAGE", failureRow.message},
		{"OUTPUT", failureRow.output},
	})
}

func newFailuresCommand() *cli.Command {
	return &cli.Command{
		Name:      "failures",
		Usage:     "what went wrong: failed and aborted targets, failed actions, failed tests",
		ArgsUsage: "[STREAM...] [FILE...]",
		Description: commandHelp(`Lists what went wrong in each invocation, in the order Bazel reported it:

   aborted  an announced event that will never come (Bazel's Aborted), with
            its reason (ANALYSIS_FAILURE, USER_INTERRUPTED…) and
            description; EVENT says what was aborted (targetCompleted,
            configuredLabel, unconfiguredLabel…). Reasons that are not
            failures (SKIPPED, NO_BUILD, NO_ANALYZE) are left out.
   target   a target that failed to build, with its failure detail's code
            (e.g. SOURCE_INPUT_MISSING) and message, and its root causes
   action   a failed action: mnemonic, exit code, failure detail, and the
            URIs of its stderr and stdout
   test     a test that failed, timed out or did not complete, with the
            test.log URIs of its failed attempts (flaky tests passed and
            are not listed)
   build    Bazel's own failure detail when the build did not succeed, or,
            reason NO_BUILD_FINISHED, a stream Bazel ended without
            BuildFinished (it refused the command: an unknown option, a bad
            pattern; or crashed), with Bazel's ERROR line
   did_not_finish  a stream with neither BuildFinished nor Bazel's last
            message: Bazel was killed or the file cut; how many tests never
            reported

After the table come each failure's own words: the ERROR messages Bazel
printed for it on its console (from the BEP's Progress events), with the
output of the failed action that followed them, and, when the file:// URIs
exist on this machine (right after the build, on the CI machine), the last
--log-lines lines of the action's stderr and stdout and of each failed
test.log. JSON gives them as "console" and "tails".

` + viewSelectionHelp + `

Formats: table (the message's first line, the OUTPUT column the URIs to
read), json and ndjson (whole messages, root causes), markdown (the
table, then each failure's words as a fenced block).

` + markdownHelp + `

` + gateHelp + `

EXAMPLES:
   bes failures build.bep
   bes failures 5d2e1f --format json | jq -r '.[] | select(.kind == "test") | .logs[]'
   bes failures build.bep --format markdown >> "$GITHUB_STEP_SUMMARY"`),
		Flags: append(viewFlags(formatTable, formatJSON, formatNDJSON, formatMarkdown), exitZeroFlag(),
			&cli.IntFlag{Name: "log-lines", Value: 20, Usage: "show the last `N` lines of each failure's stderr, stdout and test.log when the file:// URI exists on this machine (0: none)"}),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			if c.Int("log-lines") < 0 {
				return &usageError{msg: "--log-lines: want 0 or more"}
			}
			return runFailures(c.Context, viewOptionsFrom(c), c.Int("log-lines"), c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runFailures(ctx context.Context, opts viewOptions, logLines int, args []string, w, errw io.Writer) error {
	var (
		rows  []failureRow
		names invNames
		invs  []*invocation.Invocation
		res   *outcome
	)
	addRows := func(inv *invocation.Invocation) {
		for _, f := range inv.Failures {
			r := failureFor(inv, f)
			if logLines > 0 {
				r.Tails = tailsOf(r, logLines)
			}
			rows = append(rows, r)
		}
	}
	// Stored invocations: the facts say which have failures, and only
	// their streams are read (the messages, Bazel's console lines and the
	// log files are in the events alone). Markdown needs every
	// invocation's workspace (pathBases): it reads them all.
	fs, fres, ok := loadFacts(ctx, "failures", opts, args, errw)
	if ok && opts.Format != formatMarkdown {
		res = fres
		var failing []string
		ids := make([]string, len(fs))
		for i, f := range fs {
			ids[i] = f.InvocationID
			if f.Failures > 0 {
				failing = append(failing, f.Key)
			}
		}
		byKey := map[string]*invocation.Invocation{}
		if len(failing) > 0 {
			sel := selection{Store: opts.Store, Match: regexp.MustCompile(""), Refs: failing, Read: opts.Read}
			failed, r, err := buildInvocations(ctx, "failures", sel, invocation.Wants{}, errw)
			if err != nil {
				return err
			}
			res.add(r.code)
			for _, inv := range failed {
				byKey[inv.StreamKey] = inv
			}
		}
		for _, f := range fs {
			if inv := byKey[f.Key]; inv != nil {
				addRows(inv)
			}
			res.add(verdictStatus(invocation.Verdict(f.Verdict)))
		}
		names = namesOfIDs(ids)
	} else {
		var err error
		if invs, res, err = loadInvocations(ctx, "failures", opts, args, errw); err != nil {
			return err
		}
		for _, inv := range invs {
			addRows(inv)
			res.add(invocationStatus(inv))
		}
		names = namesOf(invs)
	}
	doc := newViewDoc("failures", opts, invs, "No failures.", "failure")
	doc.after = func(w io.Writer, shown, room int) error {
		return writeFailureWords(w, doc, rows[:shown], names, room)
	}
	if err := renderView(w, doc, rows, failureColumns(names)); err != nil {
		return err
	}
	return opts.exit(res)
}

// writeFailureWords writes, after the table, each failure's own words:
// Bazel's ERROR messages for it and the ends of its local log files. In
// Markdown each is a bold title and a fenced block, its file:// paths
// relative (viewDoc.relative), each ending with a blank line; those that
// do not fit in room bytes (0: no limit) are left out, and a line says so.
func writeFailureWords(w io.Writer, doc *viewDoc, rows []failureRow, names invNames, room int) error {
	format := doc.format
	bw := bufio.NewWriter(w)
	written, left := 0, 0
	for _, r := range rows {
		if len(r.Console) == 0 && len(r.Tails) == 0 {
			continue
		}
		title := strings.TrimSpace(r.Kind + " " + r.Label)
		if r.Reason != "" {
			title += " (" + r.Reason + ")"
		}
		if names.multi {
			title = names.cell(r.InvocationID, r.Stream) + ": " + title
		}
		var lines []string
		for _, c := range r.Console {
			lines = append(lines, strings.Split(c, "\n")...)
		}
		for _, t := range r.Tails {
			uri := t.URI
			if format == formatMarkdown {
				uri = doc.relativeURI(uri)
			}
			head := "--- last lines of " + uri
			if !t.Truncated {
				head = "--- " + uri
			}
			lines = append(lines, head)
			lines = append(lines, t.Lines...)
		}
		if format == formatMarkdown {
			fence := "```"
			for strings.Contains(strings.Join(lines, "\n"), fence) {
				fence += "`"
			}
			block := fmt.Sprintf("**%s**\n\n%s\n%s\n%s\n\n", markdownText(title), fence, strings.Join(lines, "\n"), fence)
			if left > 0 || (room > 0 && written+len(block) > room) {
				left++
				continue
			}
			written += len(block)
			bw.WriteString(block)
			continue
		}
		fmt.Fprintf(bw, "\n%s:\n", safeCell(title))
		for _, l := range lines {
			fmt.Fprintf(bw, "  %s\n", safeCell(l))
		}
	}
	if left > 0 {
		fmt.Fprintf(bw, "… and the console and log lines of %d more %s (`--format json` gives them).\n\n", left, plural(left, "failure"))
	}
	return bw.Flush()
}

// tailsOf reads the last n lines of the local files a failure names
// (file:// URIs that exist here: an action's stderr and stdout, a test's
// test.log), right after the build on the machine that ran it.
func tailsOf(r failureRow, n int) []fileTail {
	var out []fileTail
	for _, uri := range append([]string{r.Stderr, r.Stdout}, r.Logs...) {
		path, ok := localPath(uri)
		if !ok {
			continue
		}
		lines, truncated, err := tailLines(path, n)
		if err != nil {
			continue // not on this machine (or unreadable): the URI is in the row
		}
		out = append(out, fileTail{URI: uri, Lines: lines, Truncated: truncated})
	}
	return out
}

// localPath turns a file:// URI into a path of this machine.
func localPath(uri string) (string, bool) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "file" || u.Path == "" || (u.Host != "" && u.Host != "localhost") {
		return "", false
	}
	return filepath.FromSlash(u.Path), true
}

// tailLines returns the last n lines of the file at path, reading at most
// its last 1 MiB; invalid UTF-8 becomes U+FFFD and a trailing carriage
// return is dropped.
func tailLines(path string, n int) (lines []string, truncated bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, false, fmt.Errorf("%s: not a regular file", path)
	}
	const window = 1 << 20
	off := max(0, fi.Size()-window)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return nil, false, err
	}
	text := strings.TrimRight(strings.ToValidUTF8(string(buf), "\uFFFD"), "\n")
	if text == "" {
		return []string{}, false, nil
	}
	all := strings.Split(text, "\n")
	if off > 0 {
		all = all[1:] // the first line may be cut
		truncated = true
	}
	if len(all) > n {
		all, truncated = all[len(all)-n:], true
	}
	for i, l := range all {
		all[i] = plainText(strings.TrimSuffix(l, "\r"))
	}
	return all, truncated, nil
}

// plainText is a log line as text: terminal escapes removed, what a
// terminal would show after a carriage return, other control characters
// (but tabs) dropped, so that a table, a step summary or a code block
// shows the words.
func plainText(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return -1
	}, invocation.StripTerminal(s))
}

func failureFor(inv *invocation.Invocation, f *invocation.Failure) failureRow {
	return failureRow{
		Stream:        inv.StreamKey,
		InvocationID:  inv.InvocationID,
		Kind:          string(f.Kind),
		Event:         f.Event,
		Label:         f.Label,
		Configuration: f.Configuration,
		Reason:        f.Reason,
		Message:       f.Message,
		ActionType:    f.ActionType,
		ExitCode:      f.ExitCode,
		Stdout:        f.Stdout,
		Stderr:        f.Stderr,
		Logs:          f.Logs,
		RootCauses:    f.RootCauses,
		Console:       f.Console,
	}
}
