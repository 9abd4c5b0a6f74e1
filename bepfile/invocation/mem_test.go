package invocation

import (
	"context"
	"iter"
	"slices"
	"strings"

	"github.com/bes-cli/bes/bepfile"
)

// memStream is one stream held in memory for the tests, with the methods of
// store.Stream they use, so that bepfile/invocation's tests do not import
// store (a lower layer never imports a higher one).
type memStream struct {
	info   *bepfile.Stream
	events []bepfile.Event
}

func newMemStream(info *bepfile.Stream) *memStream { return &memStream{info: info} }

func (m *memStream) Key() string             { return m.info.Key }
func (m *memStream) Info() *bepfile.Stream   { return m.info }
func (m *memStream) Append(ev bepfile.Event) { m.events = append(m.events, ev) }

// Query yields every event in order, or ctx's error; the filter must be nil.
func (m *memStream) Query(ctx context.Context, filter any) iter.Seq2[*bepfile.Event, error] {
	if filter != nil {
		panic("memStream.Query: filters are not supported")
	}
	return func(yield func(*bepfile.Event, error) bool) {
		for i := range m.events {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			if !yield(&m.events[i], nil) {
				return
			}
		}
	}
}

// memStreams groups the events of an input by stream key.
type memStreams map[string]*memStream

func (ms memStreams) GetStreamFor(info *bepfile.Stream) *memStream {
	if m := ms[info.Key]; m != nil {
		return m
	}
	m := newMemStream(info)
	ms[info.Key] = m
	return m
}

// Streams returns the streams in key order.
func (ms memStreams) Streams() []*memStream {
	out := make([]*memStream, 0, len(ms))
	for _, m := range ms {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *memStream) int { return strings.Compare(a.Key(), b.Key()) })
	return out
}
