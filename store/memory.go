package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/invocation"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Memory adapts a Storage, BuildGrid's in-memory storage, to the Backend
// contract, for the places where streams need not outlive the process (a
// replay of files, tests). The Storage keeps its own semantics: Create and
// Commit are new_stream's (a *DuplicateStreamError for a key that exists
// with other content), OpenAppend is get_stream's (it creates the stream).
// What Storage does not hold itself, Memory keeps beside it: each
// stream's Source, Format and Ingested, and which streams an Appender
// holds. A stream put in the Storage by other means (Storage.GetStream) is
// listed too, with no Source, Format or Ingested.
//
// Entries describe the stream as it is in memory: File is empty; Size and
// Digest are the length and the hex SHA-256 of the stream written as a file
// of varint-delimited OrderedBuildEvents (what `bes dump --format obe`
// writes). Data are lost with the process: Close forgets nothing, and a
// Memory is never shared with another process.
//
// A Memory is safe for concurrent use.
type Memory struct {
	s   *Storage
	now func() time.Time

	mu   sync.Mutex // serialises commits, appender opening and closing, deletes
	info map[string]*memInfo
	held map[string]bool // keys an Appender holds
}

var (
	_ Backend     = (*Memory)(nil)
	_ FactsReader = (*Memory)(nil)
	_ FactsLister = (*Memory)(nil)
	_ Writer      = (*memWriter)(nil)
	_ Appender    = (*memAppender)(nil)
)

// memInfo is what Memory keeps beside a stream of the Storage.
type memInfo struct {
	source, format string
	ingested       time.Time

	// The entry last computed, for the stream st when it had n events.
	st    *Stream
	n     int
	entry *Entry
}

// NewMemory returns a Backend over s (a new Storage if s is nil). now
// stamps Entry.Ingested (nil: time.Now). s must not be changed by other
// means while Memory commits or deletes its streams.
func NewMemory(s *Storage, now func() time.Time) *Memory {
	if s == nil {
		s = New()
	}
	if now == nil {
		now = time.Now
	}
	return &Memory{s: s, now: now, info: map[string]*memInfo{}, held: map[string]bool{}}
}

// Storage returns the Storage m keeps its streams in.
func (m *Memory) Storage() *Storage { return m.s }

// checkStream validates st as Backend.Create asks, and returns a copy of
// it with the id decoded from its bytes.
func checkStream(op string, st *bepfile.Stream) (*bepfile.Stream, error) {
	if st == nil {
		return nil, fmt.Errorf("store: %s: nil stream", op)
	}
	id := &buildpb.StreamId{}
	if err := proto.Unmarshal(st.IDBytes, id); err != nil {
		return nil, fmt.Errorf("store: %s %q: bad stream id bytes: %w", op, st.Key, err)
	}
	if k := Key(id); k != st.Key {
		return nil, fmt.Errorf("store: %s %q: stream id bytes have key %q", op, st.Key, k)
	}
	return &bepfile.Stream{ID: id, Key: st.Key, IDBytes: bytes.Clone(st.IDBytes), TypeURL: st.TypeURL}, nil
}

// cloneEvent copies ev's bytes, so that the caller may reuse its buffers.
func cloneEvent(ev *bepfile.Event) bepfile.Event {
	c := *ev
	if c.Payload != nil {
		c.Payload = bytes.Clone(c.Payload)
	}
	if c.Raw != nil {
		c.Raw = bytes.Clone(c.Raw)
	}
	return c
}

// entryLocked returns the entry of st (m.mu held), computing it again
// only when the stream has changed since.
func (m *Memory) entryLocked(st *Stream) *Entry {
	in := m.info[st.Key()]
	if in == nil {
		in = &memInfo{}
		m.info[st.Key()] = in
	}
	n := st.Len()
	if in.entry == nil || in.st != st || in.n != n {
		in.st, in.n, in.entry = st, n, streamEntry(st, n)
	}
	e := *in.entry
	e.Source, e.Format, e.Ingested = in.source, in.format, in.ingested
	return &e
}

// streamEntry computes the entry of the first n events of st.
func streamEntry(st *Stream, n int) *Entry {
	info := st.Info()
	var meta Meta
	h := sha256.New()
	var size int64
	var buf, frame []byte
	st.mu.RLock()
	evs := st.events[:n:n]
	st.mu.RUnlock()
	for i := range evs {
		meta.Observe(&evs[i])
		buf = evs[i].AppendEncoding(buf[:0], info)
		frame = protowire.AppendVarint(frame[:0], uint64(len(buf)))
		h.Write(frame)
		h.Write(buf)
		size += int64(len(frame) + len(buf))
	}
	return &Entry{
		Key:          info.Key,
		BuildID:      info.ID.GetBuildId(),
		InvocationID: info.ID.GetInvocationId(),
		Component:    int32(info.ID.GetComponent()),
		Events:       meta.Events,
		Complete:     meta.Complete,
		Command:      meta.Command,
		Result:       meta.Result,
		ExitCode:     meta.ExitCode,
		HasExitCode:  meta.HasExitCode,
		Start:        meta.Start,
		Finish:       meta.Finish,
		Size:         size,
		Digest:       hex.EncodeToString(h.Sum(nil)),
	}
}

// Create implements Backend: the stream is built in a Stream of its own,
// which Commit adds to the Storage.
func (m *Memory) Create(_ context.Context, st *bepfile.Stream) (Writer, error) {
	info, err := checkStream("create", st)
	if err != nil {
		return nil, err
	}
	return &memWriter{m: m, st: NewStreamFromInfo(info)}, nil
}

// CommitAll implements Backend: the writers are committed in order,
// under one lock. A List running meanwhile may see part of the batch (the
// Storage has no transactions); a batch fails as a whole only when ctx is
// done before it starts.
func (m *Memory) CommitAll(ctx context.Context, ws []Writer, source, format string, replace bool) ([]CommitOutcome, error) {
	out := make([]CommitOutcome, len(ws))
	if err := ctx.Err(); err != nil {
		for _, w := range ws {
			w.Abort()
		}
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, w := range ws {
		mw, ok := w.(*memWriter)
		if !ok || mw.m != m {
			out[i].Err = fmt.Errorf("store: commit %q: the writer belongs to another store", w.Stream().Key)
			w.Abort()
			continue
		}
		out[i].Entry, out[i].Result, out[i].Err = mw.commitLocked(source, format, replace)
	}
	return out, nil
}

// OpenAppend implements Backend; the Appender appends to the stream in the
// Storage, so that readers see each event once Sync returns.
func (m *Memory) OpenAppend(ctx context.Context, st *bepfile.Stream, opts AppendOptions) (Appender, *Stream, error) {
	info, err := checkStream("append", st)
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.held[info.Key] {
		return nil, nil, fmt.Errorf("store: stream %q: %w", info.Key, ErrStreamBusy)
	}
	a := &memAppender{m: m}
	var loaded *Stream
	if old, err := m.s.Lookup(info.Key); err == nil {
		a.st = old
		loaded = NewStreamFromInfo(old.Info())
		for ev, err := range old.Query(ctx, nil) {
			if err != nil {
				return nil, nil, err
			}
			loaded.Append(*ev)
			a.meta.Observe(ev)
		}
	} else {
		a.st = NewStreamFromInfo(info)
		m.s.Replace(a.st)
		m.info[info.Key] = &memInfo{source: opts.Source, format: opts.Format, ingested: m.now().UTC()}
	}
	a.events = a.meta.Events
	m.held[info.Key] = true
	return a, loaded, nil
}

// Lookup implements Backend with ResolveRef over every stream.
func (m *Memory) Lookup(ctx context.Context, ref string) ([]*Entry, error) {
	if ref == "" {
		return nil, errors.New("store: empty stream reference")
	}
	var cands []*Entry
	err := m.ListMatching(ctx, func(key string) bool { return strings.HasPrefix(key, ref) || strings.HasSuffix(key, "."+ref) }, func(e *Entry) error {
		cands = append(cands, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	rc := make([]RefCandidate, len(cands))
	for i, e := range cands {
		rc[i] = e.Candidate()
	}
	sel, err := ResolveRef(ref, rc)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	out := make([]*Entry, len(sel))
	for i, j := range sel {
		out[i] = cands[j]
	}
	return out, nil
}

// List implements Backend. The entries are those of the streams as they
// are when List reaches them.
func (m *Memory) List(ctx context.Context, fn func(*Entry) error) error {
	return m.ListMatching(ctx, func(string) bool { return true }, fn)
}

// ListMatching implements Backend.
func (m *Memory) ListMatching(ctx context.Context, match func(key string) bool, fn func(*Entry) error) error {
	for _, st := range m.s.Streams() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !match(st.Key()) {
			continue
		}
		m.mu.Lock()
		e := m.entryLocked(st)
		m.mu.Unlock()
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// stream returns the stream e describes.
func (m *Memory) stream(e *Entry) (*Stream, error) {
	st, err := m.s.Lookup(e.Key)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Events implements Backend: the events are those of the stream when
// Events starts.
func (m *Memory) Events(ctx context.Context, e *Entry, fn func(*bepfile.Stream, *bepfile.Event) error) error {
	st, err := m.stream(e)
	if err != nil {
		return err
	}
	for ev, err := range st.Query(ctx, nil) {
		if err != nil {
			return err
		}
		c := *ev
		if err := fn(st.Info(), &c); err != nil {
			return err
		}
	}
	return nil
}

// Load implements Backend.
func (m *Memory) Load(ctx context.Context, e *Entry) (*Stream, error) {
	st, err := m.stream(e)
	if err != nil {
		return nil, err
	}
	out := NewStreamFromInfo(st.Info())
	for ev, err := range st.Query(ctx, nil) {
		if err != nil {
			return nil, err
		}
		out.Append(*ev)
	}
	return out, nil
}

// Delete implements Backend.
func (m *Memory) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.held[key] {
		return fmt.Errorf("store: delete %q: %w", key, ErrStreamBusy)
	}
	if _, err := m.s.Remove(key); err != nil {
		return fmt.Errorf("store: delete %q: %w", key, ErrNotFound)
	}
	delete(m.info, key)
	return nil
}

// Facts implements FactsReader: the facts of the stream's events as they
// are when Facts reads them (Memory keeps no facts beside its streams, so
// that they are always those of the events: of the last commit or
// replacement, of a live stream up to its last Sync, of every event once
// an Appender has closed it). nil, nil for a stream without Bazel events;
// an error wrapping ErrNotFound for a key not stored.
func (m *Memory) Facts(ctx context.Context, key string) (*Facts, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := m.s.Lookup(key)
	if err != nil {
		return nil, fmt.Errorf("store: %q: %w", key, ErrNotFound)
	}
	inv, err := invocation.Build(st.Info(), st.Query(ctx, nil), invocation.Wants{Targets: true}, nil)
	if err != nil {
		return nil, err
	}
	if inv.BazelEvents == 0 {
		return nil, nil
	}
	return FactsOf(inv), nil
}

// ManyFacts implements FactsLister, with Facts for each key.
func (m *Memory) ManyFacts(ctx context.Context, keys []string) ([]*Facts, error) {
	out := make([]*Facts, len(keys))
	for i, k := range keys {
		f, err := m.Facts(ctx, k)
		if err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}

// Location implements Backend.
func (m *Memory) Location() string { return "memory" }

// Close implements Backend; the streams stay in the Storage.
func (m *Memory) Close() error { return nil }

// memWriter is Memory's Writer.
type memWriter struct {
	m      *Memory
	st     *Stream
	meta   Meta
	closed bool
}

func (w *memWriter) Stream() *bepfile.Stream { return w.st.Info() }
func (w *memWriter) Meta() Meta              { return w.meta }

func (w *memWriter) Append(ev *bepfile.Event) error {
	if w.closed {
		return ErrWriterClosed
	}
	w.st.Append(cloneEvent(ev))
	w.meta.Observe(ev)
	return nil
}

func (w *memWriter) Commit(ctx context.Context, source, format string, replace bool) (*Entry, CommitResult, error) {
	if w.closed {
		return nil, 0, ErrWriterClosed
	}
	if err := ctx.Err(); err != nil {
		w.closed = true
		return nil, 0, err
	}
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	return w.commitLocked(source, format, replace)
}

// commitLocked is Commit with m.mu held.
func (w *memWriter) commitLocked(source, format string, replace bool) (*Entry, CommitResult, error) {
	if w.closed {
		return nil, 0, ErrWriterClosed
	}
	w.closed = true
	m, key := w.m, w.st.Key()
	if m.held[key] {
		return nil, 0, fmt.Errorf("store: stream %q: %w", key, ErrStreamBusy)
	}
	result := Created
	if old, err := m.s.Lookup(key); err == nil {
		oldEntry := m.entryLocked(old)
		newEntry := streamEntry(w.st, w.st.Len())
		if newEntry.Digest == oldEntry.Digest {
			return oldEntry, Unchanged, nil
		}
		if !replace {
			// Other bytes: the events decide (CommitExisting).
			res, err := CommitExisting(oldEntry, newEntry, CompareEvents(eventDigests(old), eventDigests(w.st)))
			if err != nil {
				return nil, 0, err
			}
			if res == Unchanged {
				return oldEntry, Unchanged, nil
			}
		}
		result = Replaced
	}
	m.s.Replace(w.st)
	m.info[key] = &memInfo{source: source, format: format, ingested: m.now().UTC()}
	return m.entryLocked(w.st), result, nil
}

// eventDigests returns the EventDigest of every event of st.
func eventDigests(st *Stream) []EventDigest {
	info := st.Info()
	st.mu.RLock()
	evs := st.events[:len(st.events):len(st.events)]
	st.mu.RUnlock()
	out := make([]EventDigest, len(evs))
	var buf []byte
	for i := range evs {
		out[i], buf = DigestEvent(info, &evs[i], buf)
	}
	return out
}

func (w *memWriter) Abort() error {
	w.closed = true
	return nil
}

// memAppender is Memory's Appender.
type memAppender struct {
	m       *Memory
	st      *Stream // the stream in the Storage
	pending []bepfile.Event
	meta    Meta
	events  int64
	closed  bool
	final   *Entry
}

func (a *memAppender) Stream() *bepfile.Stream { return a.st.Info() }
func (a *memAppender) Events() int64           { return a.events }
func (a *memAppender) Meta() Meta              { return a.meta }

func (a *memAppender) Append(ev *bepfile.Event) error {
	if a.closed {
		return ErrWriterClosed
	}
	a.pending = append(a.pending, cloneEvent(ev))
	a.meta.Observe(ev)
	return nil
}

func (a *memAppender) Sync(context.Context) error {
	if a.closed {
		return ErrWriterClosed
	}
	for _, ev := range a.pending {
		a.st.Append(ev)
	}
	a.events += int64(len(a.pending))
	a.pending = a.pending[:0]
	return nil
}

func (a *memAppender) Flush(context.Context) error {
	if a.closed {
		return ErrWriterClosed
	}
	return nil
}

func (a *memAppender) Close(ctx context.Context) (*Entry, error) {
	if a.closed {
		e := *a.final
		return &e, nil
	}
	a.Sync(ctx)
	a.closed = true
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	delete(a.m.held, a.st.Key())
	a.final = a.m.entryLocked(a.st)
	e := *a.final
	return &e, nil
}
