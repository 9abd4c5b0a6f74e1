package store

import (
	"context"
	"fmt"
	"iter"
	"sync"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store/buildgridpb"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"
)

// Stream is one build event stream held in memory (BuildGrid's
// BuildEventStream): its identity and its events in the order they were
// published. A Stream is safe for concurrent use; appends never disturb
// readers that are iterating over earlier events.
type Stream struct {
	info *bepfile.Stream // immutable

	mu      sync.RWMutex
	events  []bepfile.Event // append-only: elements are never changed once added
	scratch []byte          // reused by Publish under mu
}

// newStream returns an empty stream for id.
func newStream(id *buildpb.StreamId) *Stream {
	return &Stream{info: streamInfo(id)}
}

// NewStreamFromInfo returns an empty stream with the given identity, e.g.
// one read back from a stream file whose IDBytes are kept exactly. info is
// kept, not copied, and must not be changed afterwards. The stream belongs
// to no Storage until it is passed to Storage.Add.
func NewStreamFromInfo(info *bepfile.Stream) *Stream {
	return &Stream{info: info}
}

// Key returns the stream key (see Key).
func (st *Stream) Key() string { return st.info.Key }

// ID returns the stream's id. The message is shared and must not be changed.
func (st *Stream) ID() *buildpb.StreamId { return st.info.ID }

// Info returns the stream's identity as bepfile describes it, needed to
// re-encode its events (bepfile.Event.AppendEncoding). It is shared and must
// not be changed.
func (st *Stream) Info() *bepfile.Stream { return st.info }

// Len returns the number of events in the stream.
func (st *Stream) Len() int {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return len(st.events)
}

// Publish appends an OrderedBuildEvent (BuildGrid's publish_event). The event
// is marshalled and kept in the compact form when that re-encodes to the same
// bytes, whole otherwise, so reading it back yields exactly proto.Marshal(ev).
// It returns an error wrapping ErrWrongStream, and appends nothing, when
// ev.StreamId's key is not the stream's key. Like BuildGrid, it does not
// look at sequence numbers: a re-sent event is appended again.
func (st *Stream) Publish(ev *buildpb.OrderedBuildEvent) error {
	if ev == nil {
		return fmt.Errorf("store: publish to %q: nil event", st.Key())
	}
	if k := Key(ev.GetStreamId()); k != st.Key() {
		return fmt.Errorf("store: publish event of stream %q to stream %q: %w", k, st.Key(), ErrWrongStream)
	}
	raw, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("store: publish to %q: marshal event %d: %w", st.Key(), ev.GetSequenceNumber(), err)
	}
	e := bepfile.Event{Seq: ev.GetSequenceNumber(), Raw: raw}
	if t := ev.GetEvent().GetEventTime(); t != nil {
		e.HasTime = true
		e.Time = bepfile.Timestamp{Seconds: t.GetSeconds(), Nanos: t.GetNanos()}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.scratch, _ = e.Compact(st.info, st.scratch)
	st.events = append(st.events, e)
	return nil
}

// Append appends an event that is already in bepfile form (compact or Raw),
// as a reader of files produces it. It is not checked against the stream:
// the caller vouches that it was read for this stream.
func (st *Stream) Append(ev bepfile.Event) {
	st.mu.Lock()
	st.events = append(st.events, ev)
	st.mu.Unlock()
}

// Filter selects events for Query.
type Filter interface {
	// Match reports whether ev of st is selected. An error ends the query.
	Match(st *Stream, ev *bepfile.Event) (bool, error)
}

// FilterFunc adapts a function to a Filter.
type FilterFunc func(st *Stream, ev *bepfile.Event) (bool, error)

// Match calls f.
func (f FilterFunc) Match(st *Stream, ev *bepfile.Event) (bool, error) { return f(st, ev) }

var _ Filter = FilterFunc(nil)

// Query iterates over the stream's events that f matches, in publication
// order (BuildGrid's query_events, with the filter BuildGrid never wrote).
// A nil f matches every event.
//
// The iterator works on a snapshot: the events present when iteration starts,
// taken under the lock; f and the loop body run without it, so they may call
// back into the stream. Each yielded *bepfile.Event is shared with the stream
// and must not be changed; the error is nil for events. If f fails, or ctx
// is cancelled, the iterator yields (nil, err) once and stops.
func (st *Stream) Query(ctx context.Context, f Filter) iter.Seq2[*bepfile.Event, error] {
	return func(yield func(*bepfile.Event, error) bool) {
		st.mu.RLock()
		evs := st.events[:len(st.events):len(st.events)]
		st.mu.RUnlock()
		for i := range evs {
			if err := ctx.Err(); err != nil {
				yield(nil, err)
				return
			}
			ev := &evs[i]
			if f != nil {
				ok, err := f.Match(st, ev)
				if err != nil {
					yield(nil, fmt.Errorf("store: query %q: event %d: %w", st.Key(), i, err))
					return
				}
				if !ok {
					continue
				}
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}

// ToProto returns the stream as BuildGrid's query API sends it
// (BuildGrid's to_grpc_message): its id and every event, decoded. Each
// event's Bazel payload stays an Any holding the original bytes, so
// marshalling an event again gives the bytes that were published (for
// events that proto.Marshal encodes canonically, which is every event bes
// receives over gRPC or reads from Bazel).
func (st *Stream) ToProto() (*buildgridpb.QueryEventStreamsResponse_BuildEventStream, error) {
	st.mu.RLock()
	evs := st.events[:len(st.events):len(st.events)]
	st.mu.RUnlock()
	out := &buildgridpb.QueryEventStreamsResponse_BuildEventStream{
		StreamId: cloneID(st.info.ID),
		Events:   make([]*buildpb.OrderedBuildEvent, 0, len(evs)),
	}
	var buf []byte
	for i := range evs {
		buf = evs[i].AppendEncoding(buf[:0], st.info)
		obe := &buildpb.OrderedBuildEvent{}
		if err := proto.Unmarshal(buf, obe); err != nil {
			return nil, fmt.Errorf("store: stream %q: decode event %d (seq %d): %w", st.Key(), i, evs[i].Seq, err)
		}
		out.Events = append(out.Events, obe)
	}
	return out, nil
}
