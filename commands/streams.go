package commands

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/local"
)

type streamsOptions struct {
	Store  string
	Match  string
	Format string
	Read   bepfile.Options
}

// streamRow is one stream as `bes streams` prints it.
type streamRow struct {
	Key          string     `json:"key"`
	BuildID      string     `json:"build_id"`
	InvocationID string     `json:"invocation_id"`
	Component    string     `json:"component"`
	Events       int64      `json:"events"`
	Complete     bool       `json:"complete"`
	Command      string     `json:"command,omitempty"`
	Result       string     `json:"result,omitempty"`
	ExitCode     *int32     `json:"exit_code,omitempty"`
	Start        *time.Time `json:"start,omitempty"`
	Duration     *float64   `json:"duration_seconds,omitempty"`
	Source       string     `json:"source,omitempty"`
	// InvocationIDSynthesized is set when Bazel gave no invocation id
	// and bes made InvocationID up (bepfile.SynthesizedIDPrefix).
	InvocationIDSynthesized bool `json:"invocation_id_synthesized,omitempty"`
}

var streamColumns = []column[streamRow]{
	{"KEY", func(r streamRow) string { return r.Key }},
	{"BUILD ID", func(r streamRow) string { return r.BuildID }},
	{"INVOCATION ID", func(r streamRow) string { return shownInvocationID(r.InvocationID) }},
	{"COMPONENT", func(r streamRow) string { return r.Component }},
	{"EVENTS", func(r streamRow) string { return fmt.Sprint(r.Events) }},
	{"COMMAND", func(r streamRow) string { return r.Command }},
	{"RESULT", func(r streamRow) string {
		res := r.Result
		if !r.Complete {
			if res == "" {
				return "partial"
			}
			res += " (partial)"
		}
		return res
	}},
	{"START", func(r streamRow) string {
		if r.Start == nil {
			return ""
		}
		return r.Start.UTC().Format(time.RFC3339)
	}},
	{"DURATION", func(r streamRow) string {
		if r.Duration == nil {
			return ""
		}
		return (time.Duration(*r.Duration * float64(time.Second))).Round(time.Millisecond).String()
	}},
}

func newStreamsCommand() *cli.Command {
	return &cli.Command{
		Name:      "streams",
		Aliases:   []string{"ls"},
		Usage:     "list streams, optionally those whose key matches a regex",
		ArgsUsage: "[FILE...]",
		Description: commandHelp(`Lists the streams of the store (answered from its index, without reading
the streams themselves), or of the FILEs given, which are read directly and
touch no store. --match keeps the streams whose key the regular expression
matches anywhere (like BuildGrid's get_matching_streams and Python's
re.search; the syntax is Go's RE2: no backreferences or lookaround).

Columns: key, build id, invocation id ("(no invocation id)" when Bazel gave
none and bes made one up: nouuid-…), component, events, Bazel command,
result (Bazel's exit code name; "partial" when the stream is incomplete),
start time and duration; and the source file when two tool streams share
an invocation id (the .bep and a BES capture of one run).

EXAMPLES:
   bes streams
   bes streams --match '\.3\.' --format json
   bes streams --match 5d2e build.bep other.bep`),
		Flags: append([]cli.Flag{
			storeFlag(),
			&cli.StringFlag{Name: "match", Aliases: []string{"m"}, Usage: "keep streams whose key matches `REGEX` (unanchored)"},
			formatFlag(formatTable, formatJSON, formatNDJSON),
		}, inputFlags()...),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			opts := streamsOptions{
				Store:  c.String("store"),
				Match:  c.String("match"),
				Format: c.String("format"),
				Read:   readOptions(c),
			}
			return runStreams(c.Context, opts, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runStreams(ctx context.Context, opts streamsOptions, args []string, w, errw io.Writer) error {
	re, err := regexp.Compile(opts.Match)
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--match: %v", err), cause: err}
	}
	files, refs := splitArgs(args)
	if len(refs) > 0 {
		return &usageError{msg: fmt.Sprintf("streams: no such file: %s (use --match to select streams)", refs[0])}
	}
	var rows []streamRow
	if len(files) > 0 {
		entries, res, err := scanStreamEntries(ctx, files, opts.Read, errw, re.MatchString)
		if err != nil {
			return err
		}
		for _, e := range entries {
			rows = append(rows, rowFromEntry(e))
		}
		if err := render(w, opts.Format, rows, streamColumnsFor(rows)); err != nil {
			return err
		}
		return res.err()
	}
	st, err := openStore(opts.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	err = st.ListMatching(ctx, re.MatchString, func(e *store.Entry) error {
		rows = append(rows, rowFromEntry(e))
		return nil
	})
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		warnUnlisted(ctx, st, errw)
	}
	return render(w, opts.Format, rows, streamColumnsFor(rows))
}

// streamColumnsFor returns the columns of the table of rows: with a SOURCE
// column when two of the streams share an invocation id (the .bep and a
// BES capture of one run), so that they can be told apart.
func streamColumnsFor(rows []streamRow) []column[streamRow] {
	ids := make([]string, 0, len(rows))
	for _, r := range rows {
		if r.Component == componentName(int32(buildpb.StreamId_TOOL)) {
			ids = append(ids, r.InvocationID)
		}
	}
	if sharedInvocations(ids) == nil {
		return streamColumns
	}
	return append(slices.Clone(streamColumns), column[streamRow]{"SOURCE", func(r streamRow) string { return r.Source }})
}

// scanStreamEntries reads the files once, event by event, and describes
// each stream whose key keep accepts as the store's index would (store.Meta
// of its events, local.NewEntry), with the file it was read from as Source;
// sorted by key. Only the per-stream Meta is held, never the events, so
// memory grows with the number of streams, not with the files' size (issue
// 13). Read errors are handled as readFiles handles them.
func scanStreamEntries(ctx context.Context, files []string, opts bepfile.Options, errw io.Writer, keep func(string) bool) ([]*store.Entry, *outcome, error) {
	type seen struct {
		info *bepfile.Stream
		meta store.Meta
	}
	var (
		byKey = map[string]*seen{}
		cur   *bepfile.Stream
		at    *seen
	)
	opts.Reuse = true // Meta copies what it keeps
	sc := newScanner(opts, errw)
	res, err := scanAll(ctx, sc, files, errw, func(s *bepfile.Stream, ev *bepfile.Event) error {
		if s != cur {
			cur = s
			if at = byKey[s.Key]; at == nil {
				at = &seen{info: s}
				byKey[s.Key] = at
			}
		}
		at.meta.Observe(ev)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	out := make([]*store.Entry, 0, len(byKey))
	for key, sn := range byKey {
		if !keep(key) {
			continue
		}
		e := local.NewEntry(sn.info, &sn.meta)
		e.Source = sc.Sources()[key]
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *store.Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, res, nil
}

func rowFromEntry(e *store.Entry) streamRow {
	r := streamRow{
		Key:          e.Key,
		BuildID:      e.BuildID,
		InvocationID: e.InvocationID,
		Component:    componentName(e.Component),
		Events:       e.Events,
		Complete:     e.Complete,
		Command:      e.Command,
		Result:       e.Result,
		Source:       e.Source,

		InvocationIDSynthesized: bepfile.IsSynthesizedID(e.InvocationID),
	}
	if e.HasExitCode {
		code := e.ExitCode
		r.ExitCode = &code
	}
	if !e.Start.IsZero() {
		t := e.Start.UTC()
		r.Start = &t
		if !e.Finish.IsZero() {
			d := e.Finish.Sub(e.Start).Seconds()
			r.Duration = &d
		}
	}
	return r
}

func componentName(c int32) string {
	if n, ok := buildpb.StreamId_BuildComponent_name[c]; ok {
		return n
	}
	return fmt.Sprint(c)
}
