package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepjson"
	"github.com/bes-cli/bes/bepfile/scan"
	rendering "github.com/bes-cli/bes/commands/render"
	"github.com/bes-cli/bes/store"
)

// fileStreams is a first, quick pass over files (issues 12 and 13): the
// streams they hold, sorted by key, and whether reading the files again
// meets them in that order, each stream's events together (inKeyOrder).
// ok is false when a file cannot be read twice (standard input, a pipe
// such as bash's <(zcat f)); then streams is nil and the caller reads the
// files into memory as before. A file that is cut short ends its part of
// the pass; the second pass reports it.
func fileStreams(ctx context.Context, files []string, opts bepfile.Options) (streams []*bepfile.Stream, ordered, ok bool) {
	if !rereadable(files) {
		return nil, false, false
	}
	opts.Reuse = true
	sc := &scan.Scanner{Options: opts, Open: openInput}
	var (
		cur  *bepfile.Stream
		last string
		met  = map[string]bool{}
	)
	ordered = true
	for _, name := range files {
		err := sc.File(ctx, name, func(s *bepfile.Stream, _ *bepfile.Event) error {
			if s == cur {
				return nil
			}
			cur = s
			if met[s.Key] {
				ordered = false
				return nil
			}
			if s.Key <= last {
				ordered = false
			}
			met[s.Key], last = true, s.Key
			streams = append(streams, s)
			return nil
		})
		if ctx.Err() != nil || err != nil && errors.Is(err, context.Canceled) {
			return nil, false, false
		}
	}
	slices.SortFunc(streams, func(a, b *bepfile.Stream) int { return strings.Compare(a.Key, b.Key) })
	return streams, ordered, true
}

// rereadable reports whether every file is a regular file, which a
// second reading finds as the first did: not standard input, nor a pipe
// (bash's <(zcat f), /dev/fd/63), which the first reading drains.
func rereadable(files []string) bool {
	for _, name := range files {
		if fi, err := os.Stat(name); name == "-" || err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// spooled maps each temporary copy spoolInputs made to the name of the
// input it copies. Its keys are unique paths, so that commands running at
// once (tests) do not meet.
var spooled sync.Map

// openInput opens a file of the command line: a copy spoolInputs made under
// its input's name ("<stdin>" for standard input), else the file itself.
func openInput(name string, opts bepfile.Options) (*bepfile.Reader, error) {
	if in, ok := spooled.Load(name); ok {
		return bepfile.OpenAs(name, in.(string), opts)
	}
	return bepfile.Open(name, opts)
}

// spoolInputs copies each input that cannot be read twice (standard input
// "-", a pipe such as bash's <(zcat f)) to a temporary file in
// os.TempDir(), byte for byte as it comes: a compressed input stays
// compressed (a 97 KB zstd stream that expands to 1 GiB takes 97 KB of
// disk). The commands then read it as they read regular files, event by
// event in memory bounded independently of its size, where they used to
// hold all of it in memory (issue 13: 2.6 GB for `bes query` of that
// stream on standard input). It returns files with each such input
// replaced by its copy, which openInput opens under the input's name, and
// a function that removes the copies. Other files, and names that are no
// file, are left as they are.
func spoolInputs(files []string) (out []string, cleanup func(), err error) {
	var made []string
	cleanup = func() {
		for _, p := range made {
			spooled.Delete(p)
			os.Remove(p)
		}
	}
	out = slices.Clone(files)
	for i, name := range files {
		var src *os.File
		display := name
		if name == "-" {
			src, display = os.Stdin, "<stdin>"
		} else if fi, err := os.Stat(name); err != nil || fi.Mode().IsRegular() || fi.IsDir() {
			continue
		}
		if src == nil {
			if src, err = os.Open(name); err != nil {
				cleanup()
				return nil, nil, err
			}
		}
		tmp, err := os.CreateTemp("", "bes-input-*")
		if err == nil {
			made = append(made, tmp.Name())
			_, err = io.Copy(tmp, src)
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
		}
		if src != os.Stdin {
			src.Close()
		}
		if err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("%s: copying it to a temporary file, to read it twice: %w", display, err)
		}
		spooled.Store(tmp.Name(), display)
		out[i] = tmp.Name()
	}
	return out, cleanup, nil
}

// ascendingKeys reports whether the streams are in strictly ascending key
// order, which a single pass over files in key order gives.
func ascendingKeys(streams []*bepfile.Stream) bool {
	for i := 1; i < len(streams); i++ {
		if streams[i-1].Key >= streams[i].Key {
			return false
		}
	}
	return true
}

// fileEvents is the bepjson.Source of the events of the streams keep names
// (by key) that f matches (all when f is nil), read from files as they
// come, one at a time, holding none: the files must hold those streams in
// key order (fileStreams). The frames the readers skip are reported, not
// passed on (a filter cannot match them; the table has no row for them).
// f sees each stream as a *store.Stream without events, and an error of
// f is worded as store.Stream.Query words it. The outcome of the reading
// is stored in *res. A quiet reading reports nothing (errw is ignored):
// dumpTableFiles's first.
//
// Each event passed to f and fn is a new *bepfile.Event (damageLog tells
// events apart by pointer) whose bytes are the reader's, valid during the
// call only; with own, fn gets events whose bytes are their own, which it
// may keep (ndjson encodes them on other goroutines), and only the events
// fn gets are copied.
func (dw *dumpWriter) fileEvents(ctx context.Context, files []string, opts bepfile.Options, errw io.Writer, quiet, own bool,
	keep map[string]bool, f store.Filter, res **outcome) bepjson.Source {
	opts.Reuse = true
	return func(fn func(bepjson.Item) error) error {
		var (
			cur  *bepfile.Stream
			st   *store.Stream
			take bool
			n    int // index of the event in its stream
		)
		ew, notices := errw, dw.log.notices
		if quiet {
			ew, notices = io.Discard, &bepfile.Notices{}
		}
		sc := newScanner(opts, ew)
		sc.Notices = notices
		r, err := scanAll(ctx, sc, files, ew, func(s *bepfile.Stream, ev *bepfile.Event) error {
			if s != cur {
				cur, take, n = s, keep[s.Key], 0
				if take {
					st = store.NewStreamFromInfo(s)
					if !quiet {
						dw.log.setSource(s.Key, sc.Reader().Name())
					}
				}
			}
			i := n
			n++
			if !take {
				return nil
			}
			e := *ev
			ev = &e
			if f != nil {
				ok, err := f.Match(st, ev)
				if err != nil {
					return fmt.Errorf("store: query %q: event %d: %w", st.Key(), i, err)
				}
				if !ok {
					return nil
				}
			}
			if own {
				ev.Payload, ev.Raw = bytes.Clone(ev.Payload), bytes.Clone(ev.Raw)
			}
			return fn(bepjson.Item{Stream: s, Event: ev})
		})
		*res = r
		return err
	}
}

// dumpTableFrom prints one row per event of src: sequence number, time,
// kind and a summary of its id (bepfile.Describe); the TIME column is left
// out when no event has a time (Bazel's own files carry none in their
// envelope), and multi says whether the STREAM column is shown. Each event
// is checked as the JSON formats would decode it (bepjson.Inspect), and
// what that finds reported. With twice, src is run twice, the first time to
// measure the columns, the second to print each row as it comes, so that
// no row is held (the events of files, read again); src must then give
// the same events both times. Otherwise the rows are kept until the
// columns are known.
func (dw *dumpWriter) dumpTableFrom(w io.Writer, multi, twice bool, src bepjson.Source) error {
	hdr := []string{"STREAM", "SEQ", "TIME", "KIND", "ID"}
	row := func(it bepjson.Item) []string {
		r := describeEvent(it.Event)
		return []string{it.Stream.Key, fmt.Sprint(r.Seq), r.Time, r.Kind, r.ID}
	}
	if !twice {
		var rows [][]string
		anyTime := false
		err := src(func(it bepjson.Item) error {
			rep := bepjson.Inspect(it.Event)
			dw.log.report(it.Stream, it.Event, &rep)
			r := row(it)
			anyTime = anyTime || r[2] != ""
			rows = append(rows, r)
			return nil
		})
		if err != nil {
			return err
		}
		t := rendering.NewTable(w)
		keep := tableColumns[string](anyTime, multi)
		t.Header(keep(hdr))
		for _, r := range rows {
			t.Append(keep(r))
		}
		return t.Flush()
	}
	// First pass: which columns and how wide.
	var (
		anyTime bool
		layout  rendering.Layout
	)
	layout.Measure(hdr)
	err := src(func(it bepjson.Item) error {
		r := row(it)
		anyTime = anyTime || r[2] != ""
		layout.Measure(r)
		return nil
	})
	if err != nil {
		return err
	}
	keep := tableColumns[string](anyTime, multi)
	layout.Select(tableColumns[int](anyTime, multi))
	lw := layout.Writer(w)
	lw.Row(keep(hdr))
	err = src(func(it bepjson.Item) error {
		rep := bepjson.Inspect(it.Event)
		dw.log.report(it.Stream, it.Event, &rep)
		lw.Row(keep(row(it)))
		return nil
	})
	if err != nil {
		return err
	}
	return lw.Flush()
}

// tableColumns returns the function that keeps the columns of a dump
// table's row: without TIME when no event has one, without STREAM when
// there is one stream.
func tableColumns[T any](anyTime, multi bool) func([]T) []T {
	return func(cells []T) []T {
		out := cells
		if !anyTime {
			out = append(out[:2:2], out[3:]...)
		}
		if !multi {
			out = out[1:]
		}
		return out
	}
}

// groupBudget bounds the bytes of events groupedEvents holds at once
// (counting 128 bytes more per event for its bookkeeping).
var groupBudget int64 = 16 << 20

// boundedReads is false in the tests that compare the readings of issue
// 13 (groupedEvents, query's json as it reads) with the reading of the
// streams into memory they replace.
var boundedReads = true

// groupedEvents is fileEvents for one file whose streams are interleaved
// (a BES capture, whose tool and lifecycle streams come event by event;
// issue 13: their readers held the whole file): the events of the streams
// picked (in key order) that f matches (all when f is nil) are given
// stream after stream, each stream's events in the file's order, as reading
// the file into memory and querying its streams in key order gives them.
// The file is read first to report what it holds (the notes and damage a
// reading finds, on errw, unless quiet; the outcome in *res; the frames it
// skipped, given at the end when trailing) and to count each stream's
// bytes, then once per batch of streams whose events fit groupBudget
// together, holding that batch's events; a stream over the budget is a
// batch of its own, whose events are given as they are read. Memory is so
// bounded by groupBudget, whatever the file's size; reading time grows with
// the number of batches.
func (dw *dumpWriter) groupedEvents(ctx context.Context, file string, opts bepfile.Options, errw io.Writer, quiet, own, trailing bool,
	picked []*bepfile.Stream, f store.Filter, res **outcome) bepjson.Source {
	return func(fn func(bepjson.Item) error) error {
		size := map[string]int64{}
		for _, s := range picked {
			size[s.Key] = 0
		}
		// The first reading: what the file holds, reported as a reading
		// into memory reports it, and each picked stream's bytes.
		var skipped []*bepfile.Error
		sopts := opts
		sopts.Reuse = true
		var sc *scan.Scanner
		ew := errw
		if quiet {
			ew = io.Discard
			sc = newScanner(sopts, ew)
			sc.Notices = &bepfile.Notices{}
		} else {
			sc = dw.scanner(sopts, errw, func(e *bepfile.Error) { skipped = append(skipped, e) })
		}
		r, err := scanAll(ctx, sc, []string{file}, ew, func(s *bepfile.Stream, ev *bepfile.Event) error {
			if n, ok := size[s.Key]; ok {
				size[s.Key] = n + int64(len(ev.Payload)+len(ev.Raw)) + 128
			}
			return nil
		})
		*res = r
		if err != nil {
			return err
		}
		for i := 0; i < len(picked); {
			j, sum := i+1, size[picked[i].Key]
			for j < len(picked) && sum+size[picked[j].Key] <= groupBudget {
				sum += size[picked[j].Key]
				j++
			}
			if err := dw.groupPass(ctx, file, opts, quiet, own, picked[i:j], f, fn); err != nil {
				return err
			}
			i = j
		}
		if trailing {
			for _, e := range skipped {
				if err := fn(bepjson.Item{Bad: e}); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// groupPass reads file once for groupedEvents and gives the events of
// batch, stream after stream: a batch of one stream as they are read, a
// larger one once the reading is done. What the reading finds is not
// reported again.
func (dw *dumpWriter) groupPass(ctx context.Context, file string, opts bepfile.Options, quiet, own bool,
	batch []*bepfile.Stream, f store.Filter, fn func(bepjson.Item) error) error {
	type held struct {
		st     *store.Stream
		info   *bepfile.Stream
		n      int // events met
		events []*bepfile.Event
	}
	in := make(map[string]*held, len(batch))
	for _, s := range batch {
		in[s.Key] = &held{}
	}
	direct := len(batch) == 1
	emit := func(h *held, i int, ev *bepfile.Event) error {
		if f != nil {
			ok, err := f.Match(h.st, ev)
			if err != nil {
				return fmt.Errorf("store: query %q: event %d: %w", h.st.Key(), i, err)
			}
			if !ok {
				return nil
			}
		}
		return fn(bepjson.Item{Stream: h.info, Event: ev})
	}
	opts.Reuse = true
	sc := newScanner(opts, io.Discard)
	sc.Notices = &bepfile.Notices{}
	_, err := scanAll(ctx, sc, []string{file}, io.Discard, func(s *bepfile.Stream, ev *bepfile.Event) error {
		h := in[s.Key]
		if h == nil {
			return nil
		}
		if h.info == nil {
			h.info, h.st = s, store.NewStreamFromInfo(s)
			if !quiet {
				dw.log.setSource(s.Key, sc.Reader().Name())
			}
		}
		e := *ev
		if !direct || own {
			e.Payload, e.Raw = bytes.Clone(ev.Payload), bytes.Clone(ev.Raw)
		}
		i := h.n
		h.n++
		if direct {
			return emit(h, i, &e)
		}
		h.events = append(h.events, &e)
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range batch {
		h := in[s.Key]
		for i, ev := range h.events {
			if err := emit(h, i, ev); err != nil {
				return err
			}
			h.events[i] = nil
		}
	}
	return nil
}
