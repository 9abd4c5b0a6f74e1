package commands

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/store"
)

type diffOptions struct {
	Store, Format string
	// Noise: a test's duration change is shown when it is at least
	// NoiseRatio of the earlier duration and at least NoiseMin.
	NoiseRatio float64
	NoiseMin   time.Duration
	ExitZero   bool
}

// diffRow is one difference between invocations A and B.
type diffRow struct {
	// Kind is test, target, duration (a test's), flag (an option the
	// invocation was run with) or metric (the invocation's).
	Kind string `json:"kind"`
	// Label is the test's or target's label, the option's name
	// ("--keep_going", "startup --output_user_root") or the metric's.
	Label string `json:"label"`
	// Change: newly failing, fixed, status changed, new, gone (tests and
	// targets); slower, faster (durations); added, removed, changed
	// (flags); changed (metrics).
	Change string `json:"change"`
	// Before and After are statuses (strings), seconds or counts
	// (numbers), an option's values (a string: "" for an option given
	// without a value, several joined by ", "); null when the label is
	// not in that invocation.
	Before any `json:"before"`
	After  any `json:"after"`
}

var diffColumns = []column[diffRow]{
	{"KIND", func(r diffRow) string { return r.Kind }},
	{"LABEL", func(r diffRow) string { return r.Label }},
	{"CHANGE", func(r diffRow) string { return r.Change }},
	{"BEFORE", func(r diffRow) string { return diffValue(r.Kind, r.Before) }},
	{"AFTER", func(r diffRow) string { return diffValue(r.Kind, r.After) }},
}

func diffValue(kind string, v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case float64:
		return formatSeconds(x)
	case int64:
		return fmt.Sprint(x)
	case string:
		if kind == "flag" && x == "" {
			return "(given)"
		}
	}
	return fmt.Sprint(v)
}

func newDiffCommand() *cli.Command {
	return &cli.Command{
		Name:      "diff",
		Usage:     "two stored invocations side by side: tests and targets that changed, durations, metrics",
		ArgsUsage: "A B",
		Description: commandHelp(`Compares invocation B with invocation A (each a STREAM of the store: a
key, a key prefix or an invocation id; B is usually the newer), from the
facts the store's catalog keeps of each:

  test      newly failing (FAILED, TIMEOUT, INCOMPLETE or REMOTE_FAILURE
            in B, not in A), fixed (the reverse), status changed (PASSED
            to FLAKY…), new or gone
  target    newly failing (not built in B, built or absent in A), fixed
  duration  a test that ran in both (not from a cache) and took at least
            --noise (default 25%) and --noise-min (default 100ms) longer
            (slower) or shorter (faster)
  flag      an option given on the command line (OptionsParsed's
            explicit options: "--name", or "startup --name" for a startup
            option) added in B, removed, or whose value changed; BEFORE
            and AFTER are its values, "(given)" for one without a value
  metric    the wall time, the critical path, the actions created and
            executed, the verdict, when they differ

Rows come in that order, the largest duration change first. The flags are
read from each stream's OptionsParsed event (among its first events; the
rest of the stream is not read), the rest from the facts the store's
catalog keeps.

EXIT STATUS for CI: 6 when a test newly fails in B, else 5 when a target
newly fails, else 0 (--exit-zero: 0 once the output is written).

EXAMPLES:
   bes diff 657fb236 8b58a6b7
   bes diff "$BASE_INVOCATION" "$INVOCATION" --format markdown >> "$GITHUB_STEP_SUMMARY"`),
		Flags: []cli.Flag{
			storeFlag(),
			formatFlag(formatTable, formatJSON, formatNDJSON, formatMarkdown),
			&cli.Float64Flag{Name: "noise", Value: 0.25, Usage: "show a test's duration change of at least this `FRACTION` of its duration in A"},
			&cli.DurationFlag{Name: "noise-min", Value: 100 * time.Millisecond, Usage: "show a test's duration change of at least `DURATION`"},
			exitZeroFlag(),
		},
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return &usageError{msg: "diff: name two invocations, A and B (stream keys, key prefixes or invocation ids)"}
			}
			opts := diffOptions{Store: c.String("store"), Format: c.String("format"), NoiseRatio: c.Float64("noise"),
				NoiseMin: c.Duration("noise-min"), ExitZero: c.Bool("exit-zero")}
			return runDiff(c.Context, opts, c.Args().Get(0), c.Args().Get(1), c.App.Writer)
		},
	}
}

// diffFacts returns the facts of the invocation ref names, and its
// stream: the first stream (in key order) that has Bazel events.
func diffFacts(ctx context.Context, st store.Backend, ref string) (*store.Facts, *store.Entry, error) {
	fr, ok := st.(store.FactsReader)
	if !ok {
		return nil, nil, fmt.Errorf("this store keeps no facts to compare invocations")
	}
	entries, err := st.Lookup(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		f, err := fr.Facts(ctx, e.Key)
		if err != nil {
			return nil, nil, err
		}
		if f != nil {
			return f, e, nil
		}
	}
	return nil, nil, fmt.Errorf("%s: no stream with Bazel build events", ref)
}

func runDiff(ctx context.Context, opts diffOptions, refA, refB string, w io.Writer) error {
	st, err := openStore(opts.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	a, ea, err := diffFacts(ctx, st, refA)
	if err != nil {
		return err
	}
	b, eb, err := diffFacts(ctx, st, refB)
	if err != nil {
		return err
	}
	oa, err := streamOptions(ctx, st, ea)
	if err != nil {
		return err
	}
	ob, err := streamOptions(ctx, st, eb)
	if err != nil {
		return err
	}
	rows := diffInvocations(a, b, diffFlags(oa, ob), opts)
	name := func(f *store.Facts) string { return invNames{}.cell(f.InvocationID, f.Key) }
	d := &viewDoc{format: opts.Format, heading: "bes diff: " + name(a) + " → " + name(b), none: "No differences.", noun: "difference"}
	if err := renderView(w, d, rows, diffColumns); err != nil {
		return err
	}
	res := &outcome{}
	for _, r := range rows {
		switch {
		case r.Kind == "test" && r.Change == "newly failing":
			res.add(ExitTestFail)
		case r.Kind == "target" && r.Change == "newly failing":
			res.add(ExitBuildFail)
		}
	}
	if opts.ExitZero {
		return nil
	}
	return res.err()
}

// diffInvocations lists how b differs from a, in the order of the rows'
// kinds (see diffRow), with the rows of their flags (diffFlags).
func diffInvocations(a, b *store.Facts, flags []diffRow, opts diffOptions) []diffRow {
	failing := func(s string) bool { return slices.Contains(store.FailingStatuses, s) }
	var tests, targets, durations, metrics []diffRow
	// Tests, by label (the first configuration of each).
	ta, tb := map[string]store.TestFacts{}, map[string]store.TestFacts{}
	for _, t := range a.Tests {
		if _, ok := ta[t.Label]; !ok {
			ta[t.Label] = t
		}
	}
	for _, t := range b.Tests {
		if _, ok := tb[t.Label]; !ok {
			tb[t.Label] = t
		}
	}
	for _, label := range sortedUnion(ta, tb) {
		x, inA := ta[label]
		y, inB := tb[label]
		var before, after any
		if inA {
			before = x.Status
		}
		if inB {
			after = y.Status
		}
		change := ""
		switch {
		case inB && failing(y.Status) && (!inA || !failing(x.Status)):
			change = "newly failing"
		case inA && inB && failing(x.Status) && !failing(y.Status):
			change = "fixed"
		case inA && inB && x.Status != y.Status:
			change = "status changed"
		case !inA:
			change = "new"
		case !inB:
			change = "gone"
		}
		if change != "" {
			tests = append(tests, diffRow{Kind: "test", Label: label, Change: change, Before: before, After: after})
		}
		if inA && inB && x.Cached == 0 && y.Cached == 0 && x.Duration > 0 {
			delta := y.Duration - x.Duration
			abs := time.Duration(math.Abs(float64(delta)))
			if abs >= opts.NoiseMin && float64(abs) >= opts.NoiseRatio*float64(x.Duration) {
				change := "slower"
				if delta < 0 {
					change = "faster"
				}
				durations = append(durations, diffRow{Kind: "duration", Label: label, Change: change, Before: seconds(x.Duration), After: seconds(y.Duration)})
			}
		}
	}
	slices.SortStableFunc(tests, func(x, y diffRow) int { return cmp.Compare(changeRank(x.Change), changeRank(y.Change)) })
	slices.SortStableFunc(durations, func(x, y diffRow) int {
		dx := math.Abs(x.After.(float64) - x.Before.(float64))
		dy := math.Abs(y.After.(float64) - y.Before.(float64))
		return cmp.Compare(dy, dx)
	})
	// Targets, by label.
	ga, gb := map[string]store.TargetFacts{}, map[string]store.TargetFacts{}
	for _, t := range a.Targets {
		ga[t.Label] = t
	}
	for _, t := range b.Targets {
		gb[t.Label] = t
	}
	built := func(t store.TargetFacts) string {
		switch {
		case t.Success:
			return "BUILT"
		case t.AbortReason != "":
			return "ABORTED (" + t.AbortReason + ")"
		}
		return "FAILED"
	}
	for _, label := range sortedUnion(ga, gb) {
		x, inA := ga[label]
		y, inB := gb[label]
		switch {
		case inB && !y.Success && (!inA || x.Success):
			var before any
			if inA {
				before = built(x)
			}
			targets = append(targets, diffRow{Kind: "target", Label: label, Change: "newly failing", Before: before, After: built(y)})
		case inA && inB && !x.Success && y.Success:
			targets = append(targets, diffRow{Kind: "target", Label: label, Change: "fixed", Before: built(x), After: built(y)})
		}
	}
	slices.SortStableFunc(targets, func(x, y diffRow) int { return cmp.Compare(changeRank(x.Change), changeRank(y.Change)) })
	// The invocation's own figures.
	metric := func(name string, x, y any) {
		if x != y {
			metrics = append(metrics, diffRow{Kind: "metric", Label: name, Change: "changed", Before: x, After: y})
		}
	}
	metric("verdict", a.Verdict, b.Verdict)
	metric("wall time", seconds(a.Duration), seconds(b.Duration))
	metric("critical path", seconds(a.CriticalPath), seconds(b.CriticalPath))
	metric("actions created", a.ActionsCreated, b.ActionsCreated)
	metric("actions executed", a.ActionsExecuted, b.ActionsExecuted)
	metric("tests", int64(len(a.Tests)), int64(len(b.Tests)))
	metric("targets", int64(len(a.Targets)), int64(len(b.Targets)))
	return slices.Concat(tests, targets, durations, flags, metrics)
}

// changeRank orders the changes of tests and targets: what breaks first.
func changeRank(c string) int {
	return slices.Index([]string{"newly failing", "fixed", "status changed", "new", "gone"}, c)
}

// sortedUnion returns the keys of a and b, sorted, once each.
func sortedUnion[V any](a, b map[string]V) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, strings.Compare)
	return keys
}
