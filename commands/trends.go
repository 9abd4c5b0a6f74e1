package commands

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/store"
)

type trendsOptions struct {
	Store, Format string
	Since         time.Time
	// Every is the invocations a period holds; 0: a period is a day (UTC).
	Every       int
	Top         int
	Invocations bool
}

// trendRow is one period of `bes trends`: the invocations (kind
// "builds") or the runs of a test (kind "test") that started in it, and
// the median and 90th percentile (nearest rank) of their durations.
type trendRow struct {
	Kind  string `json:"kind"`
	Label string `json:"label,omitempty"`
	// Period is a day (2026-11-23) or a range of invocations ("1-100",
	// oldest first) with --every.
	Period string     `json:"period"`
	Start  *time.Time `json:"start,omitempty"` // the first start in the period
	Runs   int        `json:"runs"`
	Median float64    `json:"median_seconds"`
	P90    float64    `json:"p90_seconds"`
	// Builds: the medians of the build's metrics, 0 when none said them.
	CriticalPath    float64 `json:"critical_path_median_seconds,omitempty"`
	ActionsExecuted int64   `json:"actions_executed_median,omitempty"`
	// Tests: the runs left out because their results came from a cache.
	Cached int `json:"cached,omitempty"`
}

// growthRow is a test whose mean duration grew between the halves of the
// window.
type growthRow struct {
	Kind       string  `json:"kind"` // "growth"
	Label      string  `json:"label"`
	Before     float64 `json:"before_seconds"`
	After      float64 `json:"after_seconds"`
	Growth     float64 `json:"growth_seconds"`
	RunsBefore int     `json:"runs_before"`
	RunsAfter  int     `json:"runs_after"`
}

// invocationTrendRow is one invocation of `bes trends --invocations`.
type invocationTrendRow struct {
	Kind            string     `json:"kind"` // "invocation"
	Stream          string     `json:"stream"`
	InvocationID    string     `json:"invocation_id"`
	Command         string     `json:"command"`
	Verdict         string     `json:"verdict"`
	Start           *time.Time `json:"start,omitempty"`
	Duration        float64    `json:"duration_seconds"`
	CriticalPath    float64    `json:"critical_path_seconds"`
	ActionsCreated  int64      `json:"actions_created"`
	ActionsExecuted int64      `json:"actions_executed"`
}

// trendsDoc is `bes trends --format json`.
type trendsDoc struct {
	Builds      []trendRow           `json:"builds"`
	Tests       []trendRow           `json:"tests"`
	Growth      []growthRow          `json:"growth"`
	Invocations []invocationTrendRow `json:"invocations,omitempty"`
}

func newTrendsCommand() *cli.Command {
	return &cli.Command{
		Name:      "trends",
		Usage:     "build and test durations over time, and the tests that got slower",
		ArgsUsage: "[LABEL...]",
		Description: commandHelp(`Shows how durations move across the stored invocations, from the facts
the store's catalog keeps of each (no stream is read):

  builds   per day (UTC), or per --every N invocations: how many, the
           median and 90th percentile (nearest rank) of their wall time
           (BuildStarted to BuildFinished), and the medians of the critical
           path (BuildMetrics.timing_metrics.critical_path_time) and of the
           actions executed (action_summary.actions_executed)
  tests    the same for each LABEL given: its runs' durations (the sum of
           the attempts), the results from a cache left out
  growth   the --top N tests (default 10) whose mean duration (cached
           results left out) grew most from the first half of the window
           to the second

--invocations also lists each invocation with its wall time, critical path
and action counts. --since keeps the invocations started in the last
DURATION (30d, 2w) or since a DATE (default: all).

Formats: table (the sections one after the other), json (one object:
builds, tests, growth, invocations), ndjson (one row a line, each with its
"kind"), markdown.

EXAMPLES:
   bes trends --since 30d
   bes trends --every 100 //pkg:slow_test
   bes trends --since 2w --format json | jq '.growth[0]'`),
		Flags: []cli.Flag{
			storeFlag(),
			formatFlag(formatTable, formatJSON, formatNDJSON, formatMarkdown),
			sinceFlag(),
			&cli.IntFlag{Name: "every", Usage: "a period is `N` invocations instead of a day"},
			&cli.IntFlag{Name: "top", Value: 10, Usage: "list the `N` tests that grew most (0: all)"},
			&cli.BoolFlag{Name: "invocations", Usage: "list each invocation's wall time, critical path and action counts"},
		},
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			since, err := parseSince(c.String("since"))
			if err != nil {
				return err
			}
			if c.Int("every") < 0 || c.Int("top") < 0 {
				return &usageError{msg: "trends: --every and --top want 0 or more"}
			}
			opts := trendsOptions{Store: c.String("store"), Format: c.String("format"), Since: since,
				Every: c.Int("every"), Top: c.Int("top"), Invocations: c.Bool("invocations")}
			return runTrends(c.Context, opts, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

// nearestRank returns the p-th percentile of sorted durations by the
// nearest-rank method, 0 for none.
func nearestRank[T int64 | time.Duration](sorted []T, p int) T {
	if len(sorted) == 0 {
		return 0
	}
	k := (p*len(sorted) + 99) / 100
	return sorted[max(k, 1)-1]
}

// period groups items by day or by every n, oldest first.
type period struct {
	name  string
	start time.Time
	idx   []int
}

func periods(starts []time.Time, every int) []period {
	var out []period
	for i, t := range starts {
		name := t.UTC().Format(time.DateOnly)
		if every > 0 {
			name = fmt.Sprintf("%d-%d", i/every*every+1, min(len(starts), (i/every+1)*every))
		}
		if len(out) == 0 || out[len(out)-1].name != name {
			out = append(out, period{name: name, start: t})
		}
		out[len(out)-1].idx = append(out[len(out)-1].idx, i)
	}
	return out
}

func runTrends(ctx context.Context, opts trendsOptions, labels []string, w, errw io.Writer) error {
	hr, closeStore, err := openHistory(opts.Store)
	if err != nil {
		return err
	}
	defer closeStore()
	invs, err := hr.InvocationTimings(ctx, opts.Since)
	if err != nil {
		return err
	}
	doc := trendsDoc{Builds: []trendRow{}, Tests: []trendRow{}, Growth: []growthRow{}}
	// Builds whose start is known, in order.
	invs = slices.DeleteFunc(invs, func(t store.InvocationTiming) bool { return t.Start.IsZero() })
	starts := make([]time.Time, len(invs))
	for i, t := range invs {
		starts[i] = t.Start
	}
	for _, p := range periods(starts, opts.Every) {
		var durs, cps []time.Duration
		var acts []int64
		for _, i := range p.idx {
			if invs[i].Duration > 0 {
				durs = append(durs, invs[i].Duration)
			}
			if invs[i].CriticalPath > 0 {
				cps = append(cps, invs[i].CriticalPath)
			}
			if invs[i].ActionsExecuted > 0 {
				acts = append(acts, invs[i].ActionsExecuted)
			}
		}
		slices.Sort(durs)
		slices.Sort(cps)
		slices.Sort(acts)
		doc.Builds = append(doc.Builds, trendRow{Kind: "builds", Period: p.name, Start: timePtr(p.start), Runs: len(p.idx),
			Median: seconds(nearestRank(durs, 50)), P90: seconds(nearestRank(durs, 90)),
			CriticalPath: seconds(nearestRank(cps, 50)), ActionsExecuted: nearestRank(acts, 50)})
	}
	if opts.Invocations {
		for _, t := range invs {
			doc.Invocations = append(doc.Invocations, invocationTrendRow{Kind: "invocation", Stream: t.Key, InvocationID: t.InvocationID,
				Command: t.Command, Verdict: t.Verdict, Start: timePtr(t.Start), Duration: seconds(t.Duration),
				CriticalPath: seconds(t.CriticalPath), ActionsCreated: t.ActionsCreated, ActionsExecuted: t.ActionsExecuted})
		}
	}
	for _, label := range labels {
		runs, err := hr.TestTimings(ctx, label, opts.Since)
		if err != nil {
			return err
		}
		if len(runs) == 0 {
			fmt.Fprintf(errw, "bes: trends: no run of %s in the store\n", label)
			continue
		}
		st := make([]time.Time, len(runs))
		for i, r := range runs {
			st[i] = r.Start
		}
		for _, p := range periods(st, opts.Every) {
			row := trendRow{Kind: "test", Label: label, Period: p.name, Start: timePtr(p.start)}
			var durs []time.Duration
			for _, i := range p.idx {
				if runs[i].Cached {
					row.Cached++
					continue
				}
				durs = append(durs, runs[i].Duration)
			}
			slices.Sort(durs)
			row.Runs, row.Median, row.P90 = len(durs), seconds(nearestRank(durs, 50)), seconds(nearestRank(durs, 90))
			doc.Tests = append(doc.Tests, row)
		}
	}
	if len(invs) > 1 {
		split := invs[0].Start.Add(invs[len(invs)-1].Start.Sub(invs[0].Start) / 2)
		grew, err := hr.DurationGrowth(ctx, opts.Since, split, opts.Top)
		if err != nil {
			return err
		}
		for _, g := range grew {
			doc.Growth = append(doc.Growth, growthRow{Kind: "growth", Label: g.Label, Before: seconds(g.Before), After: seconds(g.After),
				Growth: seconds(g.After - g.Before), RunsBefore: g.RunsBefore, RunsAfter: g.RunsAfter})
		}
	}
	if err := writeTrends(w, opts.Format, doc); err != nil {
		return err
	}
	if len(invs) == 0 {
		fmt.Fprintln(errw, "bes: trends: no invocation in the store")
		return &reportedError{code: ExitNoData}
	}
	return nil
}

var (
	buildTrendColumns = []column[trendRow]{
		{"PERIOD", func(r trendRow) string { return r.Period }},
		{"INVOCATIONS", func(r trendRow) string { return strconv.Itoa(r.Runs) }},
		{"MEDIAN", func(r trendRow) string { return formatSeconds(r.Median) }},
		{"P90", func(r trendRow) string { return formatSeconds(r.P90) }},
		{"CRITICAL PATH", func(r trendRow) string { return formatSeconds(r.CriticalPath) }},
		{"ACTIONS", func(r trendRow) string { return strconv.FormatInt(r.ActionsExecuted, 10) }},
	}
	testTrendColumns = []column[trendRow]{
		{"LABEL", func(r trendRow) string { return r.Label }},
		{"PERIOD", func(r trendRow) string { return r.Period }},
		{"RUNS", func(r trendRow) string { return strconv.Itoa(r.Runs) }},
		{"CACHED", func(r trendRow) string { return strconv.Itoa(r.Cached) }},
		{"MEDIAN", func(r trendRow) string { return formatSeconds(r.Median) }},
		{"P90", func(r trendRow) string { return formatSeconds(r.P90) }},
	}
	growthColumns = []column[growthRow]{
		{"LABEL", func(r growthRow) string { return r.Label }},
		{"BEFORE", func(r growthRow) string { return formatSeconds(r.Before) }},
		{"AFTER", func(r growthRow) string { return formatSeconds(r.After) }},
		{"GROWTH", func(r growthRow) string { return "+" + formatSeconds(r.Growth) }},
		{"RUNS", func(r growthRow) string { return fmt.Sprintf("%d/%d", r.RunsBefore, r.RunsAfter) }},
	}
	invocationTrendColumns = []column[invocationTrendRow]{
		{"INVOCATION", func(r invocationTrendRow) string { return invNames{}.cell(r.InvocationID, r.Stream) }},
		{"START", func(r invocationTrendRow) string { return formatTime(r.Start) }},
		{"COMMAND", func(r invocationTrendRow) string { return r.Command }},
		{"VERDICT", func(r invocationTrendRow) string { return r.Verdict }},
		{"DURATION", func(r invocationTrendRow) string { return formatSeconds(r.Duration) }},
		{"CRITICAL PATH", func(r invocationTrendRow) string { return formatSeconds(r.CriticalPath) }},
		{"ACTIONS CREATED", func(r invocationTrendRow) string { return strconv.FormatInt(r.ActionsCreated, 10) }},
		{"ACTIONS EXECUTED", func(r invocationTrendRow) string { return strconv.FormatInt(r.ActionsExecuted, 10) }},
	}
)

// writeTrends writes the sections of doc in format.
func writeTrends(w io.Writer, format string, doc trendsDoc) error {
	switch format {
	case formatJSON:
		return writeJSONValue(w, doc)
	case formatNDJSON:
		bw := bufio.NewWriter(w)
		if err := render(bw, format, doc.Builds, nil); err != nil {
			return err
		}
		if err := render(bw, format, doc.Tests, nil); err != nil {
			return err
		}
		if err := render(bw, format, doc.Growth, nil); err != nil {
			return err
		}
		if err := render(bw, format, doc.Invocations, nil); err != nil {
			return err
		}
		return bw.Flush()
	}
	section := func(title string, write func(d *viewDoc) error, noun, none string, last bool) error {
		d := &viewDoc{format: format, heading: "bes trends: " + title, noun: noun, none: none}
		if format == formatTable {
			if _, err := fmt.Fprintf(w, "%s:\n", title); err != nil {
				return err
			}
		}
		if err := write(d); err != nil {
			return err
		}
		if format == formatTable && !last {
			_, err := fmt.Fprintln(w)
			return err
		}
		return nil
	}
	last := len(doc.Invocations) == 0
	if err := section("builds", func(d *viewDoc) error { return renderView(w, d, doc.Builds, buildTrendColumns) }, "period", "No invocations.", false); err != nil {
		return err
	}
	if len(doc.Tests) > 0 {
		if err := section("tests", func(d *viewDoc) error { return renderView(w, d, doc.Tests, testTrendColumns) }, "period", "No runs.", false); err != nil {
			return err
		}
	}
	if err := section("tests that grew most", func(d *viewDoc) error { return renderView(w, d, doc.Growth, growthColumns) }, "test", "No test got slower.", last); err != nil {
		return err
	}
	if !last {
		return section("invocations", func(d *viewDoc) error { return renderView(w, d, doc.Invocations, invocationTrendColumns) }, "invocation", "No invocations.", true)
	}
	return nil
}
