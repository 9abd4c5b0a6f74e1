package commands

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile"
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

// selectStreams keeps the streams of mem that refs name (all when none).
func selectStreams(mem *store.Storage, refs []string) ([]*store.Stream, error) {
	all := mem.Streams()
	if len(refs) == 0 {
		return all, nil
	}
	var out []*store.Stream
	for _, ref := range refs {
		var hits []*store.Stream
		for _, s := range all {
			if matchesRef(s.Key(), s.ID().GetInvocationId(), ref) {
				hits = append(hits, s)
			}
		}
		if len(hits) == 0 {
			return nil, fmt.Errorf("%q: %w in the files given", ref, store.ErrNotFound)
		}
		out = append(out, hits...)
	}
	return out, nil
}

// matchesRef reports whether a stream reference names the stream: its full
// key, a prefix of its key, or its invocation id.
func matchesRef(key, invocationID, ref string) bool {
	return ref == invocationID || len(ref) <= len(key) && key[:len(ref)] == ref
}

// writeDump writes the events of streams that f matches (all when f is
// nil) in the format. With a filter, the json format leaves out the streams
// with no matching event.
func writeDump(ctx context.Context, w io.Writer, format string, streams []*store.Stream, f store.Filter) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var err error
	switch format {
	case formatOBE:
		err = dumpOBE(ctx, bw, streams, f)
	case formatNDJSON:
		err = dumpNDJSON(ctx, bw, streams, f)
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

func dumpOBE(ctx context.Context, w *bufio.Writer, streams []*store.Stream, f store.Filter) error {
	var buf []byte
	for _, s := range streams {
		info := s.Info()
		for ev, err := range s.Query(ctx, f) {
			if err != nil {
				return err
			}
			buf = ev.AppendEncoding(buf[:0], info)
			var pfx [binary.MaxVarintLen64]byte
			w.Write(protowire.AppendVarint(pfx[:0], uint64(len(buf))))
			w.Write(buf)
		}
	}
	return nil
}

var jsonOpts = protojson.MarshalOptions{}

func dumpNDJSON(ctx context.Context, w *bufio.Writer, streams []*store.Stream, f store.Filter) error {
	for _, s := range streams {
		info := s.Info()
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
			w.Write(b)
			w.WriteByte('\n')
		}
	}
	return nil
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
