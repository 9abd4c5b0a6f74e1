// Package server implements the gRPC services of `bes serve`: Google's Build
// Event Service (google.devtools.build.v1.PublishBuildEvent), as Bazel uses
// it, and BuildGrid's query API (buildgrid.v2.QueryBuildEvents).
//
// Streams received are written to a store.Backend, and an event is
// acknowledged only once it is stored there (the Persister synced it). The
// store is the one truth: the server keeps in memory only what the streams
// it holds open need (their last sequence number and a 64-bit digest of
// each event, to recognise events a client sends again), drops a stream's
// state when it lets the stream go (finished, its call ended, idle,
// failed), and reads it
// back from the store when the stream's client returns. Queries read the
// store (see NewQueryBuildEventsServer).
package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// Defaults of the limits on streams held open (issue 13: abandoned streams
// kept their file and lock until shutdown, and after ~18,000 of them the
// server could open no file).
const (
	// DefaultIdleTimeout is how long a stream may go without an event
	// before the server lets it go: closes its file, releases its lock,
	// and forgets it. A client that returns later continues it, read
	// back from the store. Bazel sends events as its build makes
	// progress; a stream quiet for this long is nearly always one whose
	// client vanished with its connection left open (a stream whose call
	// ends is let go at once: see PublishBuildToolEventStream).
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultMaxOpenStreams is how many streams may be open at once
	// (each holds a file and a lock; a Bazel invocation holds three:
	// its tool stream and two lifecycle streams).
	DefaultMaxOpenStreams = 4096
	// DefaultMaxOpenStreamsPerClient is how many of them one client
	// (one IP address) may hold.
	DefaultMaxOpenStreamsPerClient = 1024
	// DefaultMaxCallBuffer is how many bytes of requests one call may
	// have received and not yet stored: the server stops reading the
	// call (so that gRPC flow control holds the client back) until they
	// are stored. A single larger event is read alone.
	DefaultMaxCallBuffer = 4 << 20
	// LargeBatch is the size, in bytes of requests, from which a batch
	// of events (or a lifecycle event) is stored by one call at a time:
	// storing an event takes a few copies of it (encoded, checked,
	// buffered for the disk), so that 8 calls storing 60 MiB events at
	// once took gigabytes (issue 13).
	LargeBatch = 1 << 20
)

// Options configure the publish service.
type Options struct {
	// MaxEventSize is the largest OrderedBuildEvent accepted, in encoded
	// bytes; 0 means bepfile.DefaultMaxEventSize. A larger event is
	// refused with ResourceExhausted. (The gRPC server's own message limit
	// should be a little larger, for the request around it.)
	MaxEventSize int
	// Persister makes streams durable; nil means NewBackendPersister of
	// the server's Backend (format "grpc"). Tests put faults in it.
	Persister Persister
	// Log gets one line per stream opened, continued, finished and let
	// go, and per request refused; nil logs nothing. Writes are
	// serialised.
	Log io.Writer
	// MaxBatch bounds the events synced and acknowledged together; 0
	// means DefaultMaxBatch.
	MaxBatch int
	// IdleTimeout: a stream that received no event for this long is let
	// go by Flush (see DefaultIdleTimeout); 0 means the default, a
	// negative value never.
	IdleTimeout time.Duration
	// MaxOpenStreams and MaxOpenStreamsPerClient bound the streams open
	// at once, in all and per client IP address; 0 means the defaults.
	// A new stream over either is refused with ResourceExhausted (a
	// client retries it later).
	MaxOpenStreams, MaxOpenStreamsPerClient int
	// MaxCallBuffer bounds the bytes of requests read ahead on one call
	// (see DefaultMaxCallBuffer); 0 means the default.
	MaxCallBuffer int
	// Now is the clock of idle timeouts; nil means time.Now.
	Now func() time.Time
}

// PublishServer is the Build Event Service. Besides the gRPC methods it
// has Flush, which brings the store's entries of open streams up to date
// and lets idle streams go, and Close, which ends persistence at shutdown,
// after the gRPC server stopped.
type PublishServer interface {
	buildpb.PublishBuildEventServer
	// Flush calls Sink.Flush for every open stream, and closes the
	// streams idle for longer than Options.IdleTimeout. `bes serve`
	// calls it every second.
	Flush(ctx context.Context) error
	// Close closes the sink of every open stream; calls that arrive later
	// are refused with Unavailable.
	Close(ctx context.Context) error
	// OpenStreams returns the number of streams open (holding a file).
	OpenStreams() int
}

type publishServer struct {
	buildpb.UnimplementedPublishBuildEventServer
	st    store.Backend
	opts  Options
	seed  maphash.Seed  // of the digests of events; random, so clients cannot make collisions
	large chan struct{} // held while a batch of LargeBatch bytes or more is stored

	logMu sync.Mutex

	mu        sync.Mutex
	streams   map[string]*liveStream // the streams held: open, or being opened
	perClient map[string]int         // len of streams by liveStream.client
	closed    bool
}

// liveStream is the server's state of one stream it holds. Its mutex
// serialises every call that touches the stream, including a call that a
// client abandoned and the call it reconnected with.
//
// The state is valid only while the stream's sink is open: the sink (the
// store's Appender) holds the stream exclusively, so nothing else (an
// `ingest --replace`, a gc) changes it meanwhile. When the sink is closed
// the liveStream is dropped (gone), and the next call reads the stream
// back from the store.
type liveStream struct {
	mu     sync.Mutex
	key    string
	client string // the IP address it is counted against
	gone   bool   // dropped from the server's map: get a fresh one

	open     bool            // info, sums, last and finished are set
	info     *bepfile.Stream // the stream's identity, as stored
	sums     []uint64        // digest of the event with sequence number i+1, while they are 1..n
	sparse   map[int64]uint64
	n        int64 // events stored
	last     int64 // the last sequence number stored
	finished bool  // a finishing event is stored: nothing may follow
	sink     Sink  // nil after finishing or after a failure
	scratch  []byte

	// holder is the tool call that took the stream last (nil: a
	// lifecycle call, or none yet): when a call ends it lets go only a
	// stream it still holds, never one a newer call took since.
	holder *toolCall

	stored atomic.Int64 // n, for readers without mu (checkPreceding)
	active atomic.Int64 // UnixNano of the last event or call that used it
}

var _ PublishServer = (*publishServer)(nil)

// NewPublishBuildEventServer returns the Build Event Service storing into
// st. It follows the protocol as Bazel uses it:
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
// is not Bazel's, with an empty event, or with a Bazel payload that is not
// well-formed protobuf (bepfile.CheckBuildEvent finds it corrupt; a string
// that is not UTF-8, as Bazel sends them, bazelbuild/bazel#11125, is
// accepted and stored byte for byte) is refused with InvalidArgument; an
// event larger than MaxEventSize with ResourceExhausted, and so is a new
// stream over MaxOpenStreams or MaxOpenStreamsPerClient; a sequence number
// already stored with other content with AlreadyExists. A refusal ends one
// call only.
func NewPublishBuildEventServer(st store.Backend, opts Options) PublishServer {
	if opts.MaxEventSize <= 0 {
		opts.MaxEventSize = bepfile.DefaultMaxEventSize
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Persister == nil {
		opts.Persister = NewBackendPersister(st, "grpc", 0)
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxOpenStreams <= 0 {
		opts.MaxOpenStreams = DefaultMaxOpenStreams
	}
	if opts.MaxOpenStreamsPerClient <= 0 {
		opts.MaxOpenStreamsPerClient = DefaultMaxOpenStreamsPerClient
	}
	if opts.MaxCallBuffer <= 0 {
		opts.MaxCallBuffer = DefaultMaxCallBuffer
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &publishServer{st: st, opts: opts, seed: maphash.MakeSeed(), large: make(chan struct{}, 1), streams: map[string]*liveStream{}, perClient: map[string]int{}}
}

// maxLogLine is the longest log line, in bytes, before its middle is cut.
const maxLogLine = 4 << 10

func (s *publishServer) logf(format string, args ...any) {
	if s.opts.Log == nil {
		return
	}
	msg := logSafe(fmt.Sprintf(format, args...))
	if len(msg) > maxLogLine {
		// A client's id of megabytes (issue 13) is not copied whole
		// into every line about it.
		msg = strings.ToValidUTF8(fmt.Sprintf("%s…(%d bytes left out)…%s", msg[:maxLogLine/2], len(msg)-maxLogLine*3/4, msg[len(msg)-maxLogLine/4:]), "")
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.opts.Log, "bes: %s\n", msg)
}

// clientOf returns the IP address of a peer address "HOST:PORT" (the
// whole address when it has no port).
func clientOf(source string) string {
	if h, _, err := net.SplitHostPort(source); err == nil {
		return h
	}
	return source
}

// lock returns the state of the stream with key, locked, creating it on
// first use (counted against client's cap). ls, when not nil, is the
// state the call used last: taken again unless it was dropped meanwhile.
func (s *publishServer) lock(key, client string, ls *liveStream) (*liveStream, error) {
	for {
		if ls == nil {
			var err error
			if ls, err = s.live(key, client); err != nil {
				return nil, err
			}
		}
		ls.mu.Lock()
		if !ls.gone {
			ls.active.Store(s.opts.Now().UnixNano())
			return ls, nil
		}
		ls.mu.Unlock()
		ls = nil
	}
}

// live returns the state of the stream with key, creating it when the
// server does not hold the stream.
func (s *publishServer) live(key, client string) (*liveStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, status.Error(codes.Unavailable, "the server is shutting down")
	}
	if ls := s.streams[key]; ls != nil {
		return ls, nil
	}
	if len(s.streams) >= s.opts.MaxOpenStreams {
		return nil, status.Errorf(codes.ResourceExhausted, "stream %s: %d streams are open, the most the server holds at once (bes serve --max-open-streams); retry later", key, len(s.streams))
	}
	if n := s.perClient[client]; n >= s.opts.MaxOpenStreamsPerClient {
		return nil, status.Errorf(codes.ResourceExhausted, "stream %s: client %s holds %d open streams, the most one client may (bes serve --max-open-streams-per-client); retry later", key, client, n)
	}
	ls := &liveStream{key: key, client: client}
	ls.active.Store(s.opts.Now().UnixNano())
	s.streams[key] = ls
	s.perClient[client]++
	return ls, nil
}

// drop forgets ls (ls.mu held), whose sink is closed or was never opened.
func (s *publishServer) drop(ls *liveStream) {
	if ls.gone {
		return
	}
	ls.gone = true
	ls.open, ls.sums, ls.sparse, ls.info, ls.scratch = false, nil, nil, nil, nil
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[ls.key] == ls {
		delete(s.streams, ls.key)
		if s.perClient[ls.client]--; s.perClient[ls.client] <= 0 {
			delete(s.perClient, ls.client)
		}
	}
}

// release ends a use of ls (ls.mu held): a stream whose sink is closed is
// dropped; then ls is unlocked.
func (s *publishServer) release(ls *liveStream) {
	if ls.sink == nil {
		s.drop(ls)
	}
	if cap(ls.scratch) > LargeBatch {
		ls.scratch = nil // kept for small events only
	}
	ls.mu.Unlock()
}

// received is one checked event.
type received struct {
	obe *buildpb.OrderedBuildEvent
	raw []byte // its encoding
	key string
	// origin is the request's project_id and notification_keywords, as
	// origin formats them, for the entry's Source (issue 14).
	origin string
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
	if a := ev.GetBazelEvent(); a != nil {
		if a.GetTypeUrl() != bepfile.BazelEventTypeURL {
			return nil, status.Errorf(codes.InvalidArgument, "stream %s: sequence number %d: bazel_event has type URL %q, want %q", key, seq, a.GetTypeUrl(), bepfile.BazelEventTypeURL)
		}
		if len(a.GetValue()) > s.opts.MaxEventSize {
			return nil, status.Errorf(codes.ResourceExhausted, "stream %s: sequence number %d: event of over %d bytes exceeds the limit of %d bytes", key, seq, len(a.GetValue()), s.opts.MaxEventSize)
		}
		// Issue 13: a payload that is not well-formed protobuf broke
		// every view of the store. Invalid UTF-8 in a string is what
		// Bazel sends (bazelbuild/bazel#11125): kept, byte for byte.
		d, err := bepfile.CheckBuildEvent(a.GetValue())
		if err == nil && len(d.Corrupt) > 0 {
			err = errors.New(d.String())
		}
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "stream %s: sequence number %d: bazel_event is not a well-formed build_event_stream.BuildEvent: %v", key, seq, err)
		}
	}
	raw, err := proto.Marshal(obe)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "stream %s: sequence number %d: %v", key, seq, err)
	}
	if len(raw) > s.opts.MaxEventSize {
		return nil, status.Errorf(codes.ResourceExhausted, "stream %s: sequence number %d: event of %d bytes exceeds the limit of %d bytes", key, seq, len(raw), s.opts.MaxEventSize)
	}
	if len(raw) >= LargeBatch {
		// The event decoded again from raw, its payload a slice of it,
		// so that the request's copy can go once the caller lets the
		// request go (issue 13: one copy fewer while it is stored).
		if o, ok := aliasedOBE(raw); ok {
			obe = o
		}
	}
	return &received{obe: obe, raw: raw, key: key}, nil
}

// finishes reports whether an event completes its stream.
func finishes(obe *buildpb.OrderedBuildEvent) bool {
	ev := obe.GetEvent()
	return ev.GetComponentStreamFinished() != nil || ev.GetBuildFinished() != nil || ev.GetInvocationAttemptFinished() != nil
}

// finishesRaw is finishes for an encoded OrderedBuildEvent: it looks for
// the finishing fields of its BuildEvent without decoding the payload.
func finishesRaw(raw []byte) bool {
	ev := bepfile.FirstBytesField(raw, wire.OBEEvent)
	if ev == nil {
		return false
	}
	for b := ev; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case wire.BESComponentStreamFinished, wire.BESBuildFinished, wire.BESInvocationAttemptFinished:
			return typ == protowire.BytesType
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return false
		}
		b = b[n:]
	}
	return false
}

// streamInfo returns the identity of a new stream from its first event,
// keeping the stream id's bytes as they were encoded.
func streamInfo(r *received) *bepfile.Stream {
	info := bepfile.NewStream(proto.CloneOf(r.obe.GetStreamId()))
	if v := bepfile.FirstBytesField(r.raw, wire.OBEStreamID); v != nil {
		info.IDBytes = bytes.Clone(v)
	}
	return info
}

// digest is the 64-bit digest the server keeps of an event's encoding.
func (s *publishServer) digest(raw []byte) uint64 { return maphash.Bytes(s.seed, raw) }

// record notes an event stored in ls.
func (ls *liveStream) record(seq int64, sum uint64) {
	ls.n++
	ls.stored.Store(ls.n)
	ls.last = max(ls.last, seq)
	if ls.sparse == nil && seq == int64(len(ls.sums))+1 {
		ls.sums = append(ls.sums, sum)
		return
	}
	if ls.sparse == nil {
		// Sequence numbers other than 1..n (a stream ingested from a
		// file with a gap): keep them by number.
		ls.sparse = make(map[int64]uint64, len(ls.sums)+1)
		for i, d := range ls.sums {
			ls.sparse[int64(i)+1] = d
		}
		ls.sums = nil
	}
	if _, ok := ls.sparse[seq]; !ok {
		ls.sparse[seq] = sum
	}
}

// sumOf returns the digest of the event stored under seq.
func (ls *liveStream) sumOf(seq int64) (uint64, bool) {
	if ls.sparse != nil {
		d, ok := ls.sparse[seq]
		return d, ok
	}
	if seq >= 1 && seq <= int64(len(ls.sums)) {
		return ls.sums[seq-1], true
	}
	return 0, false
}

// open makes ls ready for events (ls.mu held): it opens the stream's sink
// with the Persister, which reads back what the store holds of it.
func (s *publishServer) open(ctx context.Context, ls *liveStream, first *received, source, kind string) error {
	if ls.open {
		return nil
	}
	info := streamInfo(first)
	sink, stored, err := s.opts.Persister.Open(ctx, info, source+first.origin)
	if err != nil {
		return persistError(ls.key, err)
	}
	ls.sink, ls.info = sink, info
	if stored != nil {
		ls.info = stored.Info()
		for ev, err := range stored.Query(ctx, nil) {
			if err != nil {
				sink.Close(ctx)
				ls.sink = nil
				return status.FromContextError(err).Err()
			}
			ls.scratch = ev.AppendEncoding(ls.scratch[:0], ls.info)
			ls.record(ev.Seq, s.digest(ls.scratch))
			if finishesRaw(ls.scratch) {
				ls.finished = true
			}
		}
	}
	ls.open = true
	if ls.finished {
		if err := sink.Close(ctx); err != nil {
			s.logf("stream %s: closing its file: %v", ls.key, err)
		}
		ls.sink = nil
	}
	if ls.n == 0 {
		s.logf("stream %s opened: %s events from %s", ls.key, kind, source)
	} else {
		s.logf("stream %s continued by %s after sequence number %d (%d events stored)", ls.key, source, ls.last, ls.n)
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
	sum   uint64        // the digest of its encoding
	store bool
	ends  bool // it finishes the stream
}

// offer decides what to do with r on ls (ls.mu held, ls open), given the
// previous sequence number of the call (0 at its start) and the stream's
// state as of the events already accepted in the batch (last, finished).
func (s *publishServer) offer(ctx context.Context, ls *liveStream, r *received, prev, last int64, finished bool) (accepted, error) {
	seq := r.obe.GetSequenceNumber()
	switch {
	case prev != 0 && seq != prev+1:
		return accepted{}, status.Errorf(codes.FailedPrecondition, "stream %s: got sequence number %d, want %d", ls.key, seq, prev+1)
	case seq <= last:
		same, err := s.sameAsStored(ctx, ls, seq, r)
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
	sum := s.digest(r.raw)
	ls.scratch, _ = ev.Compact(ls.info, ls.scratch)
	if cap(ls.scratch) > LargeBatch {
		ls.scratch = nil // kept for small events only: a large one's goes before it is stored
	}
	return accepted{ack: true, event: ev, sum: sum, store: true, ends: finishes(r.obe)}, nil
}

// sameAsStored reports whether r is the event stored under seq: its
// encoding has the digest kept of the stored one, or, failing that (an
// event stored in other bytes, e.g. ingested from Bazel's own file), the
// stored event read back from the store decodes to the same message.
func (s *publishServer) sameAsStored(ctx context.Context, ls *liveStream, seq int64, r *received) (bool, error) {
	sum, ok := ls.sumOf(seq)
	if !ok {
		return false, status.Errorf(codes.FailedPrecondition, "stream %s: sequence number %d is not stored (the stream has a gap there)", ls.key, seq)
	}
	if sum == s.digest(r.raw) {
		return true, nil
	}
	raw, err := s.storedEncoding(ctx, ls.key, seq)
	if err != nil || raw == nil {
		return false, nil
	}
	old := &buildpb.OrderedBuildEvent{}
	if err := proto.Unmarshal(raw, old); err != nil {
		return false, nil
	}
	return proto.Equal(old, r.obe), nil
}

// storedEncoding reads the encoding of the first event with seq of the
// stream key from the store (nil when there is none).
func (s *publishServer) storedEncoding(ctx context.Context, key string, seq int64) ([]byte, error) {
	ents, err := s.st.Lookup(ctx, key)
	if err != nil {
		return nil, err
	}
	var found []byte
	stop := errors.New("found")
	for _, e := range ents {
		if e.Key != key {
			continue
		}
		err := s.st.Events(ctx, e, func(st *bepfile.Stream, ev *bepfile.Event) error {
			if ev.Seq == seq {
				found = ev.AppendEncoding(nil, st)
				return stop
			}
			return nil
		})
		if err != nil && err != stop {
			return nil, err
		}
	}
	return found, nil
}

// commit stores the accepted events of a batch (ls.mu held): it syncs them
// through the sink and notes them in ls. If the sink fails the sink is
// closed and ls forgotten (the next call reads the stream back from the
// store, where a torn tail is cut off), and the error is Unavailable, which
// clients retry.
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
	if ls.sink == nil {
		// Only a finished stream has no sink, and offer refuses events
		// after its end.
		return status.Errorf(codes.Internal, "stream %s: no open file to store events in", ls.key)
	}
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
		ls.sink = nil // the caller drops ls; the next call reopens the stream
		s.logf("stream %s: cannot store events: %v", ls.key, err)
		return persistError(ls.key, err)
	}
	for _, a := range toStore {
		ls.record(a.event.Seq, a.sum)
		if a.ends {
			ls.finished = true
		}
	}
	if ls.finished {
		if err := ls.sink.Close(ctx); err != nil {
			s.logf("stream %s: closing its file: %v", ls.key, err)
		}
		ls.sink = nil
		s.logf("stream %s finished: %d events", ls.key, ls.n)
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
// B.1.I) must have received an event: one the server holds, or one the
// store lists.
func (s *publishServer) checkPreceding(ctx context.Context, id *buildpb.StreamId) error {
	var parent *buildpb.StreamId
	switch {
	case id.GetComponent() == buildpb.StreamId_CONTROLLER && id.GetInvocationId() != "":
		parent = &buildpb.StreamId{BuildId: id.GetBuildId(), Component: buildpb.StreamId_CONTROLLER}
	case id.GetComponent() != buildpb.StreamId_CONTROLLER:
		parent = &buildpb.StreamId{BuildId: id.GetBuildId(), InvocationId: id.GetInvocationId(), Component: buildpb.StreamId_CONTROLLER}
	default:
		return nil
	}
	pk := store.Key(parent)
	s.mu.Lock()
	ls := s.streams[pk]
	s.mu.Unlock()
	if ls != nil && ls.stored.Load() > 0 {
		return nil
	}
	if ents, err := s.st.Lookup(ctx, pk); err == nil {
		for _, e := range ents {
			if e.Key == pk && e.Events > 0 {
				return nil
			}
		}
	}
	return status.Errorf(codes.FailedPrecondition, "stream %s: check_preceding_lifecycle_events_present: no lifecycle event was received on stream %s", store.Key(id), pk)
}

// PublishLifecycleEvent stores one lifecycle event; it returns once the
// event is durable.
func (s *publishServer) PublishLifecycleEvent(ctx context.Context, req *buildpb.PublishLifecycleEventRequest) (*emptypb.Empty, error) {
	if proto.Size(req) >= LargeBatch {
		if err := s.acquireLarge(ctx); err != nil {
			return nil, err
		}
		defer s.releaseLarge()
	}
	r, err := s.check(req.GetBuildEvent(), "build_event")
	if err != nil {
		s.refused(err)
		return nil, err
	}
	req.BuildEvent = nil // r holds the event: a large one's request copy can go
	r.origin = origin(req.GetProjectId(), nil)
	pctx := context.WithoutCancel(ctx)
	if req.GetCheckPrecedingLifecycleEventsPresent() {
		if err := s.checkPreceding(pctx, r.obe.GetStreamId()); err != nil {
			s.refused(err)
			return nil, err
		}
	}
	source := peerAddr(ctx)
	ls, err := s.lock(r.key, clientOf(source), nil)
	if err != nil {
		s.refused(err)
		return nil, err
	}
	defer s.release(ls)
	ls.holder = nil
	if err := s.open(pctx, ls, r, source, "lifecycle"); err != nil {
		s.refused(err)
		return nil, err
	}
	a, err := s.offer(pctx, ls, r, 0, ls.last, ls.finished)
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
	ls     *liveStream // the state used last; may have been dropped since
	key    string
	id     *buildpb.StreamId
	prev   int64 // the last sequence number of the call; 0 before the first
	source string
	ended  string // how the call ended, when not by the client's half-close
}

// callBuffer bounds the bytes of requests a call has read and not yet
// stored: the reader waits while they exceed max (a single larger request
// passes alone).
type callBuffer struct {
	mu     sync.Mutex
	cond   sync.Cond
	used   int
	max    int
	closed bool
}

func newCallBuffer(max int) *callBuffer {
	b := &callBuffer{max: max}
	b.cond.L = &b.mu
	return b
}

// acquire waits for room for n bytes; false once the buffer is closed.
func (b *callBuffer) acquire(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && b.used > 0 && b.used+n > b.max {
		b.cond.Wait()
	}
	b.used += n
	return !b.closed
}

func (b *callBuffer) release(n int) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

func (b *callBuffer) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// PublishBuildToolEventStream receives one stream's events and acknowledges
// each once it is stored. Events that arrive together are synced together
// (group commit), then acknowledged in order. When the call ends (the
// client half-closed it, it broke, was cancelled or refused) with its
// stream unfinished, the stream is let go before the call's status is sent
// (see callLetGo), unless a newer call took it meanwhile.
func (s *publishServer) PublishBuildToolEventStream(call buildpb.PublishBuildEvent_PublishBuildToolEventStreamServer) error {
	ctx := call.Context()
	type item struct {
		req  *buildpb.PublishBuildToolEventStreamRequest
		err  error
		size int
	}
	in := make(chan item, s.opts.MaxBatch)
	buf := newCallBuffer(s.opts.MaxCallBuffer)
	defer buf.close()
	go func() {
		for {
			req, err := call.Recv()
			size := 0
			if err == nil {
				size = proto.Size(req)
				if !buf.acquire(size) {
					return
				}
			}
			select {
			case in <- item{req, err, size}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	tc := &toolCall{source: peerAddr(ctx)}
	// However the call ends (half-closed, broken, cancelled, refused),
	// the unfinished stream it holds is let go at once: a client that
	// vanished, or a Bazel killed mid-build, leaves no file locked until
	// the idle timeout (a CI step's bes ingest of the same stream failed
	// as busy for 5 minutes). A client that returns continues it.
	defer s.callLetGo(context.WithoutCancel(ctx), tc)
	for {
		var it item
		select {
		case it = <-in:
		case <-ctx.Done():
			return s.callEnded(tc, ctx.Err())
		}
		var batch []*buildpb.PublishBuildToolEventStreamRequest
		var recvErr error
		size := 0
	collect:
		for {
			if it.err != nil {
				recvErr = it.err
				break
			}
			batch = append(batch, it.req)
			size += it.size
			if len(batch) >= s.opts.MaxBatch {
				break
			}
			select {
			case it = <-in:
			default:
				break collect
			}
		}
		var acks []*buildpb.PublishBuildToolEventStreamResponse
		var err error
		if size >= LargeBatch {
			if err = s.acquireLarge(ctx); err != nil {
				return s.callEnded(tc, err)
			}
			acks, err = s.toolBatch(ctx, tc, batch)
			s.releaseLarge()
		} else {
			acks, err = s.toolBatch(ctx, tc, batch)
		}
		batch = nil
		buf.release(size)
		for _, a := range acks {
			if serr := call.Send(a); serr != nil {
				return s.callEnded(tc, serr)
			}
		}
		if err != nil {
			s.refused(err)
			tc.ended = "refused: " + status.Code(err).String()
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

// callLetGo lets go the stream of the tool call tc, which ended (the
// client half-closed it, it broke, was cancelled or refused): if tc still
// holds the stream (no newer call took it since) and it is unfinished, its
// sink is closed (synced, its lock released) and the stream dropped, as
// after an idle timeout, with one log line; the next call reads it back
// from the store. A call that ended otherwise than by the client's
// half-close and let nothing go is logged too.
func (s *publishServer) callLetGo(ctx context.Context, tc *toolCall) {
	how := "the client closed its side"
	if tc.ended != "" {
		how = tc.ended
	}
	if ls := tc.ls; ls != nil {
		ls.mu.Lock()
		held := !ls.gone && ls.holder == tc && ls.sink != nil
		if held {
			ls.holder = nil
			if err := s.letGo(ctx, ls, fmt.Sprintf("the call from %s ended (%s) after sequence number %d", tc.source, how, tc.prev)); err != nil {
				s.logf("stream %s: closing its file: %v", ls.key, err)
			}
		}
		ls.mu.Unlock()
		if held {
			return
		}
	}
	if tc.key != "" && tc.ended != "" && !strings.HasPrefix(tc.ended, "refused: ") {
		s.logf("stream %s: connection from %s ended after sequence number %d: %s", tc.key, tc.source, tc.prev, tc.ended)
	}
}

// letGo closes the sink of ls (ls.mu held), logs why the stream was let
// go, and drops it: its client may continue it, read back from the store.
// The error is the sink's Close's.
func (s *publishServer) letGo(ctx context.Context, ls *liveStream, why string) error {
	var err error
	if ls.sink != nil {
		err = ls.sink.Close(ctx)
		ls.sink = nil
		s.logf("stream %s let go after %s: %d events stored; its client may continue it", ls.key, why, ls.n)
	}
	s.drop(ls)
	return err
}

// acquireLarge waits for the right to store a large batch.
func (s *publishServer) acquireLarge(ctx context.Context) error {
	select {
	case s.large <- struct{}{}:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (s *publishServer) releaseLarge() { <-s.large }

// refused logs a refusal; its message names the stream.
func (s *publishServer) refused(err error) {
	st := status.Convert(err)
	s.logf("refused (%s): %s", st.Code(), st.Message())
}

// callEnded notes why a call ended before the client half-closed it (for
// callLetGo's log line) and returns the call's status.
func (s *publishServer) callEnded(tc *toolCall, err error) error {
	if _, ok := status.FromError(err); !ok {
		err = status.FromContextError(err).Err()
	}
	tc.ended = status.Convert(err).Message()
	return err
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
			s.release(ls)
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
		req.OrderedBuildEvent = nil // r holds the event: a large one's request copy can go
		r.origin = origin(req.GetProjectId(), req.GetNotificationKeywords())
		if tc.key == "" {
			if req.GetCheckPrecedingLifecycleEventsPresent() {
				if err := s.checkPreceding(pctx, r.obe.GetStreamId()); err != nil {
					bad = err
					break
				}
			}
			tc.key, tc.id = r.key, proto.CloneOf(r.obe.GetStreamId())
		}
		if r.key != tc.key {
			bad = status.Errorf(codes.InvalidArgument, "stream %s: got an event of stream %s in the same call", tc.key, r.key)
			break
		}
		if ls == nil {
			if ls, err = s.lock(tc.key, clientOf(tc.source), tc.ls); err != nil {
				bad = err
				break
			}
			tc.ls = ls
			ls.holder = tc
			if err := s.open(pctx, ls, r, tc.source, "tool"); err != nil {
				bad = err
				break
			}
			last, finished = ls.last, ls.finished
		}
		a, err := s.offer(pctx, ls, r, tc.prev, last, finished)
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
	now := s.opts.Now()
	for _, ls := range s.snapshot() {
		idle := now.Sub(time.Unix(0, ls.active.Load()))
		if s.opts.IdleTimeout > 0 && idle >= s.opts.IdleTimeout {
			// A call in the middle of a batch holds the lock: it is
			// not idle.
			if ls.mu.TryLock() {
				if !ls.gone && now.Sub(time.Unix(0, ls.active.Load())) >= s.opts.IdleTimeout {
					if err := s.letGo(ctx, ls, fmt.Sprintf("%v without an event", idle.Round(time.Second))); err != nil {
						errs = append(errs, fmt.Errorf("stream %s: %w", ls.key, err))
					}
				}
				ls.mu.Unlock()
				continue
			}
		}
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

// OpenStreams implements PublishServer.
func (s *publishServer) OpenStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
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
				s.logf("stream %s closed unfinished: %d events", ls.key, ls.n)
			}
		}
		s.drop(ls)
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
