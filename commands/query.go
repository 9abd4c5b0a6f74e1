package commands

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepjson"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/query"
)

type queryOptions struct {
	Store    string
	Format   string
	Match    string
	MatchSet bool // --match was given (an empty REGEX matches every stream)
	Kinds    []string
	Label    string
	LabelSet bool
	Statuses []string
	Read     bepfile.Options
	// CostLimit is the CEL cost EXPR may spend on one event (--cost-limit;
	// 0: query.DefaultCostLimit).
	CostLimit uint64
}

// shortcuts reports whether a filter flag was given, which makes EXPR
// optional.
func (o *queryOptions) shortcuts() bool {
	return len(o.Kinds) > 0 || o.LabelSet || len(o.Statuses) > 0
}

func newQueryCommand() *cli.Command {
	return &cli.Command{
		Name:      "query",
		Aliases:   []string{"q"},
		Usage:     "print the events for which a CEL expression holds",
		ArgsUsage: "EXPR [STREAM...] [FILE...]",
		Description: commandHelp(`Prints the events of streams or files for which EXPR, an expression in CEL
(the Common Expression Language, https://cel.dev), is true, in the formats
of dump. STREAM is a full key, a unique key prefix, or an invocation id of a
stored stream; --match REGEX adds every stored stream whose key the regular
expression matches anywhere. An argument that names an existing file is read
as an input instead, and no store is touched (--match then picks among the
files' streams).

EXPR is compiled once, then evaluated on each event, with these variables:
   kind      string: Bazel's payload name, as dump shows it: testResult,
             testSummary, completed (a target completed), configured,
             action, aborted, progress, ...; for events that are not Bazel
             events, the envelope's: componentStreamFinished, buildEnqueued,
             invocationAttemptStarted, ...
   label     string: the target label of the event's id, "" if none
   seq       int: the sequence number
   time      timestamp or null: the envelope's event time (null in Bazel's
             own files)
   stream    string: the stream key
   event     build_event_stream.BuildEvent, decoded; fields have their proto
             names: event.test_result.status, event.completed.success.
             Empty for events that are not Bazel events
   envelope  google.devtools.build.v1.OrderedBuildEvent, decoded
Enum values are ints and can be named like build_event_stream.TestStatus.FAILED,
TestStatus.FAILED, or just FAILED (protobuf's own scoping). The payload is
decoded only when the expression reaches event: put the cheap tests first
(kind == "testResult" && ...) and only those events are decoded.

--kind, --label and --status select events without an expression; they
combine with each other and with EXPR (all must hold), and then EXPR may be
left out. --status takes test statuses (PASSED, FLAKY, TIMEOUT, FAILED,
INCOMPLETE, REMOTE_FAILURE, FAILED_TO_BUILD, TOOL_HALTED_BEFORE_TESTING,
NO_STATUS; of testResult and of testSummary events) and target statuses
(SUCCESS, FAILED; of completed events), in any case. When a filter flag is
given, the first argument that is not a file is EXPR if it is a valid
expression, else a STREAM.

A mistake in EXPR is reported with its line and column (exit 2). An
expression that fails on some event (a missing map key, an index out of
range) stops the query with an error naming the stream and the sequence
number (exit 1): guard it, e.g. size(l) > 0 && l[0] == ...

Each evaluation of EXPR may spend --cost-limit (default 1000000) in CEL's
count of operations: a test on a field costs under 10, a comprehension such
as exists() about 7 per element. An expression over it on some event (nested
map()s multiply their cost) stops the query with one error naming the stream
and sequence number (exit 10), before it can take the machine's memory.

Like grep, query exits 0 when some event matched and 7 when none did, so
CI can gate on it: "bes query --kind testResult --status failed,timeout
build.bep" exits 0 and lists them when a test failed or timed out, and 7
when none did.

EXAMPLES:
   bes query 'kind == "testResult" && event.test_result.status != PASSED' build.bep
   bes query --kind testResult --status failed,timeout build.bep
   bes query --label '^//tests:' 'event.test_summary.total_run_count > 1' 5d2e1f
   bes query 'kind == "action" && !event.action.success' --match '\.3\.' -o ndjson
   bes query 'time != null && time > timestamp("2026-11-01T00:00:00Z")' capture.obe`),
		Flags: append([]cli.Flag{
			storeFlag(),
			formatFlag(formatTable, formatJSON, formatNDJSON, formatOBE),
			&cli.StringFlag{Name: "match", Aliases: []string{"m"}, Usage: "also query the streams whose key matches `REGEX` (unanchored)"},
			&cli.StringSliceFlag{Name: "kind", Aliases: []string{"k"}, Usage: "keep events of kind `K` (Bazel's payload name, e.g. testResult); repeatable or comma-separated"},
			&cli.StringFlag{Name: "label", Aliases: []string{"l"}, Usage: "keep events whose target label matches `REGEX` (unanchored)"},
			&cli.StringSliceFlag{Name: "status", Aliases: []string{"s"}, Usage: "keep test results and summaries with test status `S` (passed, flaky, timeout, failed, ...) and completed targets with SUCCESS or FAILED; repeatable or comma-separated"},
			&cli.Uint64Flag{Name: "cost-limit", Value: query.DefaultCostLimit, Usage: "stop with exit 10 when EXPR spends more than `N` (CEL's cost: operations, list elements) on one event"},
		}, inputFlags()...),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			opts := queryOptions{
				Store:     c.String("store"),
				Format:    c.String("format"),
				Match:     c.String("match"),
				MatchSet:  c.IsSet("match"),
				Kinds:     c.StringSlice("kind"),
				Label:     c.String("label"),
				LabelSet:  c.IsSet("label"),
				Statuses:  c.StringSlice("status"),
				Read:      readOptions(c),
				CostLimit: c.Uint64("cost-limit"),
			}
			if opts.CostLimit == 0 {
				return &usageError{msg: "--cost-limit: want a positive number"}
			}
			return runQuery(c.Context, opts, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runQuery(ctx context.Context, opts queryOptions, args []string, w, errw io.Writer) error {
	filters, err := shortcutFilters(opts)
	if err != nil {
		return err
	}
	errw = &lockedWriter{w: errw}
	dw := newDumpWriter(opts.Format, errw, &bepfile.Notices{})
	// What the expression's decoding of an event finds is reported as
	// the printing's is: once per event.
	report := query.WithDecodeReport(func(st *store.Stream, ev *bepfile.Event, d bepfile.Damage, err error) {
		dw.log.report(st.Info(), ev, &bepjson.Report{Damage: d, Err: err})
	})
	expr, rest, candidate, exprErr, err := splitExpr(opts, args, report, query.WithContext(ctx), query.WithCostLimit(opts.CostLimit))
	if err != nil {
		return err
	}
	if expr != nil {
		filters = append(filters, expr)
	}
	match, err := regexp.Compile(opts.Match)
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--match: %v", err), cause: err}
	}
	files, refs := splitArgs(rest)
	if err := checkInputs(files); err != nil {
		return err
	}
	// Standard input and pipes are read from a copy, in bounded memory.
	files, cleanup, err := spoolInputs(files)
	if err != nil {
		return err
	}
	defer cleanup()
	var (
		streams []*store.Stream
		res     = &outcome{}
	)
	if len(files) > 0 && (opts.Format != formatJSON || boundedReads) {
		if done, err := queryFiles(ctx, opts, dw, files, refs, match, candidate, exprErr, filters, w, errw); done {
			return err
		}
	}
	if len(files) > 0 {
		mem, r, err := dw.readFiles(ctx, files, opts.Read, errw)
		if err != nil {
			return err
		}
		res = r
		if exprErr != nil {
			if _, err := selectStreams(mem, []string{candidate}); errors.Is(err, store.ErrNotFound) {
				return neitherError(candidate, exprErr)
			}
		}
		streams, err = queryStreams(mem, refs, opts.MatchSet, match)
		if err != nil {
			return err
		}
	} else {
		if len(refs) == 0 && !opts.MatchSet {
			return &usageError{msg: "query: name a STREAM (key, key prefix or invocation id), --match REGEX, or a FILE"}
		}
		st, err := openStore(opts.Store)
		if err != nil {
			return err
		}
		defer st.Close()
		if exprErr != nil {
			if entries, err := st.Lookup(ctx, candidate); len(entries) == 0 && (err == nil || errors.Is(err, store.ErrNotFound)) {
				return neitherError(candidate, exprErr)
			}
		}
		mem, err := resolveRefs(ctx, st, refs, errw)
		if err != nil {
			return err
		}
		if opts.MatchSet {
			if err := loadMatching(ctx, st, match, mem, errw); err != nil {
				return err
			}
		}
		streams = mem.Streams()
	}

	matched := 0
	counted := countingFilter(filters, &matched)
	if err := dw.write(ctx, w, streams, counted); err != nil {
		var ee *query.EvalError
		if errors.As(err, &ee) {
			return fmt.Errorf("query: %w", ee)
		}
		return err
	}
	if matched == 0 {
		res.add(ExitNoData)
	}
	return dw.outcome(res).err()
}

// queryFiles queries files event by event as they are read, holding no
// stream (issues 12 and 13), when the files can be read twice and hold
// their streams in key order, each stream's events together (Bazel's own
// files do): the order a query of streams in key order prints; one file
// whose streams are interleaved (a BES capture) is read by groupedEvents. done is
// false when they cannot be queried so; runQuery then reads them into
// memory. The table keeps the rows of the matching events only; json is
// written element by element as the matches come (bepjson.WriteJSONFrom).
func queryFiles(ctx context.Context, opts queryOptions, dw *dumpWriter, files, refs []string, match *regexp.Regexp,
	candidate string, exprErr error, filters []store.Filter, w, errw io.Writer) (done bool, err error) {
	if err := checkInputs(files); err != nil {
		return true, err
	}
	infos, ordered, ok := fileStreams(ctx, files, opts.Read)
	if !ok || !ordered && (len(files) > 1 || !boundedReads) {
		return false, ctx.Err()
	}
	if exprErr != nil {
		if _, err := selectStreamInfos(infos, []string{candidate}); errors.Is(err, store.ErrNotFound) {
			return true, neitherError(candidate, exprErr)
		}
	}
	picked := infos
	if len(refs) > 0 || opts.MatchSet {
		named := map[string]bool{}
		if len(refs) > 0 {
			sel, err := selectStreamInfos(infos, refs)
			if err != nil {
				return true, err
			}
			for _, s := range sel {
				named[s.Key] = true
			}
		}
		picked = nil
		for _, s := range infos {
			if named[s.Key] || opts.MatchSet && match.MatchString(s.Key) {
				picked = append(picked, s)
			}
		}
	}
	keep := make(map[string]bool, len(picked))
	for _, s := range picked {
		keep[s.Key] = true
	}
	matched := 0
	counted := countingFilter(filters, &matched)
	var res *outcome
	own := opts.Format == formatNDJSON // ndjson encodes on other goroutines
	src := dw.fileEvents(ctx, files, opts.Read, errw, false, own, keep, counted, &res)
	if !ordered {
		// One file of interleaved streams (a BES capture).
		src = dw.groupedEvents(ctx, files[0], opts.Read, errw, false, own, false, picked, counted, &res)
	}
	switch opts.Format {
	case formatNDJSON, formatOBE:
		err = dw.writeFrom(ctx, w, src)
	case formatJSON:
		bw := bufio.NewWriterSize(w, 64<<10)
		if err = bepjson.WriteJSONFrom(bw, src, dw.jsonOptions()); err == nil {
			err = bw.Flush()
		}
	default:
		err = dw.dumpTableFrom(w, len(picked) > 1, false, src)
	}
	if err != nil {
		var ee *query.EvalError
		if errors.As(err, &ee) {
			return true, fmt.Errorf("query: %w", ee)
		}
		return true, err
	}
	if matched == 0 {
		res.add(ExitNoData)
	}
	return true, dw.outcome(res).err()
}

// shortcutFilters turns --kind, --label and --status into filters, the
// cheapest first.
func shortcutFilters(opts queryOptions) ([]store.Filter, error) {
	var fs []store.Filter
	if len(opts.Kinds) > 0 {
		f, err := query.Kind(opts.Kinds...)
		if err != nil {
			return nil, &usageError{msg: "--kind: " + err.Error(), cause: err}
		}
		fs = append(fs, f)
	}
	if opts.LabelSet {
		f, err := query.Label(opts.Label)
		if err != nil {
			return nil, &usageError{msg: "--label: " + err.Error(), cause: err}
		}
		fs = append(fs, f)
	}
	if len(opts.Statuses) > 0 {
		f, err := query.Status(opts.Statuses...)
		if err != nil {
			return nil, &usageError{msg: "--status: " + err.Error(), cause: err}
		}
		fs = append(fs, f)
	}
	return fs, nil
}

// splitExpr takes EXPR out of the arguments and compiles it. Without a
// filter flag, EXPR is the first argument and must compile. With one, EXPR
// is optional: the first argument that is not a file is EXPR when it
// compiles; otherwise it stays a STREAM, returned as candidate with the
// reason it is no expression (exprErr).
func splitExpr(opts queryOptions, args []string, copts ...query.Option) (expr *query.Filter, rest []string, candidate string, exprErr error, err error) {
	if !opts.shortcuts() {
		if len(args) == 0 {
			return nil, nil, "", nil, &usageError{msg: "query: name an EXPR (a CEL expression such as 'kind == \"testResult\"'), or select with --kind, --label or --status"}
		}
		if isInputFile(args[0]) {
			return nil, nil, "", nil, &usageError{msg: fmt.Sprintf("query: %s is a file: give the EXPR first, or select with --kind, --label or --status", args[0])}
		}
		f, err := query.Compile(args[0], copts...)
		if err != nil {
			return nil, nil, "", nil, &usageError{msg: "query: " + err.Error(), cause: err}
		}
		return f, args[1:], "", nil, nil
	}
	for i, a := range args {
		if isInputFile(a) {
			continue
		}
		f, err := query.Compile(a, copts...)
		if err != nil {
			return nil, args, a, err, nil
		}
		return f, append(args[:i:i], args[i+1:]...), "", nil, nil
	}
	return nil, args, "", nil, nil
}

// neitherError reports an argument that names no stream and does not
// compile as an expression.
func neitherError(arg string, exprErr error) error {
	return &usageError{msg: fmt.Sprintf("query: %q is neither a stream nor a valid EXPR: %v", arg, exprErr), cause: exprErr}
}

// isInputFile reports whether splitArgs takes a as a file.
func isInputFile(a string) bool {
	if a == "-" {
		return true
	}
	fi, err := os.Stat(a)
	return err == nil && !fi.IsDir()
}

// queryStreams picks the streams of files to query: those refs name and
// those whose key match matches when withMatch; every stream when neither
// is given.
func queryStreams(mem *store.Storage, refs []string, withMatch bool, match *regexp.Regexp) ([]*store.Stream, error) {
	if len(refs) == 0 && !withMatch {
		return mem.Streams(), nil
	}
	picked := map[string]bool{}
	if len(refs) > 0 {
		named, err := selectStreams(mem, refs)
		if err != nil {
			return nil, err
		}
		for _, s := range named {
			picked[s.Key()] = true
		}
	}
	var out []*store.Stream
	for _, s := range mem.Streams() {
		if picked[s.Key()] || withMatch && match.MatchString(s.Key()) {
			out = append(out, s)
		}
	}
	return out, nil
}

// loadMatching adds to mem every stored stream whose key match matches and
// that mem does not hold yet (a damaged one as far as loadStored reads it).
func loadMatching(ctx context.Context, st store.Backend, match *regexp.Regexp, mem *store.Storage, errw io.Writer) error {
	var entries []*store.Entry
	err := st.ListMatching(ctx, match.MatchString, func(e *store.Entry) error {
		if match.MatchString(e.Key) {
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, err := mem.Lookup(e.Key); err == nil {
			continue
		}
		s, err := loadStored(ctx, st, e, errw)
		if err != nil {
			return err
		}
		if err := mem.Add(s); err != nil {
			return err
		}
	}
	return nil
}

// countingFilter is the conjunction of filters (every event when there is
// none) that counts in *matched the events it keeps: the exit status of
// query (7 when none matched).
func countingFilter(filters []store.Filter, matched *int) store.Filter {
	filter := query.And(filters...)
	return store.FilterFunc(func(st *store.Stream, ev *bepfile.Event) (bool, error) {
		ok := true
		var err error
		if filter != nil {
			ok, err = filter.Match(st, ev)
		}
		if ok {
			*matched++
		}
		return ok, err
	})
}
