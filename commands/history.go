package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/store"
)

// The questions across invocations (issue 15): history, flaky, trends and
// diff read the facts the store keeps of each stream (store.Facts), never
// the streams, through store.HistoryReader.

// historyNow is the clock --since counts back from; tests set it.
var historyNow = time.Now

// sinceFlag is --since of history, flaky and trends.
func sinceFlag() cli.Flag {
	return &cli.StringFlag{Name: "since", Usage: "only the invocations started in the last `DURATION` (30d, 2w, 36h) or since DATE (2026-11-01, or RFC 3339); default: all"}
}

// parseSince parses --since: a duration back from now (parseAge's: 90m,
// 36h, 30d, 2w), or a date (2006-01-02, UTC) or an RFC 3339 time. "" is
// the zero time: no window.
func parseSince(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	d, err := parseAge(v)
	if err != nil {
		return time.Time{}, &usageError{msg: fmt.Sprintf("--since wants a duration such as 30d, 2w, 36h or a date such as 2026-11-01, not %q", v)}
	}
	return historyNow().Add(-d).UTC(), nil
}

// openHistory opens the store for a question across invocations. A store
// that does not exist is empty; a backend without history queries is an
// error.
func openHistory(dir string) (store.HistoryReader, func() error, error) {
	st, err := openStore(dir)
	if err != nil {
		return nil, nil, err
	}
	h, ok := st.(store.HistoryReader)
	if !ok {
		st.Close()
		return nil, nil, fmt.Errorf("this store keeps no facts to answer questions across invocations")
	}
	return h, st.Close, nil
}

// writeJSONValue writes v as indented JSON, as render does.
func writeJSONValue(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// percent renders a fraction as a percentage: "66.7%".
func percent(n, of int) string {
	if of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(of))
}

// ratio is n/of, 0 when of is 0.
func ratio(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

type historyOptions struct {
	Store, Format, Match string
	Since                time.Time
	SinceArg             string // --since as given, for the no-run message
	Limit                int
}

// historyRow is one run of a label in `bes history`.
type historyRow struct {
	Label        string     `json:"label"`
	Stream       string     `json:"stream"`
	InvocationID string     `json:"invocation_id"`
	Start        *time.Time `json:"start,omitempty"`
	Commit       string     `json:"commit,omitempty"`
	Branch       string     `json:"branch,omitempty"`
	// Configuration is the test's configuration id.
	Configuration string `json:"configuration,omitempty"`
	// Status is the test's overall status (TestStatus name), PASSED for
	// a run passed from a cache (store.CachedPass: FromCache), or for a
	// target BUILT, FAILED or ABORTED. BazelStatus is a test's overall
	// status as Bazel gave it (FLAKY for the result of a flaky run
	// replayed from the cache).
	Status      string `json:"status"`
	BazelStatus string `json:"bazel_status,omitempty"`
	FromCache   bool   `json:"from_cache"`
	AbortReason string `json:"abort_reason,omitempty"`
	TotalRuns   int    `json:"total_runs"`
	Attempts    int    `json:"attempts"`
	Shards      int    `json:"shards"`
	// Cached is the number of results from a cache (total_num_cached).
	Cached    int     `json:"cached"`
	Duration  float64 `json:"duration_seconds"`
	FailedLog string  `json:"failed_log,omitempty"`
}

// historySummary is the summary of `bes history --format json`.
type historySummary struct {
	Label        string       `json:"label"`
	Test         bool         `json:"test"`
	Total        int          `json:"total_runs"`
	Passed       int          `json:"passed"`
	Flaky        int          `json:"flaky"`
	Failed       int          `json:"failed"`
	Cached       int          `json:"cached"` // runs passed from a cache, counted in passed
	PassRate     float64      `json:"pass_rate"`
	FlakeRate    float64      `json:"flake_rate"`
	FirstFailure *time.Time   `json:"first_failure,omitempty"`
	LastFailure  *time.Time   `json:"last_failure,omitempty"`
	Runs         []historyRow `json:"runs"`
}

func historyColumns(test bool) []column[historyRow] {
	cols := []column[historyRow]{
		{"INVOCATION", func(r historyRow) string { return invNames{}.cell(r.InvocationID, r.Stream) }},
		{"START", func(r historyRow) string { return formatTime(r.Start) }},
		{"COMMIT", func(r historyRow) string { return shortCommit(r.Commit) }},
		{"BRANCH", func(r historyRow) string { return r.Branch }},
		{"STATUS", func(r historyRow) string {
			switch {
			case r.AbortReason != "":
				return r.Status + " (" + r.AbortReason + ")"
			case r.FromCache:
				return r.Status + " (cached)"
			}
			return r.Status
		}},
	}
	if !test {
		return cols
	}
	return append(cols,
		column[historyRow]{"ATTEMPTS", func(r historyRow) string { return fmt.Sprint(r.Attempts) }},
		column[historyRow]{"SHARDS", func(r historyRow) string { return fmt.Sprint(r.Shards) }},
		column[historyRow]{"CACHED", func(r historyRow) string { return fmt.Sprint(r.Cached) }},
		column[historyRow]{"DURATION", func(r historyRow) string { return formatSeconds(r.Duration) }},
	)
}

// shortCommit shows a commit id's first 12 characters in a table.
func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

func newHistoryCommand() *cli.Command {
	return &cli.Command{
		Name:      "history",
		Usage:     "a test's (or target's) runs across the stored invocations, newest first, and its pass and flake rates",
		ArgsUsage: "LABEL",
		Description: commandHelp(`Lists the runs of the test LABEL in the stored invocations, newest first:
invocation, start, commit and branch when the invocation says them
(--build_metadata COMMIT_SHA, BRANCH_NAME, or the workspace status'
STABLE_GIT_COMMIT, BUILD_SCM_REVISION…), the overall status Bazel gave,
attempts, shards, results from a cache and time spent; then a summary of
every run in the window: runs, pass rate, flake rate, first and last
failure. A label that is no test lists its builds: BUILT, FAILED or
ABORTED.

A result served from a cache is no new run of the test: a run whose
results came from a cache (CACHED > 0) with status PASSED or FLAKY (Bazel
caches passing results only; a FLAKY one passed on its retry) is shown
"PASSED (cached)" and counted as passed from the cache, neither a flake
nor a failure (JSON: status PASSED, from_cache true, bazel_status as
Bazel gave it). An invocation is one run however many streams hold it (a
.bep and its BES capture): the runs of one of its streams are listed, the
complete one, else the one ingested last. It reads the facts the store's catalog keeps of each invocation
(written at ingest), never the streams: on an index, in milliseconds at
100,000 invocations (BENCHMARKS.md).

--since keeps the invocations started in the last DURATION (30d, 2w, 36h)
or since a DATE (2026-11-01); --limit N lists the N newest runs (default
50; 0: all), the summary counting them all; --match REGEX keeps the
streams whose key matches (then the newest of those that match stands
for its invocation).

Formats: table (then the summary line), json (one object: the summary and
its runs), ndjson (one run a line), markdown (a heading, the table, the
summary).

EXAMPLES:
   bes history //tests:flaky
   bes history //pkg:test --since 30d --format json | jq '.flake_rate'
   bes history //pkg:test --since 2026-11-01 --limit 0 -o ndjson`),
		Flags: []cli.Flag{
			storeFlag(),
			formatFlag(formatTable, formatJSON, formatNDJSON, formatMarkdown),
			sinceFlag(),
			&cli.IntFlag{Name: "limit", Value: 50, Usage: "list the `N` newest runs (0: all); the summary counts every run"},
			&cli.StringFlag{Name: "match", Aliases: []string{"m"}, Usage: "keep the streams whose key matches `REGEX` (unanchored)"},
		},
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return &usageError{msg: "history: name one LABEL (//pkg:test)"}
			}
			since, err := parseSince(c.String("since"))
			if err != nil {
				return err
			}
			if c.Int("limit") < 0 {
				return &usageError{msg: "--limit: want 0 or more"}
			}
			opts := historyOptions{Store: c.String("store"), Format: c.String("format"), Match: c.String("match"), Since: since, SinceArg: c.String("since"), Limit: c.Int("limit")}
			return runHistory(c.Context, opts, c.Args().First(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runHistory(ctx context.Context, opts historyOptions, label string, w, errw io.Writer) error {
	q := store.HistoryQuery{Since: opts.Since, Limit: opts.Limit}
	if opts.Match != "" {
		re, err := regexp.Compile(opts.Match)
		if err != nil {
			return &usageError{msg: fmt.Sprintf("--match: %v", err), cause: err}
		}
		q.Match = re.MatchString
	}
	hr, closeStore, err := openHistory(opts.Store)
	if err != nil {
		return err
	}
	defer closeStore()
	h, err := hr.LabelHistory(ctx, label, q)
	if err != nil {
		return err
	}
	rows := make([]historyRow, 0, len(h.Runs))
	for _, r := range h.Runs {
		row := historyRow{
			Label: r.Label, Stream: r.Key, InvocationID: r.InvocationID, Start: timePtr(r.Start),
			Commit: r.Commit, Branch: r.Branch, Configuration: r.Configuration, Status: r.Status,
			AbortReason: r.AbortReason, TotalRuns: r.TotalRuns, Attempts: r.Attempts, Shards: r.Shards,
			Cached: r.Cached, Duration: seconds(r.Duration), FailedLog: r.FailedLog,
		}
		if r.Test {
			row.BazelStatus = r.Status
		}
		if r.CachedPass() {
			row.Status, row.FromCache = "PASSED", true
		}
		rows = append(rows, row)
	}
	sum := historySummary{
		Label: h.Label, Test: h.Test, Total: h.Total, Passed: h.Passed, Flaky: h.Flaky, Failed: h.Failed,
		Cached: h.Cached, PassRate: ratio(h.Passed, h.Total), FlakeRate: ratio(h.Flaky, h.Total),
		FirstFailure: timePtr(h.FirstFailure), LastFailure: timePtr(h.LastFailure), Runs: rows,
	}
	line := historyLine(sum)
	switch opts.Format {
	case formatJSON:
		if err := writeJSONValue(w, sum); err != nil {
			return err
		}
	case formatNDJSON:
		if err := render(w, formatNDJSON, rows, nil); err != nil {
			return err
		}
	default:
		d := &viewDoc{format: opts.Format, heading: "bes history: " + label, none: "No runs of " + label + ".", noun: "run"}
		d.after = func(w io.Writer, _, _ int) error {
			if h.Total == 0 { // the header alone, as the other views
				return nil
			}
			if opts.Format == formatMarkdown {
				_, err := fmt.Fprintf(w, "%s\n\n", markdownText(line))
				return err
			}
			_, err := fmt.Fprintln(w, line)
			return err
		}
		if err := renderView(w, d, rows, historyColumns(h.Test)); err != nil {
			return err
		}
	}
	if h.Total == 0 {
		var within []string
		if opts.SinceArg != "" {
			within = append(within, "--since "+opts.SinceArg)
		}
		if opts.Match != "" {
			within = append(within, "--match "+opts.Match)
		}
		if len(within) > 0 {
			label += " (" + strings.Join(within, ", ") + ")"
		}
		fmt.Fprintf(errw, "bes: history: no run of %s in the store\n", label)
		return &reportedError{code: ExitNoData}
	}
	return nil
}

// historyLine is the summary line under the table.
func historyLine(s historySummary) string {
	var b strings.Builder
	if s.Test {
		fmt.Fprintf(&b, "%d %s: %d passed (%s; %d from cache), %d flaky (%s), %d failed (%s)",
			s.Total, plural(s.Total, "run"), s.Passed, percent(s.Passed, s.Total), s.Cached, s.Flaky, percent(s.Flaky, s.Total),
			s.Failed, percent(s.Failed, s.Total))
	} else {
		fmt.Fprintf(&b, "%d %s: %d built (%s), %d failed (%s)", s.Total, plural(s.Total, "build"),
			s.Passed, percent(s.Passed, s.Total), s.Failed, percent(s.Failed, s.Total))
	}
	if s.FirstFailure != nil {
		fmt.Fprintf(&b, "; first failure %s, last failure %s", formatTime(s.FirstFailure), formatTime(s.LastFailure))
	}
	return b.String()
}
