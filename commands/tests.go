package commands

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/store/report"
)

// formatJUnit is `bes tests --format junit`: one JUnit XML document.
const formatJUnit = "junit"

type testsOptions struct {
	viewOptions
	Runs     bool
	Statuses []string // TestStatus names, upper case; none = all
}

// testRow is one test target as `bes tests` prints it.
type testRow struct {
	Stream        string     `json:"stream"`
	InvocationID  string     `json:"invocation_id"`
	Label         string     `json:"label"`
	Configuration string     `json:"configuration,omitempty"`
	Status        string     `json:"status"`
	Aborted       *abortRow  `json:"aborted,omitempty"`
	TotalRuns     int        `json:"total_runs"` // runs × shards × attempts
	RunCount      int        `json:"run_count"`
	Shards        int        `json:"shards"`
	Attempts      int        `json:"attempts"`
	Cached        int        `json:"cached"`
	Duration      float64    `json:"duration_seconds"`
	Start         *time.Time `json:"start,omitempty"`
	Logs          []string   `json:"logs"`
	Runs          []runRow   `json:"runs"`
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
}

func (r testRow) status() string {
	if r.Aborted != nil {
		return r.Status + " (aborted: " + r.Aborted.Reason + ")"
	}
	return r.Status
}

func testColumns(n invNames) []column[testRow] {
	return withInvocation(n, func(r testRow) (string, string) { return r.InvocationID, r.Stream }, []column[testRow]{
		{"LABEL", func(r testRow) string { return r.Label }},
		{"STATUS", testRow.status},
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
all attempts), and the test.log URI of the last attempt of each shard.
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
GitHub-flavoured Markdown table), and junit: one JUnit XML document, a
<testsuite> per test target and a <testcase> per run, shard and attempt,
times in seconds. FAILED and TIMEOUT attempts get a <failure> whose type
is the status (REMOTE_FAILURE too); INCOMPLETE, FAILED_TO_BUILD and
TOOL_HALTED_BEFORE_TESTING an <error>; a test that never ran is <skipped>,
or an <error> when it was interrupted. A flaky test passes: its failed
attempts get a <flakyFailure> (Maven Surefire's element for a failure that
passed on rerun, which Jenkins shows and GitLab and GitHub importers
ignore) instead of a <failure>, and its suite the property flaky=true.

` + gateHelp + `

EXAMPLES:
   bes tests bazel-out/test.bep
   bes tests test.bep --status failed,timeout --format json | jq -r '.[].logs[]'
   bes tests test.bep --runs --status flaky
   bes tests test.bep --format junit > junit.xml`),
		Flags: append(viewFlags(formatTable, formatJSON, formatNDJSON, formatMarkdown, formatJUnit),
			&cli.BoolFlag{Name: "runs", Usage: "print each run, shard and attempt"},
			&cli.StringSliceFlag{Name: "status", Aliases: []string{"s"}, Usage: "keep the tests (with --runs, the runs) whose status is `S`: a TestStatus name, case-insensitive; repeatable, comma-separated"},
		),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			opts := testsOptions{viewOptions: viewOptionsFrom(c), Runs: c.Bool("runs")}
			for _, s := range c.StringSlice("status") {
				for _, name := range strings.Split(s, ",") {
					name = strings.ToUpper(strings.TrimSpace(name))
					if name == "" {
						continue
					}
					if _, ok := bes.TestStatus_value[name]; !ok {
						return &usageError{fmt.Sprintf("--status: unknown test status %q (one of %s)", name, strings.Join(testStatusNames(), ", "))}
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
		if err := writeJUnit(w, invs, keep); err != nil {
			return err
		}
	case opts.Runs:
		if err := render(w, opts.Format, runs, runColumns(names)); err != nil {
			return err
		}
	default:
		if err := render(w, opts.Format, rows, testColumns(names)); err != nil {
			return err
		}
	}
	return res.err()
}

func testFor(inv *report.Invocation, t *report.Test) testRow {
	row := testRow{
		Stream:        inv.StreamKey,
		InvocationID:  inv.InvocationID,
		Label:         t.Label,
		Configuration: t.Configuration,
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

func runFor(inv *report.Invocation, t *report.Test, r *report.TestRun) runRow {
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

// JUnit XML, in the shape Jenkins, GitLab and GitHub's JUnit importers
// read: Ant's <testsuites>/<testsuite>/<testcase>, plus Maven Surefire's
// <flakyFailure> for the failed attempts of a flaky test.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name         string        `xml:"name,attr"`
	Classname    string        `xml:"classname,attr"`
	Time         string        `xml:"time,attr"`
	Failure      *junitOutcome `xml:"failure,omitempty"`
	Error        *junitOutcome `xml:"error,omitempty"`
	Skipped      *junitOutcome `xml:"skipped,omitempty"`
	FlakyFailure *junitOutcome `xml:"flakyFailure,omitempty"`
}

type junitOutcome struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

func junitSeconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// writeJUnit writes the tests of invs whose status keep accepts as one
// JUnit XML document.
func writeJUnit(w io.Writer, invs []*report.Invocation, keep func(string) bool) error {
	doc := junitSuites{Name: "bes", Suites: []junitSuite{}}
	var total time.Duration
	for _, inv := range invs {
		for _, t := range inv.Tests {
			if !keep(t.Status) {
				continue
			}
			s := junitSuiteFor(inv, t)
			doc.Tests += s.Tests
			doc.Failures += s.Failures
			doc.Errors += s.Errors
			doc.Skipped += s.Skipped
			total += t.Duration
			doc.Suites = append(doc.Suites, s)
		}
	}
	doc.Time = junitSeconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func junitSuiteFor(inv *report.Invocation, t *report.Test) junitSuite {
	s := junitSuite{
		Name: t.Label,
		Time: junitSeconds(t.Duration),
		Properties: []junitProperty{
			{"bazel.status", t.Status},
			{"bazel.invocation_id", inv.InvocationID},
		},
	}
	if !t.Start.IsZero() {
		s.Timestamp = t.Start.UTC().Format("2006-01-02T15:04:05")
	}
	if t.Status == report.StatusFlaky {
		s.Properties = append(s.Properties, junitProperty{"flaky", "true"})
	}
	if t.Aborted != nil {
		s.Properties = append(s.Properties, junitProperty{"bazel.aborted", t.Aborted.Reason})
	}
	add := func(c junitCase) {
		s.Tests++
		switch {
		case c.Failure != nil:
			s.Failures++
		case c.Error != nil:
			s.Errors++
		case c.Skipped != nil:
			s.Skipped++
		}
		s.Cases = append(s.Cases, c)
	}
	if len(t.Runs) == 0 || t.DidNotReport {
		// The test never ran or never reported: skipped, or an error when
		// it was stopped.
		c := junitCase{Name: t.Label, Classname: t.Label, Time: junitSeconds(0)}
		msg := t.Status
		if t.Aborted != nil {
			msg += ", aborted: " + t.Aborted.Reason
		}
		if t.DidNotReport {
			msg += ", did not report: the invocation did not finish (Bazel stopped before the test's summary)"
		}
		o := &junitOutcome{Message: msg, Type: t.Status}
		if t.Aborted != nil {
			o.Text = t.Aborted.Description
		}
		switch {
		case t.Failing():
			c.Error = o
		default:
			c.Skipped = o
		}
		add(c)
		return s
	}
	for _, r := range t.Runs {
		c := junitCase{Name: junitCaseName(t, r), Classname: t.Label, Time: junitSeconds(r.Duration)}
		o := &junitOutcome{Message: r.Status, Type: r.Status}
		if r.StatusDetails != "" {
			o.Message += ": " + r.StatusDetails
		}
		if r.Log != "" {
			o.Text = "test.log: " + r.Log
		}
		switch {
		case !report.FailingStatus(r.Status):
			if r.Status == report.StatusNoStatus {
				c.Skipped = o
			}
		case t.Status == report.StatusFlaky:
			o.Message = "flaky: " + o.Message + " (passed on a later attempt)"
			c.FlakyFailure = o
		case r.Status == report.StatusFailed || r.Status == report.StatusTimeout || r.Status == report.StatusRemoteFailure:
			c.Failure = o
		default:
			c.Error = o
		}
		add(c)
	}
	return s
}

// junitCaseName names a run after its test, with its run, shard and
// attempt when the test has several.
func junitCaseName(t *report.Test, r *report.TestRun) string {
	var parts []string
	if t.RunCount > 1 {
		parts = append(parts, fmt.Sprintf("run %d", r.Run))
	}
	if t.Shards > 1 {
		parts = append(parts, fmt.Sprintf("shard %d/%d", r.Shard, t.Shards))
	}
	if t.Attempts > 1 {
		parts = append(parts, fmt.Sprintf("attempt %d", r.Attempt))
	}
	if len(parts) == 0 {
		return t.Label
	}
	return t.Label + " (" + strings.Join(parts, ", ") + ")"
}
