package scan

import (
	"context"
	"errors"

	"github.com/bes-cli/bes/bepfile"
)

// item is one event of a pipelined scan (see Pipeline), a count of
// events left out, or a note.
type item struct {
	s       *bepfile.Stream
	ev      bepfile.Event  // its bytes are in the batch's chunk
	peek    bepfile.Peeked // what keep found in ev, if peeked; aliases ev
	peeked  bool
	skipped int
	note    *Note
}

// Keep decides which events a pipelined scan keeps: known, if not nil, is
// what the reader found in ev.Payload (bepfile.Reader.Peeked). It may
// return what it peeked in the event (peeked true), handed on to Func
// with the kept event.
type Keep func(ev *bepfile.Event, known *bepfile.Peeked) (keep bool, p bepfile.Peeked, peeked bool)

// Func is called with each kept event, and p (nil if none) what keep
// peeked in it.
type Func func(s *bepfile.Stream, ev *bepfile.Event, p *bepfile.Peeked) error

// batchLen is how many items the reading goroutine hands over at once,
// and chunkLen the size of the chunks it copies their bytes into.
const (
	batchLen = 1024
	chunkLen = 256 << 10
)

// A buf is a batch of items and the chunks their events' bytes were
// copied into. Once the consuming goroutine has handled every item, it
// hands the buf back, and the reading goroutine fills it again: a scan
// then allocates a few batches and chunks, not one per 1024 events.
type buf struct {
	items  []item
	chunks [][]byte // in use, in order
	spare  [][]byte // free for reuse
}

// newBuf returns old emptied for reuse, or a new buf if old is nil.
func newBuf(old *buf) *buf {
	if old == nil {
		return &buf{items: make([]item, 0, batchLen)}
	}
	clear(old.items) // drop the references to streams and chunks
	old.items = old.items[:0]
	old.spare = append(old.spare, old.chunks...)
	old.chunks = old.chunks[:0]
	return old
}

// chunk returns an empty chunk of at least n bytes, reused if one is free,
// and records it as in use.
func (b *buf) chunk(n int) []byte {
	var c []byte
	if k := len(b.spare); k > 0 && cap(b.spare[k-1]) >= n {
		c, b.spare = b.spare[k-1][:0], b.spare[:k-1]
	} else {
		c = make([]byte, 0, max(chunkLen, n))
	}
	b.chunks = append(b.chunks, c)
	return c
}

// Pipeline is File on two goroutines: one reads the file (with
// Options.Reuse set) and keeps the events keep accepts, copying them into
// batches; the caller's goroutine calls fn with each kept event (and what
// keep peeked in it), in order, skip with the number of events of a
// stream left out in between, and Note with each note. The reading
// goroutine thus takes the I/O, the framing and the filtering, and fn
// runs meanwhile on another core. fn must keep none of an event's bytes
// (nor the *Event) after it returns: they are reused for later events. An
// error of fn is returned as a *CallbackError. Pipeline sets Uses from
// keep: the repairs of an event it leaves out are not noted.
func (sc *Scanner) Pipeline(ctx context.Context, name string, keep Keep, fn Func, skip func(*bepfile.Stream, int)) error {
	sc.Uses = func(ev *bepfile.Event, p *bepfile.Peeked) bool {
		kept, _, _ := keep(ev, p)
		return kept
	}
	opts := sc.Options
	opts.Reuse = true // the reading goroutine copies what it keeps
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *buf, 4)
	free := make(chan *buf, 8) // handled batches, for reuse
	done := make(chan error, 1)
	go func() {
		defer close(batches)
		var (
			b     = newBuf(nil)
			batch []item // b.items
			chunk []byte // the chunk being filled, the last of b.chunks
		)
		flush := func() bool {
			if len(batch) == 0 {
				return true
			}
			b.items = batch
			select {
			case batches <- b:
			case <-ctx.Done():
				return false
			}
			select {
			case old := <-free:
				b = newBuf(old)
			default:
				b = newBuf(nil)
			}
			batch, chunk = b.items, nil
			return true
		}
		own := func(p []byte) []byte {
			if p == nil {
				return nil
			}
			if cap(chunk)-len(chunk) < len(p) {
				chunk = b.chunk(len(p))
			}
			i := len(chunk)
			chunk = append(chunk, p...)
			return chunk[i:len(chunk):len(chunk)]
		}
		add := func(it item) error {
			batch = append(batch, it)
			if len(batch) == batchLen && !flush() {
				return ctx.Err()
			}
			return nil
		}
		err := sc.each(ctx, name, opts, func(s *bepfile.Stream, ev *bepfile.Event) error {
			kept, p, peeked := keep(ev, sc.r.Peeked())
			if !kept {
				if n := len(batch); n > 0 && batch[n-1].s == s && batch[n-1].skipped > 0 {
					batch[n-1].skipped++
					return nil
				}
				return add(item{s: s, skipped: 1})
			}
			e := *ev
			e.Payload, e.Raw = own(ev.Payload), own(ev.Raw)
			// Only a peek of a compact payload is handed on: a whole
			// event's BuildEvent is found in Raw again.
			if peeked = peeked && ev.IsBazel(); peeked {
				p = p.Rebase(ev.Payload, e.Payload)
			}
			return add(item{s: s, ev: e, peek: p, peeked: peeked})
		}, func(n Note) { add(item{note: &n}) })
		if err == nil && !flush() {
			err = ctx.Err()
		}
		if err != nil {
			// A callback error of this goroutine is the context's.
			var ce *CallbackError
			if errors.As(err, &ce) {
				err = ce.Err
			}
		}
		flush()
		done <- err
	}()
	for b := range batches {
		for i := range b.items {
			it := &b.items[i]
			switch {
			case it.note != nil:
				sc.note(*it.note)
			case it.skipped > 0:
				skip(it.s, it.skipped)
			default:
				var p *bepfile.Peeked
				if it.peeked {
					p = &it.peek
				}
				if err := fn(it.s, &it.ev, p); err != nil {
					cancel()
					for range batches {
					}
					<-done
					return &CallbackError{err}
				}
			}
		}
		select { // fn kept none of its bytes: hand it back
		case free <- b:
		default:
		}
	}
	return <-done
}
