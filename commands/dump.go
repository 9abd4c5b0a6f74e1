package commands

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepjson"
	"github.com/bes-cli/bes/bepfile/scan"
	"github.com/bes-cli/bes/store"
)

type dumpOptions struct {
	Store  string
	Format string
	Read   bepfile.Options
}

// eventRow is one event as the dump table prints it.
type eventRow struct {
	Seq  int64
	Time string
	Kind string
	ID   string
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

One bad event never costs the others: a string that is not UTF-8 is
printed with U+FFFD, a corrupt nested message with what decodes of it, a
payload of a type bes does not know as {"@type": URL, "value": BASE64},
and an event (or a frame) that cannot be decoded at all as an error
object {"error": ..., "sequenceNumber": ..., "file": ..., "offset": ...,
"index": ...} in JSON; each such event is one line on stderr (file, byte
offset, event index) and the exit status is 9. obe decodes nothing.

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
		return &usageError{msg: "dump: name a STREAM (key, key prefix or invocation id) or a FILE"}
	}
	if err := checkInputs(files); err != nil {
		return err
	}
	// Standard input and pipes are read from a copy, in bounded memory
	// (issue 13).
	files, cleanup, err := spoolInputs(files)
	if err != nil {
		return err
	}
	defer cleanup()
	errw = &lockedWriter{w: errw}
	dw := newDumpWriter(opts.Format, errw, &bepfile.Notices{})
	if len(refs) == 0 && (opts.Format == formatNDJSON || opts.Format == formatOBE) && inKeyOrder(ctx, files, opts.Read) {
		// Every stream of the files, in the order they come: write each
		// event as it is read, holding none.
		var res *outcome
		read := opts.Read
		read.Reuse = false // the events are encoded on other goroutines
		if err := dw.writeFrom(ctx, w, dw.scanFiles(ctx, files, read, errw, &res)); err != nil {
			return err
		}
		return dw.outcome(res).err()
	}
	if len(refs) == 0 && (opts.Format == formatNDJSON || opts.Format == formatOBE || opts.Format == formatJSON) && len(files) == 1 && boundedReads {
		// One file of interleaved streams (a BES capture), or any one
		// file in json: stream after stream in key order, then the
		// frames skipped, as the streams read into memory would be
		// written, in bounded memory (issue 13).
		if infos, _, ok := fileStreams(ctx, files, opts.Read); ok {
			var res *outcome
			var err error
			if opts.Format == formatJSON {
				bw := bufio.NewWriterSize(w, 64<<10)
				src := dw.groupedEvents(ctx, files[0], opts.Read, errw, false, false, true, infos, nil, &res)
				if err = bepjson.WriteJSONFrom(bw, src, dw.jsonOptions()); err == nil {
					err = bw.Flush()
				}
			} else {
				err = dw.writeFrom(ctx, w, dw.groupedEvents(ctx, files[0], opts.Read, errw, false, true, true, infos, nil, &res))
			}
			if err != nil {
				return err
			}
			return dw.outcome(res).err()
		}
	}
	if len(files) > 0 && opts.Format != formatJSON && opts.Format != formatNDJSON && opts.Format != formatOBE {
		if done, err := dumpTableFiles(ctx, opts, dw, files, refs, w, errw); done {
			return err
		}
	}
	var (
		streams []*store.Stream
		res     = &outcome{}
	)
	if len(files) > 0 {
		mem, r, err := dw.readFiles(ctx, files, opts.Read, errw)
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
		defer st.Close()
		mem, err := resolveRefs(ctx, st, refs, errw)
		if err != nil {
			return err
		}
		streams = mem.Streams()
	}
	if err := dw.write(ctx, w, streams, nil); err != nil {
		return err
	}
	return dw.outcome(res).err()
}

// dumpTableFiles prints the table of the streams of files that refs name
// (all when none) reading the files twice, event by event, holding no
// event nor row (issue 13): once to size the columns, once to print (one
// file of interleaved streams, a BES capture, by groupedEvents). done is
// false when the files cannot be read so (standard input, several files
// with streams interleaved or not in key order, refs naming streams out
// of key order); runDump then reads them into memory.
func dumpTableFiles(ctx context.Context, opts dumpOptions, dw *dumpWriter, files, refs []string, w, errw io.Writer) (done bool, err error) {
	if err := checkInputs(files); err != nil {
		return true, err
	}
	infos, ordered, ok := fileStreams(ctx, files, opts.Read)
	if !ok || !ordered && (len(files) > 1 || !boundedReads) {
		return false, ctx.Err()
	}
	picked, err := selectStreamInfos(infos, refs)
	if err != nil {
		return true, err
	}
	if !ascendingKeys(picked) {
		return false, nil
	}
	keep := make(map[string]bool, len(picked))
	for _, s := range picked {
		keep[s.Key] = true
	}
	var res *outcome
	first := true
	src := func(fn func(bepjson.Item) error) error {
		// Only the second reading reports what it finds.
		quiet := first
		first = false
		if !ordered {
			// One file of interleaved streams (a BES capture).
			return dw.groupedEvents(ctx, files[0], opts.Read, errw, quiet, false, false, picked, nil, &res)(fn)
		}
		return dw.fileEvents(ctx, files, opts.Read, errw, quiet, false, keep, nil, &res)(fn)
	}
	if err := dw.dumpTableFrom(w, len(picked) > 1, true, src); err != nil {
		return true, err
	}
	return true, dw.outcome(res).err()
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
// file can be read twice (rereadable: no standard input nor pipe), and a first, quick pass finds
// each stream's events together, the streams in ascending key order. A
// stream that an earlier file held is skipped on both passes. Bazel's own
// files (one invocation each) pass; a BES capture's interleaved streams do
// not.
func inKeyOrder(ctx context.Context, files []string, opts bepfile.Options) bool {
	if !rereadable(files) {
		return false
	}
	opts.Reuse = true
	// A scan.Scanner reads a stream of an earlier file once: it leaves
	// out a later copy, as the dump itself will.
	sc := &scan.Scanner{Options: opts, Open: openInput}
	var (
		cur  *bepfile.Stream
		last string              // key of the last stream met
		met  = map[string]bool{} // streams met
	)
	for _, name := range files {
		err := sc.File(ctx, name, func(s *bepfile.Stream, _ *bepfile.Event) error {
			if s == cur {
				return nil
			}
			cur = s
			if met[s.Key] || s.Key <= last {
				return errNotInKeyOrder
			}
			met[s.Key], last = true, s.Key
			return nil
		})
		var fe *scan.CallbackError
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

// dumpWriter writes events in one format, reading each by the rule every
// command reads with (bepfile.DecodeBuildEvent): a damaged event is
// written repaired, an undecodable one as an error object, and log says
// so on standard error.
type dumpWriter struct {
	format string
	log    *damageLog
	// skipped are the frames the readers skipped that a dump of stored
	// streams writes after them (see trailing).
	skipped []*bepfile.Error
}

// newDumpWriter returns a dumpWriter for format reporting on errw, which
// must be a *lockedWriter.
func newDumpWriter(format string, errw io.Writer, notices *bepfile.Notices) *dumpWriter {
	return &dumpWriter{format: format, log: newDamageLog(errw, notices)}
}

// readFiles reads every stream of the files into a new in-memory storage,
// as the package's readFiles does, and records for dw which file each
// stream came from and which frames were skipped.
func (dw *dumpWriter) readFiles(ctx context.Context, files []string, opts bepfile.Options, errw io.Writer) (*store.Storage, *outcome, error) {
	mem := store.New()
	var cur *bepfile.Stream
	var st *store.Stream
	opts.Reuse = false // the storage keeps the events
	sc := dw.scanner(opts, errw, func(e *bepfile.Error) { dw.skipped = append(dw.skipped, e) })
	res, err := scanAll(ctx, sc, files, errw, func(s *bepfile.Stream, ev *bepfile.Event) error {
		if s != cur {
			cur, st = s, mem.GetStreamFor(s)
		}
		st.Append(*ev)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for key, file := range sc.Sources() {
		dw.log.setSource(key, file)
	}
	return mem, res, nil
}

// scanFiles is the bepjson.Source of the events of files as they are read
// (see inKeyOrder), with the frames the readers skipped in their place.
// The outcome of the reading is stored in *res.
func (dw *dumpWriter) scanFiles(ctx context.Context, files []string, opts bepfile.Options, errw io.Writer, res **outcome) bepjson.Source {
	return func(fn func(bepjson.Item) error) error {
		var (
			cur   *bepfile.Stream
			fnErr error // of fn called for a skipped frame
			sc    *scan.Scanner
		)
		sc = dw.scanner(opts, errw, func(e *bepfile.Error) {
			if fnErr == nil {
				fnErr = fn(bepjson.Item{Bad: e})
			}
		})
		r, err := scanAll(ctx, sc, files, errw, func(s *bepfile.Stream, ev *bepfile.Event) error {
			if fnErr != nil {
				return fnErr
			}
			if s != cur {
				cur = s
				dw.log.setSource(s.Key, sc.Reader().Name())
			}
			return fn(bepjson.Item{Stream: s, Event: ev})
		})
		*res = r
		if err == nil {
			err = fnErr
		}
		return err
	}
}

// scanner returns the scan.Scanner that reads files for dw: the notes
// are reported on errw, with dw's notices, and bad, if not nil, is called
// with each frame the readers skipped, after its line.
func (dw *dumpWriter) scanner(opts bepfile.Options, errw io.Writer, bad func(*bepfile.Error)) *scan.Scanner {
	sc := newScanner(opts, errw)
	sc.Notices = dw.log.notices
	sc.Note = func(n scan.Note) {
		fmt.Fprint(errw, noteLine(n))
		if n.Kind == scan.Skipped && bad != nil {
			bad(n.Bad)
		}
	}
	return sc
}

// storedEvents is the bepjson.Source of the events of streams that f matches
// (all when f is nil), stream after stream, then, without a filter, the
// frames the readers skipped (which belong to no stream they could name).
func (dw *dumpWriter) storedEvents(ctx context.Context, streams []*store.Stream, f store.Filter) bepjson.Source {
	return func(fn func(bepjson.Item) error) error {
		for _, s := range streams {
			info := s.Info()
			for ev, err := range s.Query(ctx, f) {
				if err != nil {
					return err
				}
				if err := fn(bepjson.Item{Stream: info, Event: ev}); err != nil {
					return err
				}
			}
		}
		for _, e := range dw.trailing(f) {
			if err := fn(bepjson.Item{Bad: e}); err != nil {
				return err
			}
		}
		return nil
	}
}

// trailing returns the skipped frames a dump writes after the streams:
// none for a query (f not nil), whose filter they cannot pass.
func (dw *dumpWriter) trailing(f store.Filter) []*bepfile.Error {
	if f != nil {
		return nil
	}
	return dw.skipped
}

// writeFrom writes the items of src in the format ndjson or obe.
func (dw *dumpWriter) writeFrom(ctx context.Context, w io.Writer, src bepjson.Source) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var err error
	if dw.format == formatOBE {
		err = dumpOBE(bw, src)
	} else {
		err = bepjson.WriteNDJSON(ctx, bw, src, dw.jsonOptions())
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// write writes the events of streams that f matches (all when f is nil)
// in the format. With a filter, the json format leaves out the streams
// with no matching event.
func (dw *dumpWriter) write(ctx context.Context, w io.Writer, streams []*store.Stream, f store.Filter) error {
	if dw.format == formatOBE || dw.format == formatNDJSON {
		return dw.writeFrom(ctx, w, dw.storedEvents(ctx, streams, f))
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var err error
	switch dw.format {
	case formatJSON:
		err = dw.dumpJSON(ctx, bw, streams, f)
	default:
		err = dw.dumpTable(ctx, bw, streams, f)
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// outcome adds to the outcome of reading the inputs (nil: nothing to
// add) what writing the events found: ExitDamaged when an event was
// damaged.
func (dw *dumpWriter) outcome(res *outcome) *outcome {
	if res == nil {
		res = &outcome{}
	}
	if dw.log.sawDamage() {
		res.add(ExitDamaged)
	}
	return res
}

// dumpOBE writes the events byte for byte; it decodes nothing, so it
// judges nothing: skipped frames are left out.
func dumpOBE(w *bufio.Writer, src bepjson.Source) error {
	var buf []byte
	return src(func(it bepjson.Item) error {
		if it.Event == nil {
			return nil
		}
		buf = it.Event.AppendEncoding(buf[:0], it.Stream)
		var pfx [binary.MaxVarintLen64]byte
		w.Write(protowire.AppendVarint(pfx[:0], uint64(len(buf))))
		_, err := w.Write(buf)
		return err
	})
}

// dumpJSON writes one JSON array of BuildGrid BuildEventStream messages
// (bepjson.WriteJSON), then, without a filter, the error objects of the
// frames the readers skipped. With a filter, a stream is written only once
// it has a matching event.
func (dw *dumpWriter) dumpJSON(ctx context.Context, w *bufio.Writer, streams []*store.Stream, f store.Filter) error {
	ss := make([]bepjson.Stream, len(streams))
	for i, s := range streams {
		ss[i] = bepjson.Stream{Info: s.Info(), Events: s.Query(ctx, f)}
	}
	return bepjson.WriteJSON(w, ss, dw.trailing(f), f != nil, dw.jsonOptions())
}

// jsonOptions are the bepjson options of the dump: error objects name the
// files the streams were read from, and what decoding each event found is
// reported on standard error.
func (dw *dumpWriter) jsonOptions() bepjson.Options {
	return bepjson.Options{Source: dw.log.source, Report: dw.log.report}
}

// dumpTable prints one row per event of streams that f matches (all when
// f is nil), as dumpTableFrom does; the frames the readers skipped are
// said on standard error only.
func (dw *dumpWriter) dumpTable(ctx context.Context, w io.Writer, streams []*store.Stream, f store.Filter) error {
	events := dw.storedEvents(ctx, streams, f)
	src := func(fn func(bepjson.Item) error) error {
		return events(func(it bepjson.Item) error {
			if it.Event == nil {
				return nil
			}
			return fn(it)
		})
	}
	return dw.dumpTableFrom(w, len(streams) > 1, false, src)
}

// describeEvent renders one event as a table row (bepfile.Describe): the
// kind of its payload and a one-line summary of its id.
func describeEvent(ev *bepfile.Event) eventRow {
	d := bepfile.Describe(ev)
	r := eventRow{Seq: d.Seq, Kind: d.Kind, ID: d.ID}
	if d.HasTime {
		r.Time = formatTimestamp(d.Time)
	}
	return r
}

func formatTimestamp(ts bepfile.Timestamp) string {
	return time.Unix(ts.Seconds, int64(ts.Nanos)).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
