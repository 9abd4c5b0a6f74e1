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
	w.WriteString("[")
	written := 0
	enc := NewEncoder(o.Source)
	var b []byte
	for _, s := range streams {
		start := func() error {
			if written > 0 {
				w.WriteString(",")
			}
			written++
			id, err := jsonOpts.Marshal(s.Info.ID)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "\n  {\n    \"streamId\": %s,\n    \"events\": [", id)
			return nil
		}
		if !omitEmpty {
			if err := start(); err != nil {
				return err
			}
		}
		n := 0
		for ev, err := range s.Events {
			if err != nil {
				return err
			}
			var rep Report
			b, rep = enc.Append(b[:0], s.Info, ev)
			o.report(s.Info, ev, &rep)
			if n > 0 {
				w.WriteString(",")
			} else if omitEmpty {
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
		if !omitEmpty || n > 0 {
			w.WriteString("]\n  }")
		}
	}
	for _, e := range skipped {
		if written > 0 {
			w.WriteString(",")
		}
		written++
		b, _ = enc.AppendItem(b[:0], Item{Bad: e})
		w.WriteString("\n  ")
		w.Write(b)
	}
	if written > 0 {
		w.WriteString("\n")
	}
	w.WriteString("]\n")
	return nil
}
