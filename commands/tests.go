package commands

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/invocation"
	"github.com/bes-cli/bes/store"
)

// formatJUnit is `bes tests --format junit`: one JUnit XML document.
const formatJUnit = "junit"

type testsOptions struct {
	viewOptions
	Runs     bool
	Statuses []string // TestStatus names, upper case; none = all
	LogLines int      // test.log lines a JUnit failure quotes (--log-lines)
}

// testRow is one test target as `bes tests` prints it.
type testRow struct {
	Stream        string `json:"stream"`
	InvocationID  string `json:"invocation_id"`
	Label         string `json:"label"`
	Configuration string `json:"configuration,omitempty"`
	// ConfigName is the configuration's mnemonic ("k8-fastbuild") when the
	// stream names it.
	ConfigName string `json:"configuration_name,omitempty"`
	// Kind is the rule's kind (TargetConfigured.target_kind, "sh_test
	// rule") and Size its test size (SMALL, MEDIUM, LARGE, ENORMOUS).
	Kind string `json:"kind,omitempty"`
	Size string `json:"size,omitempty"`
	// DidNotReport is set for a test of an invocation that did not finish
	// that never reported (invocation.Test.DidNotReport).
	DidNotReport bool       `json:"did_not_report,omitempty"`
	Status       string     `json:"status"`
	Aborted      *abortRow  `json:"aborted,omitempty"`
	TotalRuns    int        `json:"total_runs"` // runs × shards × attempts
	RunCount     int        `json:"run_count"`
	Shards       int        `json:"shards"`
	Attempts     int        `json:"attempts"`
	Cached       int        `json:"cached"`
	Duration     float64    `json:"duration_seconds"`
	Start        *time.Time `json:"start,omitempty"`
	Logs         []string   `json:"logs"`
	Runs         []runRow   `json:"runs"`
}

type abortRow struct {
	Reason      string `json:"reason"`
	Description string `json:"description,omitempty"`
}

// runRow is one attempt of one shard of one run: a row of `bes tests
// --runs`, and an element of a testRow's runs.
type runRow struct {
	Stream         string     `json:"stream,omitempty"`
	InvocationID   string     `json:"invocation_id,omitempty"`
	Label          string     `json:"label,omitempty"`
	Run            int        `json:"run"`
	Shard          int        `json:"shard"`
	Attempt        int        `json:"attempt"`
	Status         string     `json:"status"`
	StatusDetails  string     `json:"status_details,omitempty"`
	CachedLocally  bool       `json:"cached_locally"`
	CachedRemotely bool       `json:"cached_remotely"`
	Duration       float64    `json:"duration_seconds"`
	Start          *time.Time `json:"start,omitempty"`
	Strategy       string     `json:"strategy,omitempty"`
	Hostname       string     `json:"hostname,omitempty"`
	Log            string     `json:"log,omitempty"`
	XML            string     `json:"xml,omitempty"`
	// LogTail is bes report's: the page's element holding the end of Log
	// (htmlreport.TestLog.ID), 0 when the page has none.
	LogTail int `json:"log_tail,omitempty"`
}

func (r testRow) status() string {
	switch {
	case r.DidNotReport:
		return r.Status + " (did not report)"
	case r.Aborted != nil:
		return r.Status + " (aborted: " + r.Aborted.Reason + ")"
	}
	return r.Status
}

func testColumns(n invNames) []column[testRow] {
	return withInvocation(n, func(r testRow) (string, string) { return r.InvocationID, r.Stream }, []column[testRow]{
		{"LABEL", func(r testRow) string { return r.Label }},
		{"STATUS", testRow.status},
		{"KIND", func(r testRow) string {
			return strings.TrimSpace(strings.TrimSuffix(r.Kind, " rule") + " " + strings.ToLower(r.Size))
		}},
		{"RUNS", func(r testRow) string { return fmt.Sprint(r.TotalRuns) }},
		{"ATTEMPTS", func(r testRow) string { return fmt.Sprint(r.Attempts) }},
		{"SHARDS", func(r testRow) string { return fmt.Sprint(r.Shards) }},
		{"CACHED", func(r testRow) string { return fmt.Sprint(r.Cached) }},
		{"DURATION", func(r testRow) string { return formatSeconds(r.Duration) }},
		{"LOG", func(r testRow) string { return strings.Join(r.Logs, " ") }},
	})
}

func runColumns(n invNames) []column[runRow] {
	return withInvocation(n, func(r runRow) (string, string) { return r.InvocationID, r.Stream }, []column[runRow]{
		{"LABEL", func(r runRow) string { return r.Label }},
		{"RUN", func(r runRow) string { return fmt.Sprint(r.Run) }},
		{"SHARD", func(r runRow) string { return fmt.Sprint(r.Shard) }},
		{"ATTEMPT", func(r runRow) string { return fmt.Sprint(r.Attempt) }},
		{"STATUS", func(r runRow) string { return r.Status }},
		{"CACHED", func(r runRow) string {
			switch {
			case r.CachedLocally:
				return "local"
			case r.CachedRemotely:
				return "remote"
			}
			return ""
		}},
		{"DURATION", func(r runRow) string { return formatSeconds(r.Duration) }},
		{"LOG", func(r runRow) string { return r.Log }},
	})
}

func newTestsCommand() *cli.Command {
	return &cli.Command{
		Name:      "tests",
		Usage:     "test targets: status, runs, attempts, shards, cached, duration, logs",
		ArgsUsage: "[STREAM...] [FILE...]",
		Description: commandHelp(`Lists the test targets of each invocation: the overall status Bazel gave
(PASSED, FLAKY, FAILED, TIMEOUT, NO_STATUS…; a test whose events were
aborted, e.g. by an interruption, says so), the total number of runs
(runs × shards × attempts, Bazel's total_run_count), the attempts and
shards, how many results came from a cache, the time spent (the sum of
all attempts), and the test.log URI of the last attempt of each shard
(when no result names one, the URIs the test's summary lists).
--runs prints each run, shard and attempt instead, with its own status,
cache (local or remote), duration and log. --status keeps the tests whose
status is one of the TestStatus names given (case-insensitive, repeatable
or comma-separated): NO_STATUS, PASSED, FLAKY, TIMEOUT, FAILED,
INCOMPLETE, REMOTE_FAILURE, FAILED_TO_BUILD, TOOL_HALTED_BEFORE_TESTING;
with --runs, the runs whose own status or whose test's status is one of
them (--runs --status flaky shows every attempt of the flaky tests);
with --format junit, the suites of the tests kept.

` + viewSelectionHelp + `

Formats: table, json and ndjson (each test with all its runs), markdown (a
GitHub-flavoured Markdown document: MARKDOWN below), and junit: one JUnit XML document (valid
against Jenkins' junit-10.xsd, each suite against Maven Surefire's
surefire-test-report-3.0.xsd), a <testsuite> per test target named by its
label, holding one <testcase> named by the label: a test target counts
once, as Bazel counts it ("Executed 9 out of 9 tests"), whatever its
attempts, runs and shards, so the name CI history keys on stays the same.
Shards are properties (bazel.shard, "shard 2 of 3: PASSED in 133ms") and
lines of the testcase's <system-out>. FAILED and TIMEOUT get a <failure>
("FAILED in 2 out of 2 attempts", "timed out after 2.086s") holding each
failed attempt with its test.log URI and, when the file exists here, its
last --log-lines lines; a flaky test passes, with a Surefire <flakyFailure>
per failed attempt; a test that did not report (the invocation did not
finish), failed to build or was stopped while it ran gets an <error>
(INCOMPLETE, REMOTE_FAILURE and unknown statuses too); one that did not run
is <skipped>. When a test wrote its own JUnit (test.xml) and the file
exists here, its testcases are the target's (classname the label), and the
label's own testcase stays only for what they do not show (a timeout, a
crash, failed attempts of a flaky test no case matches). Properties:
bazel.status, bazel.invocation_id, bazel.configuration, bazel.cached (true,
false, partial), bazel.start (a cached result keeps the time of the run it
came from, and its <system-out> line says so), bazel.shard, bazel.aborted,
bazel.did_not_report. --exit-zero exits 0 once the document is written, so
that the step writing the report does not stop the job before it is
uploaded: gate with another bes command (or the same without it).

` + markdownHelp + `

` + gateHelp + `

EXAMPLES:
   bes tests bazel-out/test.bep
   bes tests test.bep --status failed,timeout --format json | jq -r '.[].logs[]'
   bes tests test.bep --runs --status flaky
   bes tests test.bep --format junit > junit.xml`),
		Flags: append(viewFlags(formatTable, formatJSON, formatNDJSON, formatMarkdown, formatJUnit),
			&cli.BoolFlag{Name: "runs", Usage: "print each run, shard and attempt"},
			&cli.StringSliceFlag{Name: "status", Aliases: []string{"s"}, Usage: "keep the tests (with --runs, the runs) whose status is `S`: a TestStatus name, case-insensitive; repeatable, comma-separated"},
			exitZeroFlag(),
			&cli.IntFlag{Name: "log-lines", Value: junitLogLines, Usage: "junit: quote the last `N` lines of each failed attempt's test.log when the file:// URI exists on this machine (0: none)"},
		),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			opts := testsOptions{viewOptions: viewOptionsFrom(c), Runs: c.Bool("runs"), LogLines: c.Int("log-lines")}
			for _, s := range c.StringSlice("status") {
				for _, name := range strings.Split(s, ",") {
					name = strings.ToUpper(strings.TrimSpace(name))
					if name == "" {
						continue
					}
					if _, ok := bes.TestStatus_value[name]; !ok {
						return &usageError{msg: fmt.Sprintf("--status: unknown test status %q (one of %s)", name, strings.Join(testStatusNames(), ", "))}
					}
					opts.Statuses = append(opts.Statuses, name)
				}
			}
			return runTests(c.Context, opts, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

// testStatusNames lists the TestStatus names in enum order.
func testStatusNames() []string {
	names := make([]string, 0, len(bes.TestStatus_name))
	for i := range int32(len(bes.TestStatus_name)) {
		if n, ok := bes.TestStatus_name[i]; ok {
			names = append(names, n)
		}
	}
	return names
}

func runTests(ctx context.Context, opts testsOptions, args []string, w, errw io.Writer) error {
	// The table of stored invocations: from their facts, when they hold
	// it all (loadFacts).
	if opts.Format == formatTable && !opts.Runs {
		if fs, res, ok := loadFacts(ctx, "tests", opts.viewOptions, args, errw); ok {
			return writeTestsFromFacts(opts, fs, res, w, errw)
		}
	}
	invs, res, err := loadInvocations(ctx, "tests", opts.viewOptions, args, errw)
	if err != nil {
		return err
	}
	keep := func(status string) bool {
		return len(opts.Statuses) == 0 || slices.Contains(opts.Statuses, status)
	}
	var (
		rows    []testRow
		runs    []runRow
		anyTest bool
	)
	for _, inv := range invs {
		res.add(invocationStatus(inv))
		for _, t := range inv.Tests {
			anyTest = true
			if opts.Runs {
				for _, r := range t.Runs {
					if keep(r.Status) || keep(t.Status) {
						runs = append(runs, runFor(inv, t, r))
					}
				}
				continue
			}
			if keep(t.Status) {
				rows = append(rows, testFor(inv, t))
			}
		}
	}
	if len(invs) > 0 && !anyTest {
		fmt.Fprintln(errw, "bes: tests: no test in the streams given")
		res.add(ExitNoData)
	}
	names := namesOf(invs)
	switch {
	case opts.Format == formatJUnit:
		warn := func(line string) { fmt.Fprintf(errw, "bes: tests: %s\n", line) }
		if err := writeJUnit(w, invs, keep, junitOptions{LogLines: opts.LogLines, Warn: warn}); err != nil {
			return err
		}
	case opts.Runs:
		if err := renderView(w, newViewDoc("tests", opts.viewOptions, invs, noTests(opts.Statuses), "run"), runs, runColumns(names)); err != nil {
			return err
		}
	default:
		if err := renderView(w, newViewDoc("tests", opts.viewOptions, invs, noTests(opts.Statuses), "test"), rows, testColumns(names)); err != nil {
			return err
		}
	}
	return opts.exit(res)
}

func testFor(inv *invocation.Invocation, t *invocation.Test) testRow {
	row := testRow{
		Stream:        inv.StreamKey,
		InvocationID:  inv.InvocationID,
		Label:         t.Label,
		Configuration: t.Configuration,
		ConfigName:    configurationName(inv, t.Configuration),
		Kind:          t.Kind,
		Size:          t.Size,
		DidNotReport:  t.DidNotReport,
		Status:        t.Status,
		TotalRuns:     t.TotalRuns,
		RunCount:      t.RunCount,
		Shards:        t.Shards,
		Attempts:      t.Attempts,
		Cached:        t.Cached,
		Duration:      seconds(t.Duration),
		Start:         timePtr(t.Start),
		Logs:          orEmpty(t.Logs),
		Runs:          make([]runRow, 0, len(t.Runs)),
	}
	if t.Aborted != nil {
		row.Aborted = &abortRow{Reason: t.Aborted.Reason, Description: t.Aborted.Description}
	}
	for _, r := range t.Runs {
		rr := runFor(inv, t, r)
		rr.Stream, rr.InvocationID, rr.Label = "", "", ""
		row.Runs = append(row.Runs, rr)
	}
	return row
}

func runFor(inv *invocation.Invocation, t *invocation.Test, r *invocation.TestRun) runRow {
	return runRow{
		Stream:         inv.StreamKey,
		InvocationID:   inv.InvocationID,
		Label:          t.Label,
		Run:            r.Run,
		Shard:          r.Shard,
		Attempt:        r.Attempt,
		Status:         r.Status,
		StatusDetails:  r.StatusDetails,
		CachedLocally:  r.CachedLocally,
		CachedRemotely: r.CachedRemotely,
		Duration:       seconds(r.Duration),
		Start:          timePtr(r.Start),
		Strategy:       r.Strategy,
		Hostname:       r.Hostname,
		Log:            r.Log,
		XML:            r.XML,
	}
}

// writeTestsFromFacts writes the table of runTests from the facts of the
// invocations, as runTests writes it from their events: what the table
// shows of a test is in store.TestFacts (the JSON and --runs need each
// run, which only the events hold).
func writeTestsFromFacts(opts testsOptions, fs []*store.Facts, res *outcome, w, errw io.Writer) error {
	var rows []testRow
	anyTest := false
	ids := make([]string, len(fs))
	for i, f := range fs {
		ids[i] = f.InvocationID
		res.add(verdictStatus(invocation.Verdict(f.Verdict)))
		for _, t := range f.Tests {
			anyTest = true
			if len(opts.Statuses) > 0 && !slices.Contains(opts.Statuses, t.Status) {
				continue
			}
			row := testRow{
				Stream: f.Key, InvocationID: f.InvocationID, Label: t.Label, Configuration: t.Configuration,
				Kind: t.Kind, Size: t.Size, DidNotReport: t.DidNotReport, Status: t.Status,
				TotalRuns: t.TotalRuns, RunCount: t.Runs, Shards: t.Shards, Attempts: t.Attempts, Cached: t.Cached,
				Duration: seconds(t.Duration), Logs: orEmpty(t.Logs),
			}
			if t.AbortReason != "" {
				row.Aborted = &abortRow{Reason: t.AbortReason}
			}
			rows = append(rows, row)
		}
	}
	if len(fs) > 0 && !anyTest {
		fmt.Fprintln(errw, "bes: tests: no test in the streams given")
		res.add(ExitNoData)
	}
	if err := renderView(w, newViewDoc("tests", opts.viewOptions, nil, noTests(opts.Statuses), "test"), rows, testColumns(namesOfIDs(ids))); err != nil {
		return err
	}
	return opts.exit(res)
}
