// Package store keeps build event streams in memory, with the semantics of
// BuildGrid's BuildEventStreamStorage (buildgrid.server.build_events.storage).
//
// A stream is named by its key, "<build_id>.<component number>.<invocation_id>"
// (see Key). Storage maps keys to *Stream; a Stream holds its events in the
// compact bepfile.Event form and hands them back byte-identical to what was
// published. Both types are safe for concurrent use.
//
// The persistent, on-disk store lives in the subpackage store/local.
package store

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/wire"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ErrNotFound is returned (wrapped) when a stream asked for does not exist.
// Test for it with errors.Is.
var ErrNotFound = errors.New("stream not found")

// ErrWrongStream is returned (wrapped) by Stream.Publish when the event's
// stream id names another stream. Test for it with errors.Is.
var ErrWrongStream = errors.New("event belongs to another stream")

// DuplicateStreamError reports that a stream with Key already exists
// (BuildGrid's DuplicateStreamError). Test for it with errors.As.
type DuplicateStreamError struct {
	Key string
}

func (e *DuplicateStreamError) Error() string {
	return fmt.Sprintf("stream with key %s already exists", e.Key)
}

var _ error = (*DuplicateStreamError)(nil)

// Key returns BuildGrid's stream key for id:
// "<build_id>.<component number>.<invocation_id>", e.g. "B.3.I" for a Bazel
// tool stream and "B.1." for a build-level lifecycle stream. It is
// bepfile.Key. Distinct ids can share a key when the ids contain dots; as in
// BuildGrid, such streams are one stream.
func Key(id *buildpb.StreamId) string { return bepfile.Key(id) }

// Storage is an in-memory collection of streams, keyed by stream key.
// The zero value is not usable; create one with New. A Storage is safe for
// concurrent use by multiple goroutines.
type Storage struct {
	mu      sync.RWMutex
	streams map[string]*Stream
}

// New returns an empty Storage.
func New() *Storage {
	return &Storage{streams: make(map[string]*Stream)}
}

// NewStream creates an empty stream for id and returns it (BuildGrid's
// new_stream). If a stream with id's key exists already it returns a
// *DuplicateStreamError and changes nothing.
func (s *Storage) NewStream(id *buildpb.StreamId) (*Stream, error) {
	key := Key(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.streams[key]; ok {
		return nil, &DuplicateStreamError{Key: key}
	}
	st := newStream(id)
	s.streams[key] = st
	return st, nil
}

// GetStream returns the stream with id's key, creating an empty one when
// there is none (as BuildGrid's get_stream does). It never returns nil.
func (s *Storage) GetStream(id *buildpb.StreamId) *Stream {
	return s.getOrCreate(Key(id), func() *Stream { return newStream(id) })
}

// GetStreamFor is GetStream for a stream identity as a reader made it: a
// stream it creates keeps info, and so the exact bytes its id was read as.
func (s *Storage) GetStreamFor(info *bepfile.Stream) *Stream {
	return s.getOrCreate(info.Key, func() *Stream { return NewStreamFromInfo(info) })
}

func (s *Storage) getOrCreate(key string, create func() *Stream) *Stream {
	s.mu.RLock()
	st := s.streams[key]
	s.mu.RUnlock()
	if st != nil {
		return st
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[key]; st != nil {
		return st
	}
	st = create()
	s.streams[key] = st
	return st
}

// Lookup returns the stream with the given key, or an error wrapping
// ErrNotFound. Unlike GetStream it never creates a stream.
func (s *Storage) Lookup(key string) (*Stream, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if st := s.streams[key]; st != nil {
		return st, nil
	}
	return nil, fmt.Errorf("store: stream %q: %w", key, ErrNotFound)
}

// MatchingStreams returns every stream whose key the regular expression
// pattern matches anywhere (BuildGrid's get_matching_streams, which uses
// Python's re.search: the pattern is not anchored; use ^ and $ to anchor it).
// The result is sorted by key. An invalid pattern returns an error wrapping
// the *regexp/syntax.Error.
//
// The syntax is Go's RE2 (package regexp), not Python's re: it has no
// backreferences (\1), no lookahead or lookbehind ((?=…), (?!…), (?<=…)),
// no possessive quantifiers or atomic groups, and \Z is written \z. Named
// groups (?P<name>…), classes, and flags such as (?i) work as in Python.
// Matching runs in time linear in the key length.
func (s *Storage) MatchingStreams(pattern string) ([]*Stream, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("store: invalid stream key pattern %q: %w", pattern, err)
	}
	s.mu.RLock()
	var out []*Stream
	for key, st := range s.streams {
		if re.MatchString(key) {
			out = append(out, st)
		}
	}
	s.mu.RUnlock()
	sortStreams(out)
	return out, nil
}

// Streams returns every stream, sorted by key.
func (s *Storage) Streams() []*Stream {
	s.mu.RLock()
	out := make([]*Stream, 0, len(s.streams))
	for _, st := range s.streams {
		out = append(out, st)
	}
	s.mu.RUnlock()
	sortStreams(out)
	return out
}

// Len returns the number of streams.
func (s *Storage) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.streams)
}

// Add inserts a prebuilt stream, e.g. one replayed from disk (see
// NewStreamFromInfo). If a stream with its key exists already it returns a
// *DuplicateStreamError and changes nothing. The stream must not be added to
// two Storages that are changed independently: they would share its events.
func (s *Storage) Add(st *Stream) error {
	key := st.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.streams[key]; ok {
		return &DuplicateStreamError{Key: key}
	}
	s.streams[key] = st
	return nil
}

// Remove takes the stream with key out of the storage and returns it, or
// an error wrapping ErrNotFound. BuildGrid's storage never forgets a
// stream; Remove and Replace are what the Memory backend's Delete and
// replacing Commit need.
func (s *Storage) Remove(key string) (*Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	if st == nil {
		return nil, fmt.Errorf("store: stream %q: %w", key, ErrNotFound)
	}
	delete(s.streams, key)
	return st, nil
}

// Replace puts st in the storage in place of the stream with its key, or
// adds it when there is none, and returns the stream it replaced (nil if
// none). As with Add, st must belong to no other Storage.
func (s *Storage) Replace(st *Stream) (old *Stream) {
	key := st.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	old = s.streams[key]
	s.streams[key] = st
	return old
}

func sortStreams(sts []*Stream) {
	slices.SortFunc(sts, func(a, b *Stream) int { return strings.Compare(a.Key(), b.Key()) })
}

// streamInfo returns the bepfile.Stream for id with id's canonical encoding.
// It encodes with protowire rather than proto.Marshal so that it cannot fail
// (proto.Marshal rejects strings that are not UTF-8); for valid ids the bytes
// are those of bepfile.NewStream. The id is cloned, so later changes to the
// caller's message do not reach the store.
func streamInfo(id *buildpb.StreamId) *bepfile.Stream {
	var b []byte
	if v := id.GetBuildId(); v != "" {
		b = protowire.AppendTag(b, wire.StreamIDBuildID, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	if v := id.GetComponent(); v != 0 {
		b = protowire.AppendTag(b, wire.StreamIDComponent, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(v)))
	}
	if v := id.GetInvocationId(); v != "" {
		b = protowire.AppendTag(b, wire.StreamIDInvocationID, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	if b == nil {
		b = []byte{}
	}
	c := &buildpb.StreamId{
		BuildId:      id.GetBuildId(),
		Component:    id.GetComponent(),
		InvocationId: id.GetInvocationId(),
	}
	return &bepfile.Stream{ID: c, Key: Key(c), IDBytes: b, TypeURL: bepfile.BazelEventTypeURL}
}

// cloneID copies a StreamId (a nil id becomes an empty one).
func cloneID(id *buildpb.StreamId) *buildpb.StreamId {
	if id == nil {
		return &buildpb.StreamId{}
	}
	return proto.CloneOf(id)
}
