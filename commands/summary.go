package commands

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/bepfile/invocation"
)

// summaryRow is one invocation as `bes summary` prints it.
type summaryRow struct {
	Stream       string     `json:"stream"`
	BuildID      string     `json:"build_id"`
	InvocationID string     `json:"invocation_id"`
	Command      string     `json:"command"`
	Patterns     []string   `json:"patterns"`
	Result       string     `json:"result,omitempty"`
	ExitCode     *int32     `json:"exit_code,omitempty"`
	Start        *time.Time `json:"start,omitempty"`
	Duration     *float64   `json:"duration_seconds,omitempty"`
	Complete     bool       `json:"complete"`
	// Finished is set when the stream has BuildFinished; without it and
	// without Complete, the invocation did not finish.
	Finished bool `json:"finished"`
	// Verdict is invocation.Verdict: passed, build_failed, tests_failed,
	// did_not_finish.
	Verdict      string       `json:"verdict"`
	Interrupted  bool         `json:"interrupted"`
	Targets      targetCounts `json:"targets"`
	Tests        testCounts   `json:"tests"`
	FirstFailure *failureRow  `json:"first_failure,omitempty"`
	// Configurations are the invocation's configurations by mnemonic.
	Configurations []string `json:"configurations,omitempty"`
	// Metrics are the build's own figures (BuildMetrics, BuildToolLogs).
	Metrics *metricsRow `json:"metrics,omitempty"`
	// ExitStatus is the status bes exits with for this invocation alone.
	ExitStatus int `json:"exit_status"`
}

type targetCounts struct {
	Configured int `json:"configured"`
	Built      int `json:"built"`
	Failed     int `json:"failed"`
	Aborted    int `json:"aborted"`
	Skipped    int `json:"skipped"`
}

type testCounts struct {
	Total         int `json:"total"`
	Passed        int `json:"passed"`
	Flaky         int `json:"flaky"`
	Failed        int `json:"failed"`
	TimedOut      int `json:"timed_out"`
	Incomplete    int `json:"incomplete"`
	RemoteFailure int `json:"remote_failure"`
	FailedToBuild int `json:"failed_to_build"`
	ToolHalted    int `json:"tool_halted"`
	Unknown       int `json:"unknown_status"`
	NoStatus      int `json:"no_status"`
	DidNotReport  int `json:"did_not_report"`
	Aborted       int `json:"aborted"`
	Cached        int `json:"cached"`
}

func summaryColumns(n invNames) []column[summaryRow] {
	return []column[summaryRow]{
		{"INVOCATION", func(r summaryRow) string { return n.cell(r.InvocationID, r.Stream) }},
		{"COMMAND", func(r summaryRow) string {
			return strings.TrimSpace(r.Command + " " + strings.Join(r.Patterns, " "))
		}},
		{"RESULT", func(r summaryRow) string {
			var parts []string
			if r.ExitCode != nil {
				parts = append(parts, fmt.Sprintf("%s (%d)", r.Result, *r.ExitCode))
			}
			if r.Interrupted {
				parts = append(parts, "interrupted")
			}
			switch {
			case !r.Finished && !r.Complete:
				parts = append(parts, "did not finish")
			case !r.Finished:
				parts = append(parts, "ended without BuildFinished")
			case !r.Complete:
				parts = append(parts, "partial")
			}
			return strings.Join(parts, ", ")
		}},
		{"START", func(r summaryRow) string { return formatTime(r.Start) }},
		{"DURATION", func(r summaryRow) string {
			if r.Duration == nil {
				return ""
			}
			return formatSeconds(*r.Duration)
		}},
		{"TARGETS", func(r summaryRow) string { return r.Targets.String() }},
		{"TESTS", func(r summaryRow) string { return r.Tests.String() }},
		{"FIRST FAILURE", func(r summaryRow) string {
			if r.FirstFailure == nil {
				return ""
			}
			return r.FirstFailure.String()
		}},
	}
}

// String is the TARGETS cell: "21 configured, 17 built, 3 failed, 1
// aborted", zero counts left out (but for configured and built).
func (c targetCounts) String() string {
	if c == (targetCounts{}) {
		return ""
	}
	s := fmt.Sprintf("%d configured, %d built", c.Configured, c.Built)
	for _, p := range []struct {
		n    int
		name string
	}{{c.Failed, "failed"}, {c.Aborted, "aborted"}, {c.Skipped, "skipped"}} {
		if p.n > 0 {
			s += fmt.Sprintf(", %d %s", p.n, p.name)
		}
	}
	return s
}

// String is the TESTS cell: "9: 6 passed, 1 flaky, 1 failed, 1 timed
// out", zero counts left out.
func (c testCounts) String() string {
	if c.Total == 0 {
		return ""
	}
	var parts []string
	for _, p := range []struct {
		n    int
		name string
	}{
		{c.Passed, "passed"}, {c.Flaky, "flaky"}, {c.Failed, "failed"}, {c.TimedOut, "timed out"},
		{c.Incomplete, "incomplete"}, {c.RemoteFailure, "remote failure"}, {c.FailedToBuild, "failed to build"},
		{c.ToolHalted, "tool halted"}, {c.Unknown, "unknown status"}, {c.NoStatus, "no status"},
		{c.DidNotReport, "did not report"}, {c.Aborted, "aborted"}, {c.Cached, "cached"},
	} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	return fmt.Sprintf("%d: %s", c.Total, strings.Join(parts, ", "))
}

func newSummaryCommand() *cli.Command {
	return &cli.Command{
		Name:      "summary",
		Usage:     "each invocation: command, result, verdict, targets, tests, metrics, first failure",
		ArgsUsage: "[STREAM...] [FILE...]",
		Description: commandHelp(`Summarizes each invocation (one stream each): the Bazel command and its
target patterns, the result (Bazel's exit code name and number, whether it
was interrupted; "did not finish" when the stream has neither BuildFinished
nor Bazel's last message, "ended without BuildFinished" when Bazel refused
the command), start time and duration,
the targets configured, built, failed and aborted, the tests by status
(passed, flaky, failed, timed out, no status…, and how many were cached),
and the first failure with its reason.

` + viewSelectionHelp + `

Formats: table, json (an array with one object per invocation; its
exit_status is the status this invocation alone calls for), ndjson, and
markdown (a table, below).

` + markdownHelp + `

` + gateHelp + `

EXAMPLES:
   bes summary bazel-out/build.bep
   bes summary --match . --format json | jq '.[] | select(.exit_status != 0)'
   bes summary build.bep --format markdown >> "$GITHUB_STEP_SUMMARY"`),
		Flags:        append(viewFlags(formatTable, formatJSON, formatNDJSON, formatMarkdown), exitZeroFlag()),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			return runSummary(c.Context, viewOptionsFrom(c), c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runSummary(ctx context.Context, opts viewOptions, args []string, w, errw io.Writer) error {
	invs, res, err := loadInvocations(ctx, "summary", opts, args, errw)
	if err != nil {
		return err
	}
	rows := make([]summaryRow, 0, len(invs))
	for _, inv := range invs {
		rows = append(rows, summaryFor(inv))
		res.add(invocationStatus(inv))
	}
	names := namesOf(invs)
	if opts.Format == formatTable && len(rows) == 1 {
		// One invocation: key: value lines that fit 80 columns.
		if err := writeSummaryCard(w, rows[0], names); err != nil {
			return err
		}
		return opts.exit(res)
	}
	if err := renderView(w, newViewDoc("summary", opts, invs, "No invocation with Bazel build events.", "invocation"), rows, summaryColumns(names)); err != nil {
		return err
	}
	return opts.exit(res)
}

func summaryFor(inv *invocation.Invocation) summaryRow {
	tc := inv.TestCounts()
	r := summaryRow{
		Stream:         inv.StreamKey,
		BuildID:        inv.BuildID,
		InvocationID:   inv.InvocationID,
		Command:        inv.Command,
		Patterns:       orEmpty(inv.Patterns),
		Result:         inv.Result,
		Start:          timePtr(inv.Start),
		Complete:       inv.Complete,
		Configurations: configurationNames(inv),
		Metrics:        metricsFor(inv.Metrics),
		Finished:       inv.Finished,
		Verdict:        string(inv.Verdict()),
		Interrupted:    inv.Interrupted,
		Targets:        targetCounts(inv.Targets),
		Tests: testCounts{
			Total: tc.Total, Passed: tc.Passed, Flaky: tc.Flaky, Failed: tc.Failed, TimedOut: tc.TimedOut,
			Incomplete: tc.Incomplete, RemoteFailure: tc.RemoteFailure, FailedToBuild: tc.FailedToBuild,
			ToolHalted: tc.ToolHalted, Unknown: tc.Unknown, NoStatus: tc.NoStatus, DidNotReport: tc.DidNotReport,
			Aborted: tc.Aborted, Cached: tc.Cached,
		},
		ExitStatus: invocationStatus(inv),
	}
	if inv.HasExitCode {
		code := inv.ExitCode
		r.ExitCode = &code
	}
	if d := inv.Duration(); d > 0 {
		s := seconds(d)
		r.Duration = &s
	}
	if f := inv.FirstFailure(); f != nil {
		fr := failureFor(inv, f)
		fr.Stream, fr.InvocationID = "", ""
		r.FirstFailure = &fr
	}
	return r
}
