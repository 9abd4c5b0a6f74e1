package commands

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/invocation"
	"github.com/bes-cli/bes/store"
)

// The CI views (summary, tests, failures, artifacts) share how they find
// their streams and how they turn what they find into an exit status.

// viewOptions are the flags every view takes.
type viewOptions struct {
	Store  string
	Match  string
	Format string
	Read   bepfile.Options
	// Limit is --limit: the rows a table or Markdown document shows at
	// most, 0 for all, -1 when not given (see viewDoc).
	Limit int
	// ExitZero is --exit-zero: exit 0 once the output is written.
	ExitZero bool
}

// viewFlags returns the flags every view takes, with the given formats.
func viewFlags(formats ...string) []cli.Flag {
	return append([]cli.Flag{
		storeFlag(),
		&cli.StringFlag{Name: "match", Aliases: []string{"m"}, Usage: "keep the streams whose key matches `REGEX` (unanchored); without STREAM or FILE, every stored stream that matches"},
		formatFlag(formats...),
		limitFlag(),
	}, inputFlags()...)
}

func viewOptionsFrom(c *cli.Context) viewOptions {
	return viewOptions{
		Store:    c.String("store"),
		Match:    c.String("match"),
		Format:   c.String("format"),
		Read:     readOptions(c),
		Limit:    limitFrom(c),
		ExitZero: c.Bool("exit-zero"),
	}
}

// viewSelectionHelp documents how every view picks its streams.
const viewSelectionHelp = `STREAM is a full key, a unique key prefix, or an invocation id of a stored
stream; an argument that names an existing file is read as an input instead,
and then no store is touched (with files and no STREAM, every stream in
them is used). An argument that looks like a path (it ends in .bep, .json,
.ndjson, .obe, .gz, .zst… or holds a "/") and does not exist is "no such
file", exit 1. --match REGEX keeps the streams whose key the regular
expression matches anywhere; alone, it selects among all stored streams
("--match ." takes them all). Streams without Bazel build events (BES
lifecycle streams) are left out.`

// loadInvocations finds the streams the arguments name and builds the
// model of each, ordered by start time (then key). Streams without any
// Bazel event are left out; when none is left, a line on errw says so and
// the outcome holds ExitNoData. The outcome also holds what reading the
// files gave (partial input, bad events).
func loadInvocations(ctx context.Context, cmd string, opts viewOptions, args []string, errw io.Writer) ([]*invocation.Invocation, *outcome, error) {
	// Only artifacts needs output files, only actions every action (and
	// report, the page of all).
	wants := invocation.Wants{Artifacts: cmd == "artifacts" || cmd == "report", Actions: cmd == "actions", TimedActions: cmd == "report"}
	if cmd == "report" {
		wants.MaxArtifacts = maxReportArtifacts // the others are counted
	}
	re, err := regexp.Compile(opts.Match)
	if err != nil {
		return nil, nil, &usageError{msg: fmt.Sprintf("--match: %v", err), cause: err}
	}
	files, refs := splitArgs(args)
	if len(files) == 0 && len(refs) == 0 && opts.Match == "" {
		return nil, nil, &usageError{msg: cmd + ": name a STREAM (key, key prefix or invocation id), a FILE, or --match REGEX"}
	}
	return buildInvocations(ctx, cmd, selection{Store: opts.Store, Match: re, Files: files, Refs: refs, Read: opts.Read}, wants, errw)
}

// buildInvocations is loadInvocations for the streams sel names.
func buildInvocations(ctx context.Context, cmd string, sel selection, wants invocation.Wants, errw io.Writer) ([]*invocation.Invocation, *outcome, error) {
	res := &outcome{}
	// damaged reports an event the model could not decode: one line, and
	// the others are used (issue 10).
	damaged := func(err error) {
		fmt.Fprintf(errw, "bes: %s: %v (used as far as it decodes; every other event is used)\n", cmd, err)
		res.add(ExitDamaged)
	}
	// Every event of the files is seen once and never kept, each stream
	// through a builder of its own, so that memory does not grow with
	// the inputs.
	builders, r, err := readSelected(ctx, sel, errw,
		func(ev *bepfile.Event, known *bepfile.Peeked) (bool, bepfile.Peeked, bool) {
			return invocation.ClassifyFor(ev, known, wants)
		},
		func(s *bepfile.Stream) *invocation.Builder { return invocation.NewBuilderFor(s, wants) },
		func(b *invocation.Builder, s *bepfile.Stream, ev *bepfile.Event, p *bepfile.Peeked) {
			if err := b.AddPeeked(ev, p); err != nil {
				damaged(fmt.Errorf("stream %s: %w", s.Key, err))
			}
		},
		(*invocation.Builder).Skip)
	if err != nil {
		return nil, nil, err
	}
	res.add(r.code)
	var invs []*invocation.Invocation
	built := map[*invocation.Builder]*invocation.Invocation{} // a stream named twice is built once
	for _, b := range builders {
		inv := built[b]
		if inv == nil {
			inv = b.Invocation()
			built[b] = inv
		}
		if inv.BazelEvents > 0 {
			invs = append(invs, inv)
		}
	}
	// What the events hold that bes does not know, once per field (values
	// of Bazel's JSON file were noticed by name when it was read).
	notices := &bepfile.Notices{}
	for _, inv := range invs {
		for _, line := range notices.New(invNames{}.cell(inv.InvocationID, inv.StreamKey), inv.Unknown) {
			fmt.Fprintf(errw, "bes: %s: %s\n", cmd, line)
		}
	}
	slices.SortStableFunc(invs, func(x, y *invocation.Invocation) int {
		return cmp.Or(x.Start.Compare(y.Start), cmp.Compare(x.StreamKey, y.StreamKey))
	})
	if len(invs) == 0 {
		if res.code == ExitPartial {
			// A file cut inside its first event (Bazel killed at once):
			// an invocation that did not finish, whatever the cut.
			fmt.Fprintf(errw, "bes: %s: the input was cut before its first whole event: the invocation did not finish\n", cmd)
			res.add(ExitIncomplete)
			return invs, res, nil
		}
		noInvocation(cmd, res, errw)
	}
	return invs, res, nil
}

// noInvocation says that no stream has Bazel events, and exits 7.
func noInvocation(cmd string, res *outcome, errw io.Writer) {
	fmt.Fprintf(errw, "bes: %s: no stream with Bazel build events to report on\n", cmd)
	res.add(ExitNoData)
}

// viewsReadFacts is false in the tests that compare the views from the
// facts with the views from the events.
var viewsReadFacts = true

// loadFacts is loadInvocations for the views that can be answered from
// the facts a backend keeps of its streams (store.FactsReader): for
// STREAMs and --match alone, it returns the facts of the streams selected
// that have Bazel events, ordered as loadInvocations orders them (start
// time, then key), and reads no stream whose facts the catalog holds.
// ok is false, and the view must call loadInvocations, when the facts
// cannot answer as the events would: FILEs are given, the backend keeps
// no facts, a stream's facts say it holds what bes could not decode or
// does not know (those are reported from the events), or the arguments
// are wrong (loadInvocations says how).
func loadFacts(ctx context.Context, cmd string, opts viewOptions, args []string, errw io.Writer) (fs []*store.Facts, res *outcome, ok bool) {
	if !viewsReadFacts {
		return nil, nil, false
	}
	re, err := regexp.Compile(opts.Match)
	if err != nil {
		return nil, nil, false
	}
	files, refs := splitArgs(args)
	if len(files) > 0 || len(refs) == 0 && opts.Match == "" {
		return nil, nil, false
	}
	st, err := openStore(opts.Store)
	if err != nil {
		return nil, nil, false
	}
	defer st.Close()
	fr, isFR := st.(store.FactsReader)
	if !isFR {
		return nil, nil, false
	}
	entries, err := selectStored(ctx, st, selection{Store: opts.Store, Match: re, Refs: refs})
	if err != nil {
		return nil, nil, false
	}
	all := make([]*store.Facts, len(entries))
	if fl, many := st.(store.FactsLister); many {
		keys := make([]string, len(entries))
		for i, e := range entries {
			keys[i] = e.Key
		}
		if all, err = fl.ManyFacts(ctx, keys); err != nil {
			return nil, nil, false // reading the streams says what
		}
	} else {
		for i, e := range entries {
			if all[i], err = fr.Facts(ctx, e.Key); err != nil {
				return nil, nil, false
			}
		}
	}
	for _, f := range all {
		if f == nil {
			continue // no Bazel events
		}
		if f.Damaged {
			return nil, nil, false
		}
		fs = append(fs, f)
	}
	slices.SortStableFunc(fs, func(x, y *store.Facts) int {
		return cmp.Or(x.Start.Compare(y.Start), cmp.Compare(x.Key, y.Key))
	})
	res = &outcome{}
	if len(fs) == 0 {
		noInvocation(cmd, res, errw)
	}
	return fs, res, true
}

// invocationStatus is the exit status one invocation calls for, from its
// verdict (invocation.Invocation.Verdict).
func invocationStatus(inv *invocation.Invocation) int {
	return verdictStatus(inv.Verdict())
}

// verdictStatus is the exit status a verdict calls for.
func verdictStatus(v invocation.Verdict) int {
	switch v {
	case invocation.VerdictDidNotFinish:
		return ExitIncomplete
	case invocation.VerdictTestsFailed:
		return ExitTestFail
	case invocation.VerdictBuildFailed:
		return ExitBuildFail
	}
	return ExitOK
}

// gateHelp documents the exit statuses of summary, tests and failures.
const gateHelp = `CI GATING: the verdict follows Bazel's own exit code (BuildFinished):
   8  the invocation did not finish: no BuildFinished and no last message
      (Bazel killed, out of memory, a CI timeout, the file cut short); it
      never passes, and its tests that never reported count as failing
   6  Bazel's exit code is not SUCCESS and a test failed, timed out or never
      reported, or the exit code is TESTS_FAILED (a flaky test passed)
   5  Bazel's exit code is not SUCCESS otherwise, or the stream ended without
      BuildFinished (Bazel refused the command: its ERROR line is in failures)
   9  no failure, but some events could not be decoded (one stderr line each)
   7  nothing to report on
   0  Bazel's exit code is SUCCESS (an aborted event after it is listed by
      failures but does not fail the gate)
Over several streams the gravest wins (8, 6, 5, 9, 3, 7, 0). The status does
not depend on filters such as --status.`

// invNames says how a view names the invocations it shows: whether there
// are several (tables then need an INVOCATION column), and which
// invocation ids several of the streams carry (the .bep and the BES
// capture of one run), whose rows are then named by stream key.
type invNames struct {
	multi  bool
	shared map[string]bool
	madeUp bool // several of the ids are made up
}

// namesOf returns how to name the invocations invs in a table.
func namesOf(invs []*invocation.Invocation) invNames {
	ids := make([]string, len(invs))
	for i, inv := range invs {
		ids[i] = inv.InvocationID
	}
	return namesOfIDs(ids)
}

// namesOfIDs is namesOf for the invocations whose ids are ids.
func namesOfIDs(ids []string) invNames {
	made := 0
	for _, id := range ids {
		if bepfile.IsSynthesizedID(id) {
			made++
		}
	}
	return invNames{multi: len(ids) > 1, shared: sharedInvocations(ids), madeUp: made > 1}
}

// cell names an invocation in a table: its id, or "(no invocation id)"
// when bes made the id up (bepfile.IsSynthesizedID: Bazel gave none); its
// stream's key when another stream shown carries the same id, or when
// several shown have made-up ids.
func (n invNames) cell(id, stream string) string {
	switch {
	case id == "", n.shared[id]:
		return stream
	case n.madeUp && bepfile.IsSynthesizedID(id):
		return stream
	}
	return shownInvocationID(id)
}

// withInvocation puts an INVOCATION column first when several
// invocations are shown.
func withInvocation[T any](n invNames, inv func(T) (id, stream string), cols []column[T]) []column[T] {
	if !n.multi {
		return cols
	}
	return append([]column[T]{{"INVOCATION", func(r T) string { return n.cell(inv(r)) }}}, cols...)
}

// timePtr returns a pointer to t in UTC, nil for the zero time.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func formatTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// formatSeconds renders a duration in seconds as Go does, to the
// millisecond: "329ms", "4.221s".
func formatSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// cellText is the first line of s, shortened to at most maxCell runes,
// for a table cell; JSON keeps the whole text.
func cellText(s string) string {
	const maxCell = 200
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i]) + " …"
	}
	if utf8.RuneCountInString(s) > maxCell {
		r := []rune(s)
		s = string(r[:maxCell-1]) + "…"
	}
	return s
}

// orEmpty returns s, or an empty non-nil slice, so that JSON prints [].
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
