package server

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/buildgridpb"
)

// Source finds the streams a query asks for.
type Source interface {
	// MatchingStreams returns the streams whose key the regular expression
	// pattern matches anywhere, sorted by key. An invalid pattern gives an
	// error wrapping a *syntax.Error.
	MatchingStreams(ctx context.Context, pattern string) ([]*store.Stream, error)
}

// MemorySource answers from an in-memory storage only, as BuildGrid does.
func MemorySource(mem *store.Storage) Source { return memorySource{mem} }

type memorySource struct{ mem *store.Storage }

func (m memorySource) MatchingStreams(_ context.Context, pattern string) ([]*store.Stream, error) {
	return m.mem.MatchingStreams(pattern)
}

// StoreSource answers from mem and the persistent store together: a
// stream in mem (one a server is receiving or received) is taken from
// there, any other from the store, so a query sees the same streams as
// `bes streams --match` on the store, and the live ones up to their last
// event.
func StoreSource(mem *store.Storage, disk store.Backend) Source { return storeSource{mem, disk} }

type storeSource struct {
	mem  *store.Storage
	disk store.Backend
}

func (s storeSource) MatchingStreams(ctx context.Context, pattern string) ([]*store.Stream, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("invalid stream key pattern %q: %w", pattern, err)
	}
	out, err := s.mem.MatchingStreams(pattern)
	if err != nil {
		return nil, err
	}
	inMem := map[string]bool{}
	for _, st := range out {
		inMem[st.Key()] = true
	}
	var entries []*store.Entry
	err = s.disk.ListMatching(ctx, re.MatchString, func(e *store.Entry) error {
		if !inMem[e.Key] {
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		st, err := s.disk.Load(ctx, e)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed since the index was read
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b *store.Stream) int { return strings.Compare(a.Key(), b.Key()) })
	return out, nil
}

type queryServer struct {
	buildgridpb.UnimplementedQueryBuildEventsServer
	src Source
}

// NewQueryBuildEventsServer returns BuildGrid's query service over src:
// QueryEventStreams returns every stream whose key build_id_pattern
// matches anywhere (the pattern is a regular expression searched in the
// whole key "<build_id>.<component>.<invocation_id>", not only in the build
// id), with all its events, sorted by key. An invalid pattern is
// InvalidArgument.
func NewQueryBuildEventsServer(src Source) buildgridpb.QueryBuildEventsServer {
	return &queryServer{src: src}
}

func (q *queryServer) QueryEventStreams(ctx context.Context, req *buildgridpb.QueryEventStreamsRequest) (*buildgridpb.QueryEventStreamsResponse, error) {
	streams, err := q.src.MatchingStreams(ctx, req.GetBuildIdPattern())
	if err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			return nil, status.Errorf(codes.InvalidArgument, "build_id_pattern: %v", err)
		}
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, status.Errorf(codes.Internal, "query %q: %v", req.GetBuildIdPattern(), err)
	}
	resp := &buildgridpb.QueryEventStreamsResponse{Streams: make([]*buildgridpb.QueryEventStreamsResponse_BuildEventStream, 0, len(streams))}
	for _, st := range streams {
		m, err := st.ToProto()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "query %q: %v", req.GetBuildIdPattern(), err)
		}
		resp.Streams = append(resp.Streams, m)
	}
	return resp, nil
}
