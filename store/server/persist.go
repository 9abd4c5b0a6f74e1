package server

import (
	"context"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/local"
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

// LocalPersister persists streams to a local store, appending to their
// stream files as events arrive (see local.Appender).
type LocalPersister struct {
	st            *local.Store
	format        string
	indexInterval time.Duration
}

var _ Persister = (*LocalPersister)(nil)

// NewLocalPersister returns a Persister writing to st. format is recorded
// in the entries of new streams (e.g. "grpc"); indexInterval is how often,
// at most, a stream's index entry is rewritten while its events arrive (0:
// local.DefaultIndexInterval).
func NewLocalPersister(st *local.Store, format string, indexInterval time.Duration) *LocalPersister {
	return &LocalPersister{st: st, format: format, indexInterval: indexInterval}
}

// Open implements Persister with local.Store.OpenAppend.
func (p *LocalPersister) Open(ctx context.Context, st *bepfile.Stream, source string) (Sink, *store.Stream, error) {
	a, stored, err := p.st.OpenAppend(ctx, st, local.AppendOptions{Source: source, Format: p.format, IndexInterval: p.indexInterval})
	if err != nil {
		return nil, nil, err
	}
	return appenderSink{a}, stored, nil
}

type appenderSink struct{ a *local.Appender }

func (s appenderSink) Append(ev *bepfile.Event) error  { return s.a.Append(ev) }
func (s appenderSink) Sync(ctx context.Context) error  { return s.a.Sync(ctx) }
func (s appenderSink) Flush(ctx context.Context) error { return s.a.Flush(ctx) }
func (s appenderSink) Close(ctx context.Context) error { _, err := s.a.Close(ctx); return err }
