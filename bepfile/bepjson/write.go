package bepjson

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"iter"
	"runtime"

	"github.com/bes-cli/bes/bepfile"
)

// Source calls fn with every item to write, in order; an error of fn ends
// it and is returned.
type Source func(fn func(Item) error) error

// Options are what the writers need of their caller. Both fields may be
// nil.
type Options struct {
	// Source names the file a stream (by key) was read from, "" when
	// none, for the error objects (see Encoder). WriteNDJSON calls it
	// from several goroutines.
	Source func(key string) string
	// Report is told what decoding each event found, in the order the
	// events are written, on the writer's goroutine (never for a skipped
	// frame).
	Report func(s *bepfile.Stream, ev *bepfile.Event, rep *Report)
}

func (o *Options) report(s *bepfile.Stream, ev *bepfile.Event, rep *Report) {
	if o.Report != nil {
		o.Report(s, ev, rep)
	}
}

// ndjsonBatch is how many events a worker of WriteNDJSON encodes at a time.
const ndjsonBatch = 256

// WriteNDJSON writes one OrderedBuildEvent (or error object) per line for
// each item of src, in order. The events are encoded by a worker per CPU
// (GOMAXPROCS), a batch of 256 at a time, and written in order, with what
// their decoding found reported in order too; src runs on a goroutine of
// its own, so it must not share unsynchronized state with o.Report. It
// returns the first error of src, of w or of ctx; a batch is written whole
// or not at all, so w may be left with the lines before an error.
func WriteNDJSON(ctx context.Context, w io.Writer, src Source, o Options) error {
	type job struct {
		items    []Item
		queryErr error // reading the events failed after items: set before the job is sent
		out      []byte
		reps     []Report // set by the worker, one per item
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
		err := src(func(it Item) error {
			if j != nil && len(j.items) == ndjsonBatch {
				if err := send(j); err != nil {
					return err
				}
				j = nil
			}
			if j == nil {
				j = &job{items: make([]Item, 0, ndjsonBatch), done: make(chan struct{})}
			}
			j.items = append(j.items, it)
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
			enc := NewEncoder(o.Source)
			for j := range work {
				j.reps = make([]Report, len(j.items))
				for i, it := range j.items {
					j.out, j.reps[i] = enc.AppendItem(j.out, it)
					j.out = append(j.out, '\n')
				}
				close(j.done)
			}
		}()
	}
	for j := range order {
		<-j.done
		for i := range j.reps {
			if it := j.items[i]; it.Event != nil {
				o.report(it.Stream, it.Event, &j.reps[i])
			}
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

// Stream is one stream that WriteJSON writes: the stream and its events,
// in order (an error ends the writing).
type Stream struct {
	Info   *bepfile.Stream
	Events iter.Seq2[*bepfile.Event, error]
}

// WriteJSON writes one JSON array of BuildGrid BuildEventStream messages
// ({streamId, events}, indented), streaming event by event rather than
// building the whole message, then the error objects of the frames
// skipped (which belong to no stream a reader could name). With
// omitEmpty, a stream is written only once it has an event (a query
// leaves out the streams its filter selects nothing of). It returns the
// first error of an iterator; errors of w are left to its Flush.
func WriteJSON(w *bufio.Writer, streams []Stream, skipped []*bepfile.Error, omitEmpty bool, o Options) error {
	j := newJSONWriter(w, o)
	for _, s := range streams {
		if !omitEmpty {
			if err := j.startStream(s.Info); err != nil {
				return err
			}
		}
		for ev, err := range s.Events {
			if err != nil {
				return err
			}
			if err := j.event(s.Info, ev); err != nil {
				return err
			}
		}
		j.endStream()
	}
	for _, e := range skipped {
		j.skipped(e)
	}
	j.finish()
	return nil
}

// WriteJSONFrom writes the items of src as WriteJSON writes the streams
// that omit no event (omitEmpty): the events of one stream must come
// together, and each run of events of one stream (by key) is one
// BuildEventStream message, begun at its first event. A skipped frame is
// written as an error object where it comes. Nothing but the item being
// written is held, so memory does not grow with src (issue 13: bes query
// --format json held every event). It returns the first error of src;
// errors of w are left to its Flush.
func WriteJSONFrom(w *bufio.Writer, src Source, o Options) error {
	j := newJSONWriter(w, o)
	err := src(func(it Item) error {
		if it.Event == nil {
			j.endStream()
			if it.Bad != nil {
				j.skipped(it.Bad)
			}
			return nil
		}
		if j.cur != nil && j.cur.Key != it.Stream.Key {
			j.endStream()
		}
		return j.event(it.Stream, it.Event)
	})
	if err != nil {
		return err
	}
	j.endStream()
	j.finish()
	return nil
}

// jsonWriter writes the JSON array of WriteJSON and WriteJSONFrom.
type jsonWriter struct {
	w       *bufio.Writer
	o       Options
	enc     *Encoder
	b       []byte
	written int             // elements of the array written
	cur     *bepfile.Stream // the stream whose message is open, nil if none
	n       int             // events of cur written
}

func newJSONWriter(w *bufio.Writer, o Options) *jsonWriter {
	w.WriteString("[")
	return &jsonWriter{w: w, o: o, enc: NewEncoder(o.Source)}
}

// startStream opens the message of s.
func (j *jsonWriter) startStream(s *bepfile.Stream) error {
	if j.written > 0 {
		j.w.WriteString(",")
	}
	j.written++
	id, err := jsonOpts.Marshal(s.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(j.w, "\n  {\n    \"streamId\": %s,\n    \"events\": [", id)
	j.cur, j.n = s, 0
	return nil
}

// event writes ev of s, opening the message of s if none is open.
func (j *jsonWriter) event(s *bepfile.Stream, ev *bepfile.Event) error {
	var rep Report
	j.b, rep = j.enc.Append(j.b[:0], s, ev)
	j.o.report(s, ev, &rep)
	if j.cur == nil {
		if err := j.startStream(s); err != nil {
			return err
		}
	}
	if j.n > 0 {
		j.w.WriteString(",")
	}
	j.w.WriteString("\n      ")
	j.w.Write(j.b)
	j.n++
	return nil
}

// endStream closes the open message, if any.
func (j *jsonWriter) endStream() {
	if j.cur == nil {
		return
	}
	if j.n > 0 {
		j.w.WriteString("\n    ")
	}
	j.w.WriteString("]\n  }")
	j.cur = nil
}

// skipped writes the error object of a skipped frame.
func (j *jsonWriter) skipped(e *bepfile.Error) {
	if j.written > 0 {
		j.w.WriteString(",")
	}
	j.written++
	j.b, _ = j.enc.AppendItem(j.b[:0], Item{Bad: e})
	j.w.WriteString("\n  ")
	j.w.Write(j.b)
}

// finish closes the array.
func (j *jsonWriter) finish() {
	if j.written > 0 {
		j.w.WriteString("\n")
	}
	j.w.WriteString("]\n")
}
