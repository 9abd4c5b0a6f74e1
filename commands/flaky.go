package commands

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"
)

type flakyOptions struct {
	Store, Format string
	Since         time.Time
	MinRuns       int
}

// flakyRow is one test of `bes flaky`.
type flakyRow struct {
	Label string `json:"label"`
	Runs  int    `json:"runs"`
	// Flakes are the runs that flaked (store.FlakyTest.Flakes), Flaky
	// those of them with status FLAKY; FlakeRate is flakes / runs.
	Flakes    int     `json:"flakes"`
	Flaky     int     `json:"flaky"`
	Failed    int     `json:"failed"`
	FlakeRate float64 `json:"flake_rate"`
	// The newest flake: its stream, invocation, start and a failed
	// attempt's test.log.
	Stream       string     `json:"stream"`
	InvocationID string     `json:"invocation_id"`
	Start        *time.Time `json:"start,omitempty"`
	Log          string     `json:"log,omitempty"`
}

var flakyColumns = []column[flakyRow]{
	{"LABEL", func(r flakyRow) string { return r.Label }},
	{"FLAKES", func(r flakyRow) string { return fmt.Sprint(r.Flakes) }},
	{"RUNS", func(r flakyRow) string { return fmt.Sprint(r.Runs) }},
	{"RATE", func(r flakyRow) string { return percent(r.Flakes, r.Runs) }},
	{"FAILED", func(r flakyRow) string { return fmt.Sprint(r.Failed) }},
	{"LAST FLAKE", func(r flakyRow) string { return formatTime(r.Start) }},
	{"INVOCATION", func(r flakyRow) string { return invNames{}.cell(r.InvocationID, r.Stream) }},
	{"LOG", func(r flakyRow) string { return r.Log }},
}

func newFlakyCommand() *cli.Command {
	return &cli.Command{
		Name:  "flaky",
		Usage: "the flaky tests of the stored invocations, the most retries first",
		Description: commandHelp(`Lists the tests that flaked in the stored invocations, ranked by their
flakes (flake rate × runs: the retries they cost), then by flake rate. A
run flaked when Bazel gave it the overall status FLAKY (it failed, then
passed on a retry: --flaky_test_attempts), or when it failed (FAILED,
TIMEOUT, INCOMPLETE, REMOTE_FAILURE) in an invocation at a commit at which
the same test passed in another (the commit an invocation says:
--build_metadata COMMIT_SHA, or the workspace status' STABLE_GIT_COMMIT…).
A result served from a cache is no new run of the test: a run whose
results came from a cache with status PASSED or FLAKY (a FLAKY result
replayed from the cache is the earlier run's flake) counts as a run that
passed, neither a flake nor a failure. An invocation is one run however
many streams hold it (a .bep and its BES capture). A test that always
passed is never listed. Each row: the
flakes, the runs, the rate, the failed runs, and the newest flake with its
invocation and the test.log of a failed attempt.

It reads the facts the store's catalog keeps of each invocation, and of
those only the runs that did not pass (a partial index), never the
streams (BENCHMARKS.md: under a second at 100,000 invocations).

--since keeps the invocations started in the last DURATION (30d, 2w) or
since a DATE; --min-runs N leaves out the tests with fewer runs.

EXAMPLES:
   bes flaky
   bes flaky --since 14d --min-runs 10
   bes flaky --format json | jq -r '.[0].log'`),
		Flags: []cli.Flag{
			storeFlag(),
			formatFlag(formatTable, formatJSON, formatNDJSON, formatMarkdown),
			sinceFlag(),
			&cli.IntFlag{Name: "min-runs", Usage: "leave out the tests with fewer than `N` runs in the window"},
			limitFlag(),
		},
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return &usageError{msg: fmt.Sprintf("flaky takes no arguments, got %q", c.Args().First())}
			}
			since, err := parseSince(c.String("since"))
			if err != nil {
				return err
			}
			if c.Int("min-runs") < 0 {
				return &usageError{msg: fmt.Sprintf("flaky: --min-runs %d: want 0 or more", c.Int("min-runs"))}
			}
			opts := flakyOptions{Store: c.String("store"), Format: c.String("format"), Since: since, MinRuns: c.Int("min-runs")}
			return runFlaky(c.Context, opts, limitFrom(c), c.App.Writer)
		},
	}
}

func runFlaky(ctx context.Context, opts flakyOptions, limit int, w io.Writer) error {
	hr, closeStore, err := openHistory(opts.Store)
	if err != nil {
		return err
	}
	defer closeStore()
	tests, err := hr.FlakyTests(ctx, opts.Since, opts.MinRuns)
	if err != nil {
		return err
	}
	rows := make([]flakyRow, 0, len(tests))
	for _, f := range tests {
		rows = append(rows, flakyRow{
			Label: f.Label, Runs: f.Runs, Flakes: f.Flakes, Flaky: f.FlakyStatus, Failed: f.Failed, FlakeRate: f.Rate(),
			Stream: f.LastKey, InvocationID: f.LastInvocationID, Start: timePtr(f.Last), Log: f.LastLog,
		})
	}
	d := &viewDoc{format: opts.Format, limit: max(limit, 0), heading: "bes flaky", none: "No flaky tests.", noun: "test"}
	if opts.Format == formatMarkdown {
		if limit < 0 {
			d.limit = markdownLimit
		}
		d.budget = markdownBudget
	}
	return renderView(w, d, rows, flakyColumns)
}
