package server

import (
	"context"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// Persister makes the streams a server receives durable. The server calls
// it for one stream at a time (never concurrently for one stream).
type Persister interface {
	// Open starts persisting stream st, received from source (a peer
	// address). If the stream is already stored, Open returns its stored
	// events too, so that the server continues it; otherwise stored is
	// nil.
	Open(ctx context.Context, st *bepfile.Stream, source string) (sink Sink, stored *store.Stream, err error)
}

// Sink persists the events of one stream.
type Sink interface {
	// Append buffers one event.
	Append(ev *bepfile.Event) error
	// Sync makes every event appended so far durable; the server
	// acknowledges events only after Sync returned nil.
	Sync(ctx context.Context) error
	// Flush brings whatever index the sink keeps up to date with the
	// synced events (a sink may update it lazily in Sync).
	Flush(ctx context.Context) error
	// Close syncs and releases the stream.
	Close(ctx context.Context) error
}

// BackendPersister persists streams to a store.Backend, appending to them
// as events arrive (see store.Appender; with store/local, each stream's
// file is written in place).
type BackendPersister struct {
	st            store.Backend
	format        string
	indexInterval time.Duration
}

var _ Persister = (*BackendPersister)(nil)

// NewBackendPersister returns a Persister writing to st. format is
// recorded in the entries of new streams (e.g. "grpc"); indexInterval is
// how often, at most, a stream's entry is rewritten while its events
// arrive (0: the backend's default, store/local's DefaultIndexInterval).
func NewBackendPersister(st store.Backend, format string, indexInterval time.Duration) *BackendPersister {
	return &BackendPersister{st: st, format: format, indexInterval: indexInterval}
}

// Open implements Persister with store.Backend.OpenAppend.
func (p *BackendPersister) Open(ctx context.Context, st *bepfile.Stream, source string) (Sink, *store.Stream, error) {
	a, stored, err := p.st.OpenAppend(ctx, st, store.AppendOptions{Source: source, Format: p.format, IndexInterval: p.indexInterval})
	if err != nil {
		return nil, nil, err
	}
	return appenderSink{a}, stored, nil
}

type appenderSink struct{ a store.Appender }

func (s appenderSink) Append(ev *bepfile.Event) error  { return s.a.Append(ev) }
func (s appenderSink) Sync(ctx context.Context) error  { return s.a.Sync(ctx) }
func (s appenderSink) Flush(ctx context.Context) error { return s.a.Flush(ctx) }
func (s appenderSink) Close(ctx context.Context) error { _, err := s.a.Close(ctx); return err }
