package commands

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/bepfile/invocation"
	"github.com/bes-cli/bes/commands/render/htmlreport"
)

// reportOptions are the flags of `bes report`.
type reportOptions struct {
	viewOptions
	Output   string // -o FILE; "" for standard output
	LogLines int    // --log-lines: the last lines of each failure's local logs
	// TestLogBytes (--test-log-bytes) bounds the end of each test
	// attempt's local test.log the page shows; 0 reads none (bes serve's
	// pages: a stream's URIs are its sender's, and must not make the
	// server read its own files).
	TestLogBytes int
}

// reportData is the JSON a page inlines for its script
// (commands/render/htmlreport/page.js): the rows of the views, so that the
// page shows what `bes summary`, `tests --format json`, `failures`,
// `actions` and `artifacts` give, in the same words.
type reportData struct {
	Summary   summaryRow    `json:"summary"`
	Failures  []failureRow  `json:"failures"`
	Tests     pageTests     `json:"tests"`
	Actions   []actionRow   `json:"actions"`
	Artifacts pageArtifacts `json:"artifacts"`
	// URIPrefix begins the tests' log and the output files' URIs written
	// "~" and the rest (see pageTests), "" when none is.
	URIPrefix string `json:"uri_prefix,omitempty"`
	// ArtifactsLeft counts the output files past maxReportArtifacts, left
	// out of the page (bes artifacts lists them).
	ArtifactsLeft int `json:"artifacts_left,omitempty"`
	// CommandLines are Bazel's StructuredCommandLine events ("original",
	// "canonical", "tool"), each as one line of shell words.
	CommandLines []reportCommandLine `json:"command_lines"`
	// Options is Bazel's OptionsParsed event.
	Options *reportOptionsParsed `json:"options,omitempty"`
	// SlowestTargets are the targets whose actions took longest, summed
	// over every action the BEP times.
	SlowestTargets []targetTime `json:"slowest_targets"`
	// CriticalPath holds the steps of Bazel's "critical path" log
	// (BuildToolLogs), in its order.
	CriticalPath []criticalStep `json:"critical_path"`

	// testLogs are the ends of the test logs read (see readTestLogs).
	testLogs []htmlreport.TestLog
}

type reportCommandLine struct {
	Label string `json:"label"`
	Text  string `json:"text"`
}

// reportOptionsParsed is build_event_stream.OptionsParsed.
type reportOptionsParsed struct {
	StartupOptions         []string `json:"startup_options,omitempty"`
	ExplicitStartupOptions []string `json:"explicit_startup_options,omitempty"`
	CmdLine                []string `json:"cmd_line,omitempty"`
	ExplicitCmdLine        []string `json:"explicit_cmd_line,omitempty"`
	ToolTag                string   `json:"tool_tag,omitempty"`
}

// targetTime is the time of the timed actions of one target.
type targetTime struct {
	Label   string  `json:"label"`
	Seconds float64 `json:"seconds"`
	Actions int     `json:"actions"`
}

// slowestTargets sums the durations of the timed actions by their owner
// (Action.Label) and returns the n longest, longest first.
func slowestTargets(actions []*invocation.Action, n int) []targetTime {
	byLabel := map[string]*targetTime{}
	var all []*targetTime
	for _, a := range actions {
		d := a.Duration()
		if d <= 0 || a.Label == "" {
			continue
		}
		t := byLabel[a.Label]
		if t == nil {
			t = &targetTime{Label: a.Label}
			byLabel[a.Label] = t
			all = append(all, t)
		}
		t.Seconds += d.Seconds()
		t.Actions++
	}
	slices.SortStableFunc(all, func(x, y *targetTime) int {
		return cmp.Or(cmp.Compare(y.Seconds, x.Seconds), cmp.Compare(x.Label, y.Label))
	})
	out := make([]targetTime, 0, min(n, len(all)))
	for _, t := range all[:min(n, len(all))] {
		out = append(out, *t)
	}
	return out
}

// criticalStep is one line of the critical path log: "  4.51s action
// 'Testing //tests:timeout'".
type criticalStep struct {
	Seconds float64 `json:"seconds"`
	What    string  `json:"what"`
}

// maxReportActions bounds the timed actions a page draws.
const maxReportActions = 20000

// maxReportTestLogs bounds the bytes of test.log ends a page holds, all
// logs together (--test-log-bytes bounds each).
const maxReportTestLogs = 4 << 20

// maxReportArtifacts bounds the output files a page lists, so that the
// page of a build of a hundred thousand targets still opens quickly.
const maxReportArtifacts = 20000

func newReportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "write one self-contained HTML page of an invocation: verdict, failures, tests, timing, console, artifacts",
		ArgsUsage: "[STREAM|FILE...]",
		Description: commandHelp(`Writes the page of one invocation as one HTML file (to standard output, or
to FILE with -o), for a CI job to keep as an artifact and anyone to open in
a browser, offline: its scripts, styles and data are inside it, and it
makes no request to any other host (its Content-Security-Policy forbids
them).

The page shows, in this order: a header coloured by the verdict (the
command and patterns, Bazel's result and exit code, start, duration, user,
host and commit when the stream gives them); the failures in Bazel's own
words (what bes failures gives: the ERROR messages, the failed action's
output, the last --log-lines lines of the local logs, root causes); the
tests as a table to sort and filter, failing and flaky first, each with its
runs, shards and attempts; the end of each attempt's test.log (the last
--test-log-bytes of it, 4 MiB in all, failing and flaky tests first) when
its file:// URI names a file of this machine, a failing attempt's unfolded;
timing charts (a timeline of the test attempts
and of the actions the BEP times, the critical path, the slowest tests and
targets), drawn with Chart.js; the console with its colours, searchable;
the output files by target and output group; the command line and options;
the build's metrics. The header, the failures and the console read with
JavaScript off.

The arguments must select one invocation (one stream with Bazel events);
` + "`bes streams`" + ` lists them.

` + viewSelectionHelp + `

` + gateHelp + `

EXAMPLES:
   bes report build.bep -o report.html
   bes report build.bep -o report.html --exit-zero    # a CI step that uploads it next
   bes report 657fb236 > report.html`),
		Flags: append([]cli.Flag{
			storeFlag(),
			&cli.StringFlag{Name: "match", Aliases: []string{"m"}, Usage: "keep the streams whose key matches `REGEX` (unanchored); without STREAM or FILE, every stored stream that matches"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the page to `FILE` (replaced whole once written) instead of standard output"},
			&cli.IntFlag{Name: "log-lines", Value: 20, Usage: "show the last `N` lines of each failure's stderr, stdout and test.log when the file:// URI exists on this machine (0: none)"},
			&cli.IntFlag{Name: "test-log-bytes", Value: 64 << 10, Usage: "show the last `N` bytes of each test attempt's test.log when its file:// URI exists on this machine, failing and flaky tests first, 4 MiB at most in all (0: none)"},
			exitZeroFlag(),
		}, inputFlags()...),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			if c.Int("log-lines") < 0 {
				return &usageError{msg: "--log-lines: want 0 or more"}
			}
			if c.Int("test-log-bytes") < 0 {
				return &usageError{msg: "--test-log-bytes: want 0 or more"}
			}
			opts := reportOptions{viewOptions: viewOptionsFrom(c), Output: c.String("output"), LogLines: c.Int("log-lines"), TestLogBytes: c.Int("test-log-bytes")}
			return runReport(c.Context, opts, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runReport(ctx context.Context, opts reportOptions, args []string, w, errw io.Writer) error {
	// A page is built once, from a model that only grows: collecting
	// garbage four times less often takes a third less CPU on a 200 MB
	// BEP for 5% more peak memory (BENCHMARKS.md).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	invs, res, err := loadInvocations(ctx, "report", opts.viewOptions, args, errw)
	if err != nil {
		return err
	}
	switch len(invs) {
	case 0:
		return res.err() // loadInvocations said why
	case 1:
	default:
		names := namesOf(invs)
		var list []string
		for _, inv := range invs {
			list = append(list, names.cell(inv.InvocationID, inv.StreamKey)+" ("+inv.StreamKey+")")
		}
		return &usageError{msg: fmt.Sprintf("report: %d invocations selected, a page shows one: name one of %s", len(invs), strings.Join(list, ", "))}
	}
	inv := invs[0]
	res.add(invocationStatus(inv))
	// The console is read (again) beside the rest: each pass reads the
	// input on its own.
	var (
		console    []byte
		consoleErr error
		wg         sync.WaitGroup
	)
	wg.Go(func() { console, consoleErr = reportConsole(ctx, opts, inv, args) })
	data, err := reportDataFor(ctx, opts, inv, args)
	wg.Wait()
	if err != nil {
		return err
	}
	if consoleErr != nil {
		return consoleErr
	}
	page := reportPage(inv, data)
	page.Console = console
	if err := writeReport(w, opts.Output, page); err != nil {
		return err
	}
	return opts.exit(res)
}

// writeReport writes the page to w, or to the file path through a
// temporary file renamed over it, so that a reader never sees half a page.
func writeReport(w io.Writer, path string, page htmlreport.Page) error {
	if path == "" || path == "-" {
		bw := bufio.NewWriterSize(w, 1<<16)
		if err := htmlreport.Write(bw, page); err != nil {
			return err
		}
		return bw.Flush()
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".bes-report-*.html")
	if err != nil {
		return reportOutputError(path, err)
	}
	defer os.Remove(f.Name()) // gone once renamed
	bw := bufio.NewWriterSize(f, 1<<16)
	err = htmlreport.Write(bw, page)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return reportOutputError(path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return reportOutputError(path, err)
	}
	return nil
}

// reportDataFor gathers the rows of the views for one invocation, and the
// command lines and options from its events (bes query's reading).
func reportDataFor(ctx context.Context, opts reportOptions, inv *invocation.Invocation, args []string) (*reportData, error) {
	d := &reportData{
		Summary:      summaryFor(inv),
		Failures:     []failureRow{},
		Tests:        make(pageTests, 0, len(inv.Tests)),
		Actions:      make([]actionRow, 0, len(inv.Actions)),
		Artifacts:    pageArtifacts{},
		CommandLines: []reportCommandLine{},
		CriticalPath: criticalPathSteps(inv.Metrics.CriticalPathLog),
	}
	for _, f := range inv.Failures {
		r := failureFor(inv, f)
		if opts.LogLines > 0 {
			r.Tails = tailsOf(r, opts.LogLines)
		}
		r.Stream, r.InvocationID = "", ""
		d.Failures = append(d.Failures, r)
	}
	for _, t := range inv.Tests {
		r := testFor(inv, t)
		// What the page does not show: the stream (the header's), the
		// configuration's hash (its name stays), the last attempts' logs
		// (each run has its own) and test.xml.
		r.Stream, r.InvocationID, r.Configuration, r.Logs = "", "", "", []string{}
		for i := range r.Runs {
			r.Runs[i].XML = ""
		}
		d.Tests = append(d.Tests, r)
	}
	// The actions the page draws: the failed ones and those the BEP times
	// (ActionExecuted.start_time and end_time, Bazel 5 and later), the
	// longest maxReportActions of them; bes actions lists every one.
	// inv.Actions is slowest first.
	for _, a := range inv.Actions {
		if !a.Success || (a.Duration() > 0 && len(d.Actions) < maxReportActions) {
			r := actionFor(inv, a)
			r.Stream, r.InvocationID = "", ""
			d.Actions = append(d.Actions, r)
		}
	}
	d.SlowestTargets = slowestTargets(inv.Actions, 25)
	d.ArtifactsLeft = inv.ArtifactsLeft
	for i, a := range inv.Artifacts {
		if i == maxReportArtifacts {
			d.ArtifactsLeft += len(inv.Artifacts) - i
			break
		}
		r := artifactFor(inv, a)
		r.Stream, r.InvocationID = "", ""
		d.Artifacts = append(d.Artifacts, r)
	}
	d.readTestLogs(opts.TestLogBytes)
	d.shortenURIs()
	if err := readCommandLines(ctx, opts, inv, args, d); err != nil {
		return nil, err
	}
	return d, nil
}

// readTestLogs reads the end of each test attempt's test.log whose
// file:// URI names a readable file of this machine (CI runs bes report
// right after Bazel): at most n bytes of each, from the start of a line,
// maxReportTestLogs in all, the failing tests' attempts first, then the
// flaky ones', then the others'. Each run read gets its LogTail; a log
// that cannot be read is left as its URI.
func (d *reportData) readTestLogs(n int) {
	if n <= 0 {
		return
	}
	rank := func(t *testRow) int {
		switch {
		case t.DidNotReport:
			return 0
		case t.Status == invocation.StatusFailedToBuild || t.Status == invocation.StatusToolHalted:
			return 1
		case invocation.FailingStatus(t.Status):
			return 0
		case t.Status == invocation.StatusFlaky:
			return 2
		}
		return 3
	}
	order := make([]int, 0, len(d.Tests))
	for i := range d.Tests {
		order = append(order, i)
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(rank(&d.Tests[x]), rank(&d.Tests[y])) })
	total := 0
	for _, i := range order {
		t := &d.Tests[i]
		for j := range t.Runs {
			r := &t.Runs[j]
			if total >= maxReportTestLogs {
				return
			}
			path, ok := localPath(r.Log)
			if !ok {
				continue
			}
			text, cut, err := tailBytes(path, min(n, maxReportTestLogs-total))
			if err != nil {
				continue // not on this machine, or unreadable: the URI stays
			}
			total += len(text)
			title := t.Label
			if t.RunCount > 1 {
				title += fmt.Sprintf(" run %d", r.Run)
			}
			if t.Shards > 1 {
				title += fmt.Sprintf(" shard %d", r.Shard)
			}
			title += fmt.Sprintf(" attempt %d", r.Attempt)
			r.LogTail = len(d.testLogs) + 1
			d.testLogs = append(d.testLogs, htmlreport.TestLog{
				ID: r.LogTail, Title: title, Status: r.Status, URI: r.Log,
				Open: rank(t) <= 1 && invocation.FailingStatus(r.Status),
				Text: text, Cut: cut,
			})
		}
	}
}

// tailBytes returns the end of the regular file at path: its last n bytes
// at most, from the start of a line when it is longer (unless that line
// is longer than n), invalid UTF-8 as U+FFFD; and how many bytes before
// them were left out.
func tailBytes(path string, n int) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s: not a regular file", path)
	}
	off := max(0, fi.Size()-int64(n))
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return nil, 0, err
	}
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 && i < len(buf)-1 {
			off += int64(i + 1)
			buf = buf[i+1:]
		}
	}
	return bytes.ToValidUTF8(buf, []byte("\uFFFD")), off, nil
}

// shortenURIs writes the tests' logs and the output files' URIs without
// the prefix they share (d.URIPrefix), the bulk of their bytes.
func (d *reportData) shortenURIs() {
	d.URIPrefix = commonURIPrefix(func(yield func(string) bool) {
		for _, t := range d.Tests {
			for _, r := range t.Runs {
				if !yield(r.Log) {
					return
				}
			}
		}
		for _, a := range d.Artifacts {
			if !yield(a.URI) {
				return
			}
		}
	})
	if d.URIPrefix == "" {
		return
	}
	for i := range d.Tests {
		for j := range d.Tests[i].Runs {
			r := &d.Tests[i].Runs[j]
			r.Log = shortURI(r.Log, d.URIPrefix)
		}
	}
	for i := range d.Artifacts {
		d.Artifacts[i].URI = shortURI(d.Artifacts[i].URI, d.URIPrefix)
	}
}

// exactKey is a --match expression that keeps the stream key alone.
func exactKey(key string) string { return "^" + regexp.QuoteMeta(key) + "$" }

// readCommandLines fills d's command lines and options from the
// invocation's StructuredCommandLine and OptionsParsed events, as `bes
// query --format ndjson` prints them (Bazel's JSON names). What reading
// says on standard error was said when the model was built.
func readCommandLines(ctx context.Context, opts reportOptions, inv *invocation.Invocation, args []string, d *reportData) error {
	var out bytes.Buffer
	q := queryOptions{Store: opts.Store, Format: formatNDJSON, Match: exactKey(inv.StreamKey), MatchSet: true, Read: opts.Read,
		Kinds: []string{"structuredCommandLine", "optionsParsed"}}
	err := runQuery(ctx, q, args, &out, io.Discard)
	if err != nil && ExitCode(err) != ExitNoData && ExitCode(err) != ExitDamaged && ExitCode(err) != ExitPartial {
		return err
	}
	for line := range bytes.SplitSeq(out.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var ev struct {
			Event struct {
				BazelEvent struct {
					StructuredCommandLine *struct {
						CommandLineLabel string `json:"commandLineLabel"`
						Sections         []struct {
							ChunkList *struct {
								Chunk []string `json:"chunk"`
							} `json:"chunkList"`
							OptionList *struct {
								Option []struct {
									CombinedForm string `json:"combinedForm"`
								} `json:"option"`
							} `json:"optionList"`
						} `json:"sections"`
					} `json:"structuredCommandLine"`
					OptionsParsed *struct {
						StartupOptions         []string `json:"startupOptions"`
						ExplicitStartupOptions []string `json:"explicitStartupOptions"`
						CmdLine                []string `json:"cmdLine"`
						ExplicitCmdLine        []string `json:"explicitCmdLine"`
						ToolTag                string   `json:"toolTag"`
					} `json:"optionsParsed"`
				} `json:"bazelEvent"`
			} `json:"event"`
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			continue // an error object of a damaged event: said already
		}
		if cl := ev.Event.BazelEvent.StructuredCommandLine; cl != nil {
			var words []string
			for _, s := range cl.Sections {
				if s.ChunkList != nil {
					words = append(words, s.ChunkList.Chunk...)
				}
				if s.OptionList != nil {
					for _, o := range s.OptionList.Option {
						words = append(words, o.CombinedForm)
					}
				}
			}
			if len(words) == 0 {
				continue // Bazel's "tool" command line, often empty
			}
			quoted := make([]string, len(words))
			for i, w := range words {
				quoted[i] = shellQuote(w)
			}
			d.CommandLines = append(d.CommandLines, reportCommandLine{Label: cl.CommandLineLabel, Text: strings.Join(quoted, " ")})
		}
		if o := ev.Event.BazelEvent.OptionsParsed; o != nil && d.Options == nil {
			d.Options = &reportOptionsParsed{
				StartupOptions: o.StartupOptions, ExplicitStartupOptions: o.ExplicitStartupOptions,
				CmdLine: o.CmdLine, ExplicitCmdLine: o.ExplicitCmdLine, ToolTag: o.ToolTag,
			}
		}
	}
	return nil
}

// shellQuote quotes a word for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+/:.,@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// reportConsole is the invocation's console output as `bes log --color
// always` prints it: the Progress events' stderr and stdout, escapes kept.
func reportConsole(ctx context.Context, opts reportOptions, inv *invocation.Invocation, args []string) ([]byte, error) {
	var out bytes.Buffer
	lo := logOptions{Store: opts.Store, Match: exactKey(inv.StreamKey), Color: colorAlways, Read: opts.Read}
	err := runLog(ctx, lo, args, &out, io.Discard)
	if err != nil && ExitCode(err) != ExitNoData && ExitCode(err) != ExitDamaged && ExitCode(err) != ExitPartial {
		return nil, err
	}
	return out.Bytes(), nil
}

var criticalStepLine = regexp.MustCompile(`^\s+([0-9]+(?:\.[0-9]+)?)s\s+(.+)$`)

// criticalPathSteps parses the steps of Bazel's critical path log
// ("Critical Path: 4.51s, …" then one "  4.51s action 'Testing
// //tests:timeout'" line per step); none when the log has no step.
func criticalPathSteps(log string) []criticalStep {
	steps := []criticalStep{}
	for line := range strings.SplitSeq(log, "\n") {
		m := criticalStepLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			continue
		}
		steps = append(steps, criticalStep{Seconds: s, What: m[2]})
	}
	return steps
}

// verdictWords says a verdict in words, with the exit status bes gives it.
func verdictWords(inv *invocation.Invocation) string {
	words := map[invocation.Verdict]string{
		invocation.VerdictPassed:       "passed",
		invocation.VerdictBuildFailed:  "build failed",
		invocation.VerdictTestsFailed:  "tests failed",
		invocation.VerdictDidNotFinish: "did not finish",
	}[inv.Verdict()]
	if words == "" {
		words = string(inv.Verdict())
	}
	return fmt.Sprintf("%s (exit %d)", words, invocationStatus(inv))
}

// reportPage is the page's header and failures, in the words of `bes
// summary` and `bes failures`.
func reportPage(inv *invocation.Invocation, d *reportData) htmlreport.Page {
	row := d.Summary
	names := namesOf([]*invocation.Invocation{inv})
	cell := func(name string) string {
		for _, c := range summaryColumns(names) {
			if c.header == name {
				return c.cell(row)
			}
		}
		return ""
	}
	title := strings.TrimSpace("bazel " + cell("COMMAND"))
	if inv.Command == "" {
		title = "bazel (command unknown)"
	}
	p := htmlreport.Page{
		Title:       title,
		Verdict:     string(inv.Verdict()),
		VerdictText: verdictWords(inv),
		Data:        d,
		TestLogs:    d.testLogs,
		Fields: []htmlreport.Field{
			{Name: "result", Value: cell("RESULT")},
			{Name: "invocation", Value: names.cell(inv.InvocationID, inv.StreamKey)},
			{Name: "started", Value: cell("START")},
			{Name: "duration", Value: cell("DURATION")},
			{Name: "user", Value: inv.User},
			{Name: "host", Value: inv.Host},
			{Name: "commit", Value: inv.Commit},
			{Name: "branch", Value: inv.Branch},
			{Name: "targets", Value: cell("TARGETS")},
			{Name: "tests", Value: cell("TESTS")},
			{Name: "configurations", Value: strings.Join(row.Configurations, ", ")},
		},
	}
	for _, r := range d.Failures {
		f := htmlreport.Failure{Title: strings.TrimSpace(r.Kind + " " + r.Label)}
		if r.Reason != "" {
			f.Title += " (" + r.Reason + ")"
		}
		msg := []string{r.message()}
		if len(r.RootCauses) > 0 && r.Message != "" && (len(r.RootCauses) > 1 || r.RootCauses[0] != r.Label) {
			msg = append(msg, "root causes: "+strings.Join(r.RootCauses, " "))
		}
		if out := r.output(); out != "" {
			msg = append(msg, "output: "+out)
		}
		f.Message = strings.TrimSpace(strings.Join(msg, "\n"))
		if whole := strings.TrimSpace(r.Message); len(r.Console) == 0 && whole != cellText(whole) {
			// The message is longer than its first line, and Bazel's
			// console does not hold it: whole.
			f.Blocks = append(f.Blocks, htmlreport.Block{Heading: "message", Text: whole})
		}
		for _, c := range r.Console {
			lines := strings.Split(c, "\n")
			for i, l := range lines {
				lines[i] = plainText(l)
			}
			f.Blocks = append(f.Blocks, htmlreport.Block{Heading: "Bazel's console", Text: strings.Join(lines, "\n")})
		}
		for _, t := range r.Tails {
			head := "last lines of " + t.URI
			if !t.Truncated {
				head = t.URI
			}
			f.Blocks = append(f.Blocks, htmlreport.Block{Heading: head, Text: strings.Join(t.Lines, "\n")})
		}
		p.Failures = append(p.Failures, f)
	}
	return p
}
