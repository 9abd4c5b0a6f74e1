// Package server implements the gRPC services of `bes serve`: Google's Build
// Event Service (google.devtools.build.v1.PublishBuildEvent), as Bazel uses
// it, and BuildGrid's query API (buildgrid.v2.QueryBuildEvents).
//
// Streams received are kept in a store.Storage, as BuildGrid keeps them,
// and made durable by a Persister before they are acknowledged.
package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/wire"
	"github.com/bes-cli/bes/store"
)

// DefaultMaxBatch is the most events the server syncs and acknowledges
// together when a client sends faster than the disk syncs.
const DefaultMaxBatch = 1024

// Options configure the publish service.
type Options struct {
	// MaxEventSize is the largest OrderedBuildEvent accepted, in encoded
	// bytes; 0 means bepfile.DefaultMaxEventSize. A larger event is
	// refused with ResourceExhausted. (The gRPC server's own message limit
	// should be a little larger, for the request around it.)
	MaxEventSize int
	// Persister makes streams durable; nil keeps them in memory only.
	Persister Persister
	// Log gets one line per stream opened, continued and finished, and
	// per request refused; nil logs nothing. Writes are serialised.
	Log io.Writer
	// MaxBatch bounds the events synced and acknowledged together; 0
	// means DefaultMaxBatch.
	MaxBatch int
}

// PublishServer is the Build Event Service. Besides the gRPC methods it
// has Flush, which brings the persisted index up to date for streams still
// open, and Close, which ends persistence at shutdown, after the gRPC server
// stopped.
type PublishServer interface {
	buildpb.PublishBuildEventServer
	// Flush calls Sink.Flush for every open stream.
	Flush(ctx context.Context) error
	// Close closes the sink of every open stream; calls that arrive later
	// are refused with Unavailable.
	Close(ctx context.Context) error
}

type publishServer struct {
	buildpb.UnimplementedPublishBuildEventServer
	mem  *store.Storage
	opts Options

	logMu sync.Mutex

	mu      sync.Mutex
	streams map[string]*liveStream
	closed  bool
}

// liveStream is the server's state of one stream. Its mutex serialises
// every call that touches the stream, including a call that a client
// abandoned and the call it reconnected with.
type liveStream struct {
	mu       sync.Mutex
	key      string
	open     bool            // info, mem, events, last and finished are set
	info     *bepfile.Stream // the stream's identity, as stored
	mem      *store.Stream
	events   []bepfile.Event // the events of mem, for comparing re-sent events
	last     int64           // the last sequence number stored
	finished bool            // a finishing event is stored: nothing may follow
	sink     Sink            // nil without a Persister, after finishing, or after a failure
	scratch  []byte
}

var _ PublishServer = (*publishServer)(nil)

// NewPublishBuildEventServer returns the Build Event Service storing into
// mem. It follows the protocol as Bazel uses it:
//
//   - PublishBuildToolEventStream: every request of one call belongs to
//     one stream; each event is acknowledged, in order, with its stream id
//     and sequence number once it is stored (and synced by the Persister).
//     A call may start with events already stored (a client re-sends
//     everything unacknowledged after a reconnect): they are acknowledged
//     again and stored once. Sequence numbers then go up by one; a gap or
//     an event out of order ends the call with FailedPrecondition naming
//     the number received and the number wanted. component_stream_finished
//     completes the stream; an event after it is refused.
//   - PublishLifecycleEvent: the same rules for one event per call; the
//     lifecycle streams (build_enqueued/build_finished on "B.1.",
//     invocation_attempt_started/finished on "B.1.I") are stored like any
//     other, and build_finished or invocation_attempt_finished completes
//     one.
//
// A request without an event or stream id, with a bazel_event whose type URL
// is not Bazel's, or with an empty event is refused with InvalidArgument; an
// event larger than MaxEventSize with ResourceExhausted; a sequence number
// already stored with other content with AlreadyExists. A refusal ends one
// call only.
func NewPublishBuildEventServer(mem *store.Storage, opts Options) PublishServer {
	if opts.MaxEventSize <= 0 {
		opts.MaxEventSize = bepfile.DefaultMaxEventSize
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	return &publishServer{mem: mem, opts: opts, streams: map[string]*liveStream{}}
}

func (s *publishServer) logf(format string, args ...any) {
	if s.opts.Log == nil {
		return
	}
	msg := logSafe(fmt.Sprintf(format, args...))
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.opts.Log, "bes: %s\n", msg)
}

// live returns the state of the stream with key, creating it on first use.
func (s *publishServer) live(key string) (*liveStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, status.Error(codes.Unavailable, "the server is shutting down")
	}
	ls := s.streams[key]
	if ls == nil {
		ls = &liveStream{key: key}
		s.streams[key] = ls
	}
	return ls, nil
}

// received is one checked event.
type received struct {
	obe *buildpb.OrderedBuildEvent
	raw []byte // its encoding
	key string
}

// check validates one OrderedBuildEvent and encodes it.
func (s *publishServer) check(obe *buildpb.OrderedBuildEvent, field string) (*received, error) {
	if obe == nil {
		return nil, status.Errorf(codes.InvalidArgument, "request without %s", field)
	}
	id := obe.GetStreamId()
	if id == nil || id.GetBuildId() == "" {
		return nil, status.Errorf(codes.InvalidArgument, "%s (sequence number %d) has no stream id (build_id is required)", field, obe.GetSequenceNumber())
	}
	key := store.Key(id)
	seq := obe.GetSequenceNumber()
	if seq < 1 {
		return nil, status.Errorf(codes.InvalidArgument, "stream %s: sequence number %d: sequence numbers start at 1", key, seq)
	}
	ev := obe.GetEvent()
	if ev.GetEvent() == nil {
		return nil, status.Errorf(codes.InvalidArgument, "stream %s: sequence number %d: the event is empty", key, seq)
	}
	if a := ev.GetBazelEvent(); a != nil && a.GetTypeUrl() != bepfile.BazelEventTypeURL {
		return nil, status.Errorf(codes.InvalidArgument, "stream %s: sequence number %d: bazel_event has type URL %q, want %q", key, seq, a.GetTypeUrl(), bepfile.BazelEventTypeURL)
	}
	raw, err := proto.Marshal(obe)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "stream %s: sequence number %d: %v", key, seq, err)
	}
	if len(raw) > s.opts.MaxEventSize {
		return nil, status.Errorf(codes.ResourceExhausted, "stream %s: sequence number %d: event of %d bytes exceeds the limit of %d bytes", key, seq, len(raw), s.opts.MaxEventSize)
	}
	return &received{obe: obe, raw: raw, key: key}, nil
}

// finishes reports whether an event completes its stream.
func finishes(obe *buildpb.OrderedBuildEvent) bool {
	ev := obe.GetEvent()
	return ev.GetComponentStreamFinished() != nil || ev.GetBuildFinished() != nil || ev.GetInvocationAttemptFinished() != nil
}

// streamInfo returns the identity of a new stream from its first event,
// keeping the stream id's bytes as they were encoded.
func streamInfo(r *received) *bepfile.Stream {
	info := bepfile.NewStream(proto.CloneOf(r.obe.GetStreamId()))
	for b := r.raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		if num == wire.OBEStreamID && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m >= 0 {
				info.IDBytes = bytes.Clone(v)
			}
			break
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			break
		}
		b = b[n:]
	}
	return info
}

// open makes ls ready for events (ls.mu held): on first use it loads the
// stream from memory or from the Persister and opens its sink; after a
// persistence failure it reopens the sink.
func (s *publishServer) open(ctx context.Context, ls *liveStream, first *received, source, kind string) error {
	if ls.open {
		if ls.sink == nil && !ls.finished && s.opts.Persister != nil {
			// Reopen after a persistence failure. Events that reached
			// the disk although their sync failed were never
			// acknowledged; keep them, so that their re-sending is
			// recognised.
			sink, stored, err := s.opts.Persister.Open(ctx, ls.info, source)
			if err != nil {
				return persistError(ls.key, err)
			}
			ls.sink = sink
			if stored != nil {
				i := 0
				for ev, err := range stored.Query(ctx, nil) {
					if err != nil {
						return status.FromContextError(err).Err()
					}
					if i++; i > len(ls.events) {
						ls.mem.Append(*ev)
						ls.events = append(ls.events, *ev)
						ls.last = max(ls.last, ev.Seq)
					}
				}
			}
		}
		return nil
	}
	info := streamInfo(first)
	var stored *store.Stream
	if p := s.opts.Persister; p != nil {
		sink, st, err := p.Open(ctx, info, source)
		if err != nil {
			return persistError(ls.key, err)
		}
		ls.sink, stored = sink, st
	}
	mst, err := s.mem.Lookup(ls.key)
	if err != nil {
		if stored != nil {
			if err := s.mem.Add(stored); err == nil {
				mst = stored
			}
		}
		if mst == nil {
			mst = s.mem.GetStreamFor(info)
		}
	}
	ls.info, ls.mem = mst.Info(), mst
	for ev, err := range mst.Query(ctx, nil) {
		if err != nil {
			return status.FromContextError(err).Err()
		}
		ls.events = append(ls.events, *ev)
		ls.last = max(ls.last, ev.Seq)
		if ev.Raw != nil {
			obe := &buildpb.OrderedBuildEvent{}
			if proto.Unmarshal(ev.Raw, obe) == nil && finishes(obe) {
				ls.finished = true
			}
		}
	}
	ls.open = true
	if ls.finished && ls.sink != nil {
		ls.sink.Close(ctx)
		ls.sink = nil
	}
	if len(ls.events) == 0 {
		s.logf("stream %s opened: %s events from %s", ls.key, kind, source)
	} else {
		s.logf("stream %s continued by %s after sequence number %d (%d events stored)", ls.key, source, ls.last, len(ls.events))
	}
	return nil
}

func persistError(key string, err error) error {
	code := codes.Unavailable
	switch {
	case errors.Is(err, store.ErrStreamBusy):
		code = codes.Aborted
	case errors.Is(err, store.ErrLimit):
		code = codes.InvalidArgument // the client's to fix; never acknowledged
	}
	return status.Errorf(code, "stream %s: cannot store it: %v", key, err)
}

// accepted is the outcome of one event offered to a stream.
type accepted struct {
	ack   bool          // acknowledge it (stored now or before)
	event bepfile.Event // to store, when store is set
	store bool
	ends  bool // it finishes the stream
}

// offer decides what to do with r on ls (ls.mu held, ls open), given the
// previous sequence number of the call (0 at its start) and the stream's
// state as of the events already accepted in the batch (last, finished).
func (s *publishServer) offer(ls *liveStream, r *received, prev, last int64, finished bool) (accepted, error) {
	seq := r.obe.GetSequenceNumber()
	switch {
	case prev != 0 && seq != prev+1:
		return accepted{}, status.Errorf(codes.FailedPrecondition, "stream %s: got sequence number %d, want %d", ls.key, seq, prev+1)
	case seq <= last:
		same, err := s.sameAsStored(ls, seq, r)
		if err != nil {
			return accepted{}, err
		}
		if !same {
			return accepted{}, status.Errorf(codes.AlreadyExists, "stream %s: sequence number %d was already received with other content", ls.key, seq)
		}
		return accepted{ack: true}, nil
	case seq > last+1:
		return accepted{}, status.Errorf(codes.FailedPrecondition, "stream %s: got sequence number %d, want %d", ls.key, seq, last+1)
	case finished:
		return accepted{}, status.Errorf(codes.FailedPrecondition, "stream %s is finished: got sequence number %d after its last event", ls.key, seq)
	}
	ev := bepfile.Event{Seq: seq, Raw: r.raw}
	if t := r.obe.GetEvent().GetEventTime(); t != nil {
		ev.HasTime = true
		ev.Time = bepfile.Timestamp{Seconds: t.GetSeconds(), Nanos: t.GetNanos()}
	}
	ls.scratch, _ = ev.Compact(ls.info, ls.scratch)
	return accepted{ack: true, event: ev, store: true, ends: finishes(r.obe)}, nil
}

// sameAsStored reports whether r is the event stored under seq.
func (s *publishServer) sameAsStored(ls *liveStream, seq int64, r *received) (bool, error) {
	var stored *bepfile.Event
	if i := seq - 1; i < int64(len(ls.events)) && ls.events[i].Seq == seq {
		stored = &ls.events[i]
	} else {
		for i := range ls.events {
			if ls.events[i].Seq == seq {
				stored = &ls.events[i]
				break
			}
		}
	}
	if stored == nil {
		return false, status.Errorf(codes.FailedPrecondition, "stream %s: sequence number %d is not stored (the stream has a gap there)", ls.key, seq)
	}
	ls.scratch = stored.AppendEncoding(ls.scratch[:0], ls.info)
	if bytes.Equal(ls.scratch, r.raw) {
		return true, nil
	}
	old := &buildpb.OrderedBuildEvent{}
	if err := proto.Unmarshal(ls.scratch, old); err != nil {
		return false, nil
	}
	return proto.Equal(old, r.obe), nil
}

// commit stores the accepted events of a batch (ls.mu held): it syncs them
// through the sink, then adds them to memory. If the sink fails nothing is
// added, the sink is closed (the next call reopens it), and the error is
// Unavailable, which clients retry.
func (s *publishServer) commit(ctx context.Context, ls *liveStream, evs []accepted) error {
	var toStore []accepted
	for _, a := range evs {
		if a.store {
			toStore = append(toStore, a)
		}
	}
	if len(toStore) == 0 {
		return nil
	}
	if ls.sink != nil {
		err := func() error {
			for i := range toStore {
				if err := ls.sink.Append(&toStore[i].event); err != nil {
					return err
				}
			}
			return ls.sink.Sync(ctx)
		}()
		if err != nil {
			ls.sink.Close(ctx)
			ls.sink = nil // reopened, and the torn tail cut off, by the next call
			s.logf("stream %s: cannot store events: %v", ls.key, err)
			return persistError(ls.key, err)
		}
	}
	for _, a := range toStore {
		ls.mem.Append(a.event)
		ls.events = append(ls.events, a.event)
		ls.last = a.event.Seq
		if a.ends {
			ls.finished = true
		}
	}
	if ls.finished {
		if ls.sink != nil {
			if err := ls.sink.Close(ctx); err != nil {
				s.logf("stream %s: closing its file: %v", ls.key, err)
			}
			ls.sink = nil
		}
		s.logf("stream %s finished: %d events", ls.key, len(ls.events))
	}
	return nil
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "unknown peer"
}

// checkPreceding implements check_preceding_lifecycle_events_present: the
// lifecycle stream one level up (B.1.I for a tool stream B.3.I, B.1. for
// B.1.I) must have received an event.
func (s *publishServer) checkPreceding(id *buildpb.StreamId) error {
	var parent *buildpb.StreamId
	switch {
	case id.GetComponent() == buildpb.StreamId_CONTROLLER && id.GetInvocationId() != "":
		parent = &buildpb.StreamId{BuildId: id.GetBuildId(), Component: buildpb.StreamId_CONTROLLER}
	case id.GetComponent() != buildpb.StreamId_CONTROLLER:
		parent = &buildpb.StreamId{BuildId: id.GetBuildId(), InvocationId: id.GetInvocationId(), Component: buildpb.StreamId_CONTROLLER}
	default:
		return nil
	}
	if st, err := s.mem.Lookup(store.Key(parent)); err == nil && st.Len() > 0 {
		return nil
	}
	return status.Errorf(codes.FailedPrecondition, "stream %s: check_preceding_lifecycle_events_present: no lifecycle event was received on stream %s", store.Key(id), store.Key(parent))
}

// PublishLifecycleEvent stores one lifecycle event; it returns once the
// event is durable.
func (s *publishServer) PublishLifecycleEvent(ctx context.Context, req *buildpb.PublishLifecycleEventRequest) (*emptypb.Empty, error) {
	r, err := s.check(req.GetBuildEvent(), "build_event")
	if err != nil {
		s.refused(err)
		return nil, err
	}
	if req.GetCheckPrecedingLifecycleEventsPresent() {
		if err := s.checkPreceding(r.obe.GetStreamId()); err != nil {
			s.refused(err)
			return nil, err
		}
	}
	ls, err := s.live(r.key)
	if err != nil {
		return nil, err
	}
	pctx := context.WithoutCancel(ctx)
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if err := s.open(pctx, ls, r, peerAddr(ctx), "lifecycle"); err != nil {
		return nil, err
	}
	a, err := s.offer(ls, r, 0, ls.last, ls.finished)
	if err == nil {
		err = s.commit(pctx, ls, []accepted{a})
	}
	if err != nil {
		s.refused(err)
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// toolCall is the state of one PublishBuildToolEventStream call.
type toolCall struct {
	ls     *liveStream
	key    string
	id     *buildpb.StreamId
	prev   int64 // the last sequence number of the call; 0 before the first
	source string
}

// PublishBuildToolEventStream receives one stream's events and acknowledges
// each once it is stored. Events that arrive together are synced together
// (group commit), then acknowledged in order.
func (s *publishServer) PublishBuildToolEventStream(call buildpb.PublishBuildEvent_PublishBuildToolEventStreamServer) error {
	ctx := call.Context()
	type item struct {
		req *buildpb.PublishBuildToolEventStreamRequest
		err error
	}
	in := make(chan item, s.opts.MaxBatch)
	go func() {
		for {
			req, err := call.Recv()
			select {
			case in <- item{req, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	tc := &toolCall{source: peerAddr(ctx)}
	for {
		var it item
		select {
		case it = <-in:
		case <-ctx.Done():
			return s.callEnded(tc, ctx.Err())
		}
		var batch []*buildpb.PublishBuildToolEventStreamRequest
		var recvErr error
	collect:
		for {
			if it.err != nil {
				recvErr = it.err
				break
			}
			batch = append(batch, it.req)
			if len(batch) >= s.opts.MaxBatch {
				break
			}
			select {
			case it = <-in:
			default:
				break collect
			}
		}
		acks, err := s.toolBatch(ctx, tc, batch)
		for _, a := range acks {
			if serr := call.Send(a); serr != nil {
				return s.callEnded(tc, serr)
			}
		}
		if err != nil {
			s.refused(err)
			return err
		}
		if recvErr == io.EOF {
			return nil // the client half-closed and has every ack
		}
		if recvErr != nil {
			return s.callEnded(tc, recvErr)
		}
	}
}

// refused logs a refusal; its message names the stream.
func (s *publishServer) refused(err error) {
	st := status.Convert(err)
	s.logf("refused (%s): %s", st.Code(), st.Message())
}

// callEnded logs a call the client abandoned and returns its status.
func (s *publishServer) callEnded(tc *toolCall, err error) error {
	if tc.key != "" {
		s.logf("stream %s: connection from %s ended after sequence number %d: %v", tc.key, tc.source, tc.prev, status.Convert(err).Message())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.FromContextError(err).Err()
}

// toolBatch stores a batch of requests of one call and returns the acks
// for those stored, or stored before, up to the first refused.
func (s *publishServer) toolBatch(ctx context.Context, tc *toolCall, batch []*buildpb.PublishBuildToolEventStreamRequest) ([]*buildpb.PublishBuildToolEventStreamResponse, error) {
	if len(batch) == 0 {
		return nil, nil
	}
	pctx := context.WithoutCancel(ctx) // a sync in progress completes
	var (
		acks  []*buildpb.PublishBuildToolEventStreamResponse
		accs  []accepted
		ls    *liveStream
		bad   error
		acked int // acks for events stored before the batch
	)
	defer func() {
		if ls != nil {
			ls.mu.Unlock()
		}
	}()
	var last int64
	var finished bool
	for _, req := range batch {
		r, err := s.check(req.GetOrderedBuildEvent(), "ordered_build_event")
		if err != nil {
			bad = err
			break
		}
		if tc.key == "" {
			if req.GetCheckPrecedingLifecycleEventsPresent() {
				if err := s.checkPreceding(r.obe.GetStreamId()); err != nil {
					bad = err
					break
				}
			}
			if tc.ls, err = s.live(r.key); err != nil {
				bad = err
				break
			}
			tc.key, tc.id = r.key, proto.CloneOf(r.obe.GetStreamId())
		}
		if r.key != tc.key {
			bad = status.Errorf(codes.InvalidArgument, "stream %s: got an event of stream %s in the same call", tc.key, r.key)
			break
		}
		if ls == nil {
			ls = tc.ls
			ls.mu.Lock()
			if err := s.open(pctx, ls, r, tc.source, "tool"); err != nil {
				bad = err
				break
			}
			last, finished = ls.last, ls.finished
		}
		a, err := s.offer(ls, r, tc.prev, last, finished)
		if err != nil {
			bad = err
			break
		}
		tc.prev = r.obe.GetSequenceNumber()
		if a.store {
			last = a.event.Seq
			finished = finished || a.ends
		} else if len(accs) == acked {
			acked++
		}
		accs = append(accs, a)
		acks = append(acks, &buildpb.PublishBuildToolEventStreamResponse{StreamId: tc.id, SequenceNumber: tc.prev})
	}
	if ls != nil && len(accs) > 0 {
		if err := s.commit(pctx, ls, accs); err != nil {
			return acks[:acked], err
		}
	}
	return acks, bad
}

// Flush implements PublishServer.
func (s *publishServer) Flush(ctx context.Context) error {
	var errs []error
	for _, ls := range s.snapshot() {
		ls.mu.Lock()
		if ls.sink != nil {
			if err := ls.sink.Flush(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stream %s: %w", ls.key, err))
			}
		}
		ls.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Close implements PublishServer.
func (s *publishServer) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	var errs []error
	for _, ls := range s.snapshot() {
		ls.mu.Lock()
		if ls.sink != nil {
			if err := ls.sink.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stream %s: %w", ls.key, err))
			}
			ls.sink = nil
			if !ls.finished {
				s.logf("stream %s closed unfinished: %d events", ls.key, len(ls.events))
			}
		}
		ls.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (s *publishServer) snapshot() []*liveStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*liveStream, 0, len(s.streams))
	for _, ls := range s.streams {
		out = append(out, ls)
	}
	return out
}
