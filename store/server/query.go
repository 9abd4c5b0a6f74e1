package server

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bespb"
	"github.com/bes-cli/bes/store/buildgridpb"
)

// Limits of QueryEventStreams (issue 13: one QueryEventStreams(".*") on a
// 350 MB store took 2.6 GB, as one message no client could receive).
// BuildGrid's QueryEventStreamsResponse has no paging, so an answer over a
// limit is refused, not cut.
const (
	// DefaultMaxQueryResponse is the largest answer, in encoded bytes:
	// 4 MiB, the most a gRPC client receives unless told otherwise
	// (grpc.MaxCallRecvMsgSize's default).
	DefaultMaxQueryResponse = 4 << 20
	// DefaultMaxQueryStreams is the most streams in one answer.
	DefaultMaxQueryStreams = 10000
	// DefaultMaxConcurrentQueries is how many queries are answered at
	// once; more wait for one to end.
	DefaultMaxConcurrentQueries = 4
	// MaxQueryPattern is the longest build_id_pattern, in bytes.
	MaxQueryPattern = 4 << 10
	// DefaultStreamMessage is the most bytes of events in one message of
	// StreamEventStreams (issue 14): with the stream id around them, a
	// message stays well under the 4 MiB a gRPC client receives by
	// default. A larger event is sent in parts of this size.
	DefaultStreamMessage = 1 << 20
)

// streamMethod names the streaming query in messages.
const streamMethod = "bes.v1.StreamQuery/StreamEventStreams"

// QueryOptions configure the query service; zero values mean the defaults.
type QueryOptions struct {
	MaxResponse   int // bytes; DefaultMaxQueryResponse
	MaxStreams    int // DefaultMaxQueryStreams
	MaxConcurrent int // DefaultMaxConcurrentQueries
	// StreamMessage bounds the bytes of events in one message of
	// StreamEventStreams; DefaultStreamMessage.
	StreamMessage int
}

type queryServer struct {
	buildgridpb.UnimplementedQueryBuildEventsServer
	st   store.Backend
	opts QueryOptions
	sem  chan struct{}
}

// NewQueryBuildEventsServer returns BuildGrid's query service over the
// store st, the one truth the publish service writes to (a stream being
// received is read up to its last acknowledged event):
// QueryEventStreams returns every stream whose key build_id_pattern
// matches anywhere (the pattern is a Go regular expression searched in the
// whole key "<build_id>.<component>.<invocation_id>", as BuildGrid's
// get_matching_streams does, not only in the build id), with all its
// events, sorted by key.
//
// An invalid pattern, or one over MaxQueryPattern bytes, is
// InvalidArgument. An answer of more than opts.MaxResponse bytes or
// opts.MaxStreams streams is refused with ResourceExhausted naming the
// limit and how to narrow the pattern; the server reads no more of the
// store than the limit (the catalog's counts tell it early when the answer
// cannot fit). At most opts.MaxConcurrent queries run at once, so that the
// memory of queries is bounded by about MaxConcurrent × 2 × MaxResponse.
// It is safe for concurrent use.
func NewQueryBuildEventsServer(st store.Backend, opts QueryOptions) buildgridpb.QueryBuildEventsServer {
	q, _ := NewQueryServers(st, opts)
	return q
}

// NewQueryServers returns BuildGrid's query service (as
// NewQueryBuildEventsServer) and bes's streaming one
// (bespb.StreamQueryServer) over the store st, sharing opts.MaxConcurrent.
//
// StreamEventStreams answers what QueryEventStreams would (the same
// pattern rules and errors, the same streams in the same order, the same
// events) in any size: as a stream of messages each holding at most
// opts.StreamMessage bytes of events, a stream's events split over as many
// messages as they need (each naming the stream, the first marked first),
// and an event larger than that in parts of its encoding (event_part,
// event_part_last). Only opts.MaxStreams applies (ResourceExhausted over
// it): the entries of the answer are listed before its first message. Its
// memory is one message and one event; it sends as fast as the client
// reads (gRPC flow control), holding one of opts.MaxConcurrent places
// meanwhile. A match of nothing is no message and OK.
func NewQueryServers(st store.Backend, opts QueryOptions) (buildgridpb.QueryBuildEventsServer, bespb.StreamQueryServer) {
	if opts.MaxResponse <= 0 {
		opts.MaxResponse = DefaultMaxQueryResponse
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = DefaultMaxQueryStreams
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrentQueries
	}
	if opts.StreamMessage <= 0 {
		opts.StreamMessage = DefaultStreamMessage
	}
	q := &queryServer{st: st, opts: opts, sem: make(chan struct{}, opts.MaxConcurrent)}
	return q, &streamQueryServer{q: q}
}

// errOverLimit stops reading when the answer cannot fit.
var errOverLimit = errors.New("over the limit")

func (q *queryServer) tooBig(pattern, what string) error {
	return status.Errorf(codes.ResourceExhausted,
		"build_id_pattern %q: the answer would exceed %s (QueryEventStreams answers in one message, at most %d bytes and %d streams, so that a gRPC client with its default 4 MiB limit receives it); receive it whole, in messages under 4 MiB, with %s; or narrow the pattern, e.g. to one invocation (\"INVOCATION_ID$\") or one build (\"^BUILD_ID\\\\.\"), or read the store with bes dump",
		pattern, what, q.opts.MaxResponse, q.opts.MaxStreams, streamMethod)
}

// entryLowerBound is fewer bytes than the stream e describes takes in an
// answer: the stream's framing and its id (at least len(key)-3 bytes
// encoded), and each event's framing and copy of the id.
func entryLowerBound(e *store.Entry) int64 {
	return int64(max(len(e.Key)-2, 1)) * (1 + max(e.Events, 0))
}

// entryID is the stream id an entry describes.
func entryID(e *store.Entry) *buildpb.StreamId {
	return &buildpb.StreamId{BuildId: e.BuildID, InvocationId: e.InvocationID, Component: buildpb.StreamId_BuildComponent(e.Component)}
}

// compile checks a build_id_pattern.
func compilePattern(pattern string) (*regexp.Regexp, error) {
	if len(pattern) > MaxQueryPattern {
		return nil, status.Errorf(codes.InvalidArgument, "build_id_pattern: %d bytes, over the limit of %d", len(pattern), MaxQueryPattern)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "build_id_pattern: invalid stream key pattern %q: %v", pattern, err)
	}
	return re, nil
}

// acquire waits for one of the MaxConcurrent places of queries; release
// gives it back.
func (q *queryServer) acquire(ctx context.Context) error {
	select {
	case q.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (q *queryServer) release() { <-q.sem }

// failure is the status of a query that failed reading the store.
func failure(ctx context.Context, pattern string, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	if _, ok := status.FromError(err); ok {
		return err // the client's call failed (a send)
	}
	return status.Errorf(codes.Internal, "query %q: %v", pattern, err)
}

func (q *queryServer) QueryEventStreams(ctx context.Context, req *buildgridpb.QueryEventStreamsRequest) (*buildgridpb.QueryEventStreamsResponse, error) {
	pattern := req.GetBuildIdPattern()
	re, err := compilePattern(pattern)
	if err != nil {
		return nil, err
	}
	if err := q.acquire(ctx); err != nil {
		return nil, err
	}
	defer q.release()
	fail := func(err error) error { return failure(ctx, pattern, err) }

	var ents []*store.Entry
	var lower int64
	err = q.st.ListMatching(ctx, re.MatchString, func(e *store.Entry) error {
		if len(ents) >= q.opts.MaxStreams {
			return errOverLimit
		}
		if lower += entryLowerBound(e); lower > int64(q.opts.MaxResponse) {
			return errOverLimit
		}
		ents = append(ents, e)
		return nil
	})
	if errors.Is(err, errOverLimit) {
		if len(ents) >= q.opts.MaxStreams {
			return nil, q.tooBig(pattern, fmt.Sprintf("%d streams", q.opts.MaxStreams))
		}
		return nil, q.tooBig(pattern, fmt.Sprintf("%d bytes", q.opts.MaxResponse))
	}
	if err != nil {
		return nil, fail(err)
	}

	resp := &buildgridpb.QueryEventStreamsResponse{Streams: make([]*buildgridpb.QueryEventStreamsResponse_BuildEventStream, 0, len(ents))}
	size := 0 // of resp, encoded
	var buf []byte
	for _, e := range ents {
		m := &buildgridpb.QueryEventStreamsResponse_BuildEventStream{StreamId: entryID(e)}
		idSet := false
		inner := 0 // of m, encoded
		err := q.st.Events(ctx, e, func(st *bepfile.Stream, ev *bepfile.Event) error {
			if !idSet {
				m.StreamId, idSet = proto.CloneOf(st.ID), true
			}
			buf = ev.AppendEncoding(buf[:0], st)
			if size+len(buf) > q.opts.MaxResponse {
				return errOverLimit
			}
			obe := &buildpb.OrderedBuildEvent{}
			if err := proto.Unmarshal(buf, obe); err != nil {
				return fmt.Errorf("stream %s: event %d: %w", e.Key, ev.Seq, err)
			}
			n := proto.Size(obe)
			inner += protowire.SizeTag(2) + protowire.SizeBytes(n)
			if size+inner > q.opts.MaxResponse {
				return errOverLimit
			}
			m.Events = append(m.Events, obe)
			return nil
		})
		if errors.Is(err, store.ErrNotFound) {
			continue // removed since the catalog was read
		}
		if errors.Is(err, errOverLimit) {
			return nil, q.tooBig(pattern, fmt.Sprintf("%d bytes", q.opts.MaxResponse))
		}
		if err != nil {
			return nil, fail(err)
		}
		inner += protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(m.StreamId))
		size += protowire.SizeTag(1) + protowire.SizeBytes(inner)
		if size > q.opts.MaxResponse {
			return nil, q.tooBig(pattern, fmt.Sprintf("%d bytes", q.opts.MaxResponse))
		}
		resp.Streams = append(resp.Streams, m)
	}
	return resp, nil
}

// streamQueryServer is bes's streaming query service (NewQueryServers).
type streamQueryServer struct {
	bespb.UnimplementedStreamQueryServer
	q *queryServer
}

func (sq *streamQueryServer) StreamEventStreams(req *bespb.StreamEventStreamsRequest, call bespb.StreamQuery_StreamEventStreamsServer) error {
	q := sq.q
	ctx := call.Context()
	pattern := req.GetBuildIdPattern()
	re, err := compilePattern(pattern)
	if err != nil {
		return err
	}
	if err := q.acquire(ctx); err != nil {
		return err
	}
	defer q.release()

	var ents []*store.Entry
	err = q.st.ListMatching(ctx, re.MatchString, func(e *store.Entry) error {
		if len(ents) >= q.opts.MaxStreams {
			return errOverLimit
		}
		ents = append(ents, e)
		return nil
	})
	if errors.Is(err, errOverLimit) {
		return status.Errorf(codes.ResourceExhausted, "build_id_pattern %q: the answer would exceed %d streams, the most one answer lists; narrow the pattern, e.g. to one build (\"^BUILD_ID\\\\.\"), or read the store with bes dump", pattern, q.opts.MaxStreams)
	}
	if err != nil {
		return failure(ctx, pattern, err)
	}

	limit := q.opts.StreamMessage
	var buf []byte
	for _, e := range ents {
		msg := &bespb.StreamEventStreamsResponse{StreamId: entryID(e), First: true}
		size, sent := 0, false // bytes of events in msg; a message of the stream was sent
		send := func() error {
			if err := call.Send(msg); err != nil {
				return err
			}
			msg = &bespb.StreamEventStreamsResponse{StreamId: msg.StreamId}
			size, sent = 0, true
			return nil
		}
		err := q.st.Events(ctx, e, func(st *bepfile.Stream, ev *bepfile.Event) error {
			if !sent && size == 0 {
				msg.StreamId = proto.CloneOf(st.ID)
			}
			buf = ev.AppendEncoding(buf[:0], st)
			if size > 0 && size+len(buf) > limit {
				if err := send(); err != nil {
					return err
				}
			}
			if len(buf) > limit {
				// An event larger than a message: its encoding in
				// parts, in messages of their own.
				for off := 0; off < len(buf); off += limit {
					end := min(off+limit, len(buf))
					msg.EventPart, msg.EventPartLast = buf[off:end], end == len(buf)
					if err := send(); err != nil {
						return err
					}
				}
				return nil
			}
			obe := &buildpb.OrderedBuildEvent{}
			if err := proto.Unmarshal(buf, obe); err != nil {
				return fmt.Errorf("stream %s: event %d: %w", e.Key, ev.Seq, err)
			}
			msg.Events = append(msg.Events, obe)
			size += len(buf)
			return nil
		})
		if errors.Is(err, store.ErrNotFound) && !sent {
			continue // removed since the catalog was read
		}
		if err == nil && (!sent || size > 0) {
			err = send() // the stream's last events, or a stream without any
		}
		if err != nil {
			return failure(ctx, pattern, err)
		}
	}
	return nil
}
