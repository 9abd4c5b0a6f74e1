package commands

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/store"
)

type dumpOptions struct {
	Store  string
	Format string
	Read   bepfile.Options
}

// eventRow is one event as the dump table prints it.
type eventRow struct {
	Stream string
	Seq    int64
	Time   string
	Kind   string
	ID     string
}

func newDumpCommand() *cli.Command {
	return &cli.Command{
		Name:      "dump",
		Usage:     "print every event of streams or BEP files",
		ArgsUsage: "[STREAM...] [FILE...]",
		Description: commandHelp(`Prints every event of the streams named: STREAM is a full key, a unique key
prefix, or an invocation id of a stored stream. An argument that names an
existing file is read as an input instead; with files and no STREAM every
stream in them is dumped, and no store is touched.

Formats: table (sequence number, time, kind — Bazel's payload name — and a
one-line summary of the event's id), ndjson (one OrderedBuildEvent per line,
protojson with the Bazel payload decoded under event.bazelEvent), json (an
array of BuildGrid BuildEventStream messages {streamId, events}), and obe
(varint-delimited OrderedBuildEvents, byte for byte what was ingested).

EXAMPLES:
   bes dump build.bep
   bes dump 5d2e1f --format ndjson | jq -c 'select(.event.bazelEvent.testResult)'
   bes dump 8f1c.3.5d2e1f --format obe > stream.obe`),
		Flags: append([]cli.Flag{
			storeFlag(),
			formatFlag(formatTable, formatJSON, formatNDJSON, formatOBE),
		}, inputFlags()...),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			opts := dumpOptions{
				Store:  c.String("store"),
				Format: c.String("format"),
				Read:   readOptions(c),
			}
			return runDump(c.Context, opts, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runDump(ctx context.Context, opts dumpOptions, args []string, w, errw io.Writer) error {
	files, refs := splitArgs(args)
	if len(files) == 0 && len(refs) == 0 {
		return &usageError{"dump: name a STREAM (key, key prefix or invocation id) or a FILE"}
	}
	if len(refs) == 0 && (opts.Format == formatNDJSON || opts.Format == formatOBE) && inKeyOrder(ctx, files, opts.Read) {
		// Every stream of the files, in the order they come: write each
		// event as it is read, holding none.
		var res *outcome
		read := opts.Read
		read.Reuse = false // the events are encoded on other goroutines
		src := func(fn func(*bepfile.Stream, *bepfile.Event) error) error {
			var err error
			res, err = scanFiles(ctx, files, read, errw, fn)
			return err
		}
		if err := writeDumpFrom(ctx, w, opts.Format, src); err != nil {
			return err
		}
		return res.err()
	}
	var (
		streams []*store.Stream
		res     = &outcome{}
	)
	if len(files) > 0 {
		mem, r, err := readFiles(ctx, files, opts.Read, errw)
		if err != nil {
			return err
		}
		res = r
		streams, err = selectStreams(mem, refs)
		if err != nil {
			return err
		}
	} else {
		st, err := openStore(opts.Store)
		if err != nil {
			return err
		}
		mem, err := resolveRefs(ctx, st, refs)
		if err != nil {
			return err
		}
		streams = mem.Streams()
	}
	if err := writeDump(ctx, w, opts.Format, streams, nil); err != nil {
		return err
	}
	return res.err()
}

// selectStreams keeps the streams of mem that refs name (all when none),
// by the rule stored streams are named by (store.ResolveRef).
func selectStreams(mem *store.Storage, refs []string) ([]*store.Stream, error) {
	all := mem.Streams()
	if len(refs) == 0 {
		return all, nil
	}
	var out []*store.Stream
	for _, ref := range refs {
		hits, err := pickByRef(all, ref, streamIDOf, "the files given")
		if err != nil {
			return nil, err
		}
		out = append(out, hits...)
	}
	return out, nil
}

// selectStreamInfos is selectStreams for the streams a scan of files met:
// the streams refs name (all when none), sorted by key within each ref.
func selectStreamInfos(all []*bepfile.Stream, refs []string) ([]*bepfile.Stream, error) {
	all = slices.Clone(all)
	slices.SortFunc(all, func(a, b *bepfile.Stream) int { return strings.Compare(a.Key, b.Key) })
	if len(refs) == 0 {
		return all, nil
	}
	var out []*bepfile.Stream
	for _, ref := range refs {
		hits, err := pickByRef(all, ref, infoIDOf, "the files given")
		if err != nil {
			return nil, err
		}
		out = append(out, hits...)
	}
	return out, nil
}

// inKeyOrder reports whether dumping the files event by event, as they are
// read, gives what dumping their streams one after the other in key order
// does (which a dump of files with several streams prints): whether every
// file can be read twice (no standard input), and a first, quick pass finds
// each stream's events together, the streams in ascending key order. A
// stream that an earlier file held is skipped on both passes. Bazel's own
// files (one invocation each) pass; a BES capture's interleaved streams do
// not.
func inKeyOrder(ctx context.Context, files []string, opts bepfile.Options) bool {
	if slices.Contains(files, "-") {
		return false
	}
	opts.Reuse = true
	// fileReader.each reads a stream of an earlier file once: it leaves
	// out a later copy, as the dump itself will.
	fr := &fileReader{opts: opts, from: map[string]string{}}
	var (
		cur  *bepfile.Stream
		last string              // key of the last stream met
		met  = map[string]bool{} // streams met
	)
	for _, name := range files {
		err := fr.each(ctx, name, func(s *bepfile.Stream, _ *bepfile.Event) error {
			if s == cur {
				return nil
			}
			cur = s
			if met[s.Key] || s.Key <= last {
				return errNotInKeyOrder
			}
			met[s.Key], last = true, s.Key
			return nil
		}, func(string) {})
		var fe *fnError
		if ctx.Err() != nil || errors.As(err, &fe) {
			return false
		}
		// Any other error (a file that does not open, or cut short) is
		// the second pass's to report, after the events before it.
	}
	return true
}

// errNotInKeyOrder ends inKeyOrder's pass at the first stream out of order.
var errNotInKeyOrder = errors.New("streams not in key order")

// eventSource calls fn with every event to dump, in order, and its stream;
// an error of fn ends it and is returned.
type eventSource func(fn func(*bepfile.Stream, *bepfile.Event) error) error

// storedEvents is the eventSource of the events of streams that f matches
// (all when f is nil), stream after stream.
func storedEvents(ctx context.Context, streams []*store.Stream, f store.Filter) eventSource {
	return func(fn func(*bepfile.Stream, *bepfile.Event) error) error {
		for _, s := range streams {
			info := s.Info()
			for ev, err := range s.Query(ctx, f) {
				if err != nil {
					return err
				}
				if err := fn(info, ev); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// writeDumpFrom writes the events of src in the format ndjson or obe.
func writeDumpFrom(ctx context.Context, w io.Writer, format string, src eventSource) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var err error
	if format == formatOBE {
		err = dumpOBE(bw, src)
	} else {
		err = dumpNDJSON(ctx, bw, src)
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// writeDump writes the events of streams that f matches (all when f is
// nil) in the format. With a filter, the json format leaves out the streams
// with no matching event.
func writeDump(ctx context.Context, w io.Writer, format string, streams []*store.Stream, f store.Filter) error {
	if format == formatOBE || format == formatNDJSON {
		return writeDumpFrom(ctx, w, format, storedEvents(ctx, streams, f))
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var err error
	switch format {
	case formatJSON:
		err = dumpJSON(ctx, bw, streams, f)
	default:
		err = dumpTable(ctx, bw, streams, f)
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

func dumpOBE(w *bufio.Writer, src eventSource) error {
	var buf []byte
	return src(func(s *bepfile.Stream, ev *bepfile.Event) error {
		buf = ev.AppendEncoding(buf[:0], s)
		var pfx [binary.MaxVarintLen64]byte
		w.Write(protowire.AppendVarint(pfx[:0], uint64(len(buf))))
		_, err := w.Write(buf)
		return err
	})
}

var jsonOpts = protojson.MarshalOptions{}

// ndjsonBatch is how many events a worker of dumpNDJSON encodes at a time.
const ndjsonBatch = 256

// dumpNDJSON writes one OrderedBuildEvent per line. The events are encoded
// by a worker per CPU, a batch at a time, and written in order.
func dumpNDJSON(ctx context.Context, w *bufio.Writer, src eventSource) error {
	type job struct {
		s        *bepfile.Stream
		evs      []*bepfile.Event
		queryErr error // reading the events failed after evs: set before the job is sent
		out      []byte
		err      error // the encoding failed: set by the worker
		done     chan struct{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := max(1, runtime.GOMAXPROCS(0))
	work := make(chan *job, 2*workers)
	order := make(chan *job, 4*workers)
	go func() {
		defer close(work)
		defer close(order)
		send := func(j *job) error {
			select {
			case order <- j:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case work <- j:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var j *job
		err := src(func(s *bepfile.Stream, ev *bepfile.Event) error {
			if j != nil && (j.s != s || len(j.evs) == ndjsonBatch) {
				if err := send(j); err != nil {
					return err
				}
				j = nil
			}
			if j == nil {
				j = &job{s: s, evs: make([]*bepfile.Event, 0, ndjsonBatch), done: make(chan struct{})}
			}
			j.evs = append(j.evs, ev)
			return nil
		})
		if err != nil && ctx.Err() != nil {
			return // the writer has stopped
		}
		if err != nil || j != nil {
			if j == nil {
				j = &job{done: make(chan struct{})}
			}
			j.queryErr = err
			send(j)
		}
	}()
	for range workers {
		go func() {
			enc := newNDJSONEncoder()
			for j := range work {
				for _, ev := range j.evs {
					if j.out, j.err = enc.append(j.out, j.s, ev); j.err != nil {
						j.err = fmt.Errorf("stream %s, event %d: %w", j.s.Key, ev.Seq, j.err)
						break
					}
					j.out = append(j.out, '\n')
				}
				close(j.done)
			}
		}()
	}
	for j := range order {
		<-j.done
		if j.err != nil {
			return j.err
		}
		if _, err := w.Write(j.out); err != nil {
			return err
		}
		if j.queryErr != nil {
			return j.queryErr
		}
	}
	return ctx.Err()
}

// ndjsonEncoder renders events as protojson OrderedBuildEvents. A Bazel
// event in compact form is written without building the envelope: the
// envelope's JSON is written directly and only the payload goes through
// protojson, decoded into a message that is reused; anything else takes
// the general path. Both give the same JSON values (TestNDJSONFastPath).
type ndjsonEncoder struct {
	ids map[*bepfile.Stream][]byte // the StreamId JSON of each stream
	msg *bes.BuildEvent
	buf []byte
}

func newNDJSONEncoder() *ndjsonEncoder {
	return &ndjsonEncoder{ids: map[*bepfile.Stream][]byte{}, msg: &bes.BuildEvent{}}
}

// append appends the JSON of ev, without a newline.
func (e *ndjsonEncoder) append(b []byte, s *bepfile.Stream, ev *bepfile.Event) ([]byte, error) {
	if ev.IsBazel() && s.TypeURL == bepfile.BazelEventTypeURL {
		if out, ok := e.appendFast(b, s, ev); ok {
			return out, nil
		}
	}
	obe, err := ev.OrderedBuildEvent(s)
	if err != nil {
		return b, err
	}
	return jsonOpts.MarshalAppend(b, obe)
}

func (e *ndjsonEncoder) appendFast(b []byte, s *bepfile.Stream, ev *bepfile.Event) ([]byte, bool) {
	proto.Reset(e.msg)
	if err := proto.Unmarshal(ev.Payload, e.msg); err != nil {
		return b, false
	}
	var err error
	e.buf, err = jsonOpts.MarshalAppend(e.buf[:0], e.msg)
	if err != nil {
		return b, false
	}
	id, ok := e.ids[s]
	if !ok {
		if id, err = jsonOpts.Marshal(s.ID); err != nil {
			return b, false
		}
		e.ids[s] = id
	}
	start := len(b)
	b = append(b, `{"streamId":`...)
	b = append(b, id...)
	if ev.Seq != 0 {
		b = append(b, `,"sequenceNumber":"`...)
		b = strconv.AppendInt(b, ev.Seq, 10)
		b = append(b, '"')
	}
	b = append(b, `,"event":{`...)
	if ev.HasTime {
		ts, ok := appendTimestamp(b, ev.Time)
		if !ok {
			return b[:start], false
		}
		b = append(ts, ',')
	}
	b = append(b, `"bazelEvent":{"@type":"`...)
	b = append(b, s.TypeURL...)
	b = append(b, '"')
	// The payload's members: its JSON object without the braces.
	p := bytes.TrimSpace(e.buf)
	if len(p) < 2 || p[0] != '{' || p[len(p)-1] != '}' {
		return b[:start], false
	}
	if p = bytes.TrimSpace(p[1 : len(p)-1]); len(p) > 0 {
		b = append(b, ',')
		b = append(b, p...)
	}
	return append(b, "}}}"...), true
}

// appendTimestamp appends a "eventTime" member as protojson writes a
// google.protobuf.Timestamp: RFC 3339 in UTC, with 0, 3, 6 or 9
// fractional digits. ok is false for a time protojson refuses.
func appendTimestamp(b []byte, ts bepfile.Timestamp) ([]byte, bool) {
	const minSec, maxSec = -62135596800, 253402300799 // 0001-01-01 to 9999-12-31
	if ts.Seconds < minSec || ts.Seconds > maxSec || ts.Nanos < 0 || ts.Nanos >= 1e9 {
		return b, false
	}
	t := time.Unix(ts.Seconds, int64(ts.Nanos)).UTC()
	x := t.Format("2006-01-02T15:04:05.000000000")
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, ".000")
	b = append(b, `"eventTime":"`...)
	b = append(b, x...)
	return append(b, `Z"`...), true
}

// dumpJSON writes one JSON array of BuildGrid BuildEventStream messages,
// streaming event by event rather than building the whole message. With a
// filter, a stream is written only once it has a matching event.
func dumpJSON(ctx context.Context, w *bufio.Writer, streams []*store.Stream, f store.Filter) error {
	w.WriteString("[")
	written := 0
	for _, s := range streams {
		start := func() error {
			if written > 0 {
				w.WriteString(",")
			}
			written++
			id, err := jsonOpts.Marshal(s.ID())
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "\n  {\n    \"streamId\": %s,\n    \"events\": [", id)
			return nil
		}
		if f == nil {
			if err := start(); err != nil {
				return err
			}
		}
		info := s.Info()
		n := 0
		for ev, err := range s.Query(ctx, f) {
			if err != nil {
				return err
			}
			obe, err := ev.OrderedBuildEvent(info)
			if err != nil {
				return fmt.Errorf("stream %s, event %d: %w", s.Key(), ev.Seq, err)
			}
			b, err := jsonOpts.Marshal(obe)
			if err != nil {
				return fmt.Errorf("stream %s, event %d: %w", s.Key(), ev.Seq, err)
			}
			if n > 0 {
				w.WriteString(",")
			} else if f != nil {
				if err := start(); err != nil {
					return err
				}
			}
			w.WriteString("\n      ")
			w.Write(b)
			n++
		}
		if n > 0 {
			w.WriteString("\n    ")
		}
		if f == nil || n > 0 {
			w.WriteString("]\n  }")
		}
	}
	if written > 0 {
		w.WriteString("\n")
	}
	w.WriteString("]\n")
	return nil
}

// dumpTable prints one row per event. The TIME column is left out when no
// event has a time (Bazel's own files carry none in their envelope).
func dumpTable(ctx context.Context, w io.Writer, streams []*store.Stream, f store.Filter) error {
	var rows [][]string
	anyTime := false
	multi := len(streams) > 1
	for _, s := range streams {
		info := s.Info()
		for ev, err := range s.Query(ctx, f) {
			if err != nil {
				return err
			}
			r := describeEvent(info, ev)
			anyTime = anyTime || r.Time != ""
			rows = append(rows, []string{s.Key(), fmt.Sprint(r.Seq), r.Time, r.Kind, r.ID})
		}
	}
	keep := func(cells []string) []string {
		out := cells
		if !anyTime {
			out = append(out[:2:2], out[3:]...)
		}
		if !multi {
			out = out[1:]
		}
		return out
	}
	t := newTable(w)
	t.header(keep([]string{"STREAM", "SEQ", "TIME", "KIND", "ID"}))
	for _, r := range rows {
		t.append(keep(r))
	}
	return t.flush()
}

func formatTimestamp(ts bepfile.Timestamp) string {
	return time.Unix(ts.Seconds, int64(ts.Nanos)).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
