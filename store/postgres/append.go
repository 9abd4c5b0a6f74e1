package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/jackc/pgx/v5"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
	"github.com/bes-cli/bes/store/local"
)

// ErrFenced is wrapped by the error of an Appender whose stream another
// writer changed under it (its lock lost with its connection, then the
// stream continued, replaced or deleted elsewhere): nothing it had not
// synced is stored, and it keeps failing. Test for it with errors.Is.
var ErrFenced = errors.New("the stream was changed by another writer")

// Appender writes a stream live (store.Appender): each Sync uploads the
// events appended since the last one as one chunk blob, then adds the
// chunk's row and the stream's new entry in one transaction, on condition
// that the stream's row is still as this Appender left it (see the
// package doc). The entry is thus up to date after every Sync;
// AppendOptions.IndexInterval is not needed. An Appender is not safe for
// concurrent use.
type Appender struct {
	s       *Store
	stream  *bepfile.Stream
	gen     string // the body's generation
	n       int    // chunks stored
	h       hash.Hash
	enc     bess.Encoder
	pending bytes.Buffer
	meta    store.Meta
	facts   *store.FactsBuilder
	size    int64 // bytes stored
	events  int64 // events stored
	entry   store.Entry
	err     error
	closed  bool
	final   *store.Entry
}

var _ store.Appender = (*Appender)(nil)

// appendLock takes the session advisory lock that marks key as held by an
// Appender of this Store, on the Store's lock connection (opened the first
// time): false if another session holds it. The lock lasts until
// appendUnlock or the end of the connection (the process's).
func (s *Store) appendLock(ctx context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lockConn == nil || s.lockConn.IsClosed() {
		c, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
		if err != nil {
			return false, catalogErr(ctx, err)
		}
		s.lockConn = c
	}
	var ok bool
	if err := s.lockConn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, s.lockID('A', key)).Scan(&ok); err != nil {
		// A connection that failed is opened again next time; the locks
		// it held are gone with it, and their Appenders fenced.
		s.lockConn.Close(context.WithoutCancel(ctx))
		s.lockConn = nil
		return false, catalogErr(ctx, err)
	}
	return ok, nil
}

// appendUnlock releases key's appender lock and the Store's hold of it.
func (s *Store) appendUnlock(ctx context.Context, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.held, key)
	if s.lockConn != nil && !s.lockConn.IsClosed() {
		if _, err := s.lockConn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, s.lockID('A', key)); err != nil {
			s.lockConn.Close(context.WithoutCancel(ctx))
			s.lockConn = nil
		}
	}
}

// OpenAppend opens the stream of st for appending (store.Backend): a new
// stream is created, its header chunk uploaded and its row listed, at
// once; a stored one (committed whole, or left by an Appender in any
// process, a killed one included) is continued after its last stored
// chunk, and its events returned. A stream an Appender holds, in any
// process, gives an error wrapping store.ErrStreamBusy.
func (s *Store) OpenAppend(ctx context.Context, st *bepfile.Stream, opts store.AppendOptions) (store.Appender, *store.Stream, error) {
	info, err := checkStream("append", st)
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	key := info.Key
	busy := fmt.Errorf("store: stream %s: %w", local.ShortKey(key), store.ErrStreamBusy)
	s.mu.Lock()
	if s.held[key] {
		s.mu.Unlock()
		return nil, nil, busy
	}
	s.held[key] = true
	s.mu.Unlock()

	a := &Appender{s: s, h: sha256.New(), stream: info, gen: randomHex()}
	a.enc.SetWriter(&a.pending)
	a.entry = store.Entry{Source: opts.Source, Format: opts.Format, Ingested: s.now().UTC()}
	// The header chunk of a new stream is uploaded before the
	// transaction, which holds a connection, and removed if the stream
	// turns out to be stored.
	if _, err := a.enc.Header(info); err != nil {
		return nil, nil, err
	}
	head, err := a.upload(ctx)
	if err != nil {
		s.mu.Lock()
		delete(s.held, key)
		s.mu.Unlock()
		return nil, nil, err
	}
	locked := false
	var old *store.Entry
	var gen string
	var n int
	err = s.tx(ctx, func(tx pgx.Tx) error {
		// The short lock first, so that no commit or delete is between
		// its check of the appender lock and its change.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockID('K', key)); err != nil {
			return err
		}
		ok, err := s.appendLock(ctx, key)
		if err != nil {
			return err
		}
		if !ok {
			return busy
		}
		locked = true
		old, gen, n, err = getStream(ctx, tx, key)
		if err != nil || old != nil {
			return err
		}
		return a.commitChunk(ctx, tx, head, true)
	})
	if err != nil || old != nil {
		a.s.blobs.remove(context.WithoutCancel(ctx), head)
	}
	if err == nil && old != nil {
		a.gen, a.n = gen, n
		a.h.Reset()
		a.pending.Reset()
		a.entry = store.Entry{Source: old.Source, Format: old.Format, Ingested: old.Ingested}
		var loaded *store.Stream
		loaded, err = a.resume(ctx, key)
		if err == nil {
			return a, loaded, nil
		}
	}
	if err != nil {
		if locked {
			s.appendUnlock(ctx, key)
		} else {
			s.mu.Lock()
			delete(s.held, key)
			s.mu.Unlock()
		}
		return nil, nil, err
	}
	return a, nil, nil
}

// resume reads the stored body of a's stream: its events, into a stream it
// returns, its metadata, facts and digest, and the encoder's state.
func (a *Appender) resume(ctx context.Context, key string) (*store.Stream, error) {
	chunks, gen, err := a.s.body(ctx, key)
	if err != nil {
		return nil, err
	}
	if gen != a.gen || len(chunks) != a.n {
		return nil, fmt.Errorf("store: stream %s: %w", local.ShortKey(key), ErrFenced)
	}
	var total int64
	for _, c := range chunks {
		total += c.size
	}
	cr := &chunkReader{ctx: ctx, b: a.s.blobs, chunks: chunks}
	defer cr.Close()
	rd, err := bess.NewReader(io.TeeReader(cr, a.h), bodyDir(key, gen), total)
	if err != nil {
		return nil, err
	}
	a.stream = rd.Stream()
	loaded := store.NewStreamFromInfo(a.stream)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		a.meta.Observe(ev)
		a.observeFacts(ev)
		loaded.Append(*ev)
	}
	a.enc.Continue(rd)
	a.size = total
	a.events = a.meta.Events
	return loaded, nil
}

// upload writes the pending bytes as the blob of the next chunk, and
// returns its name.
func (a *Appender) upload(ctx context.Context) (string, error) {
	name := chunkName(bodyDir(a.stream.Key, a.gen), a.n)
	if err := a.s.blobs.put(ctx, name, bytes.NewReader(a.pending.Bytes())); err != nil {
		return "", err
	}
	return name, nil
}

// commitChunk adds, in tx, the row of the chunk uploaded as name (the
// pending bytes) and writes the stream's entry, on condition that the
// stream's row is as a left it (first: the row is new). The Appender's
// state follows; after an error it is not to be used.
func (a *Appender) commitChunk(ctx context.Context, tx pgx.Tx, name string, first bool) error {
	data := a.pending.Bytes()
	a.h.Write(data)
	m := a.meta
	e := local.NewEntry(a.stream, &m)
	e.File = bodyDir(a.stream.Key, a.gen)
	e.Size = a.size + int64(len(data))
	e.Digest = hex.EncodeToString(a.h.Sum(nil))
	e.Source, e.Format, e.Ingested = a.entry.Source, a.entry.Format, a.entry.Ingested
	kid := kidOf(a.stream.Key)
	if first {
		if err := putStream(ctx, tx, e, a.gen, 1); err != nil {
			return err
		}
	} else {
		ss, sn := unix(e.Start)
		fs, fn := unix(e.Finish)
		tag, err := tx.Exec(ctx, `UPDATE streams SET events=$1, complete=$2, command=$3, result=$4, exit_code=$5,
			has_exit_code=$6, start_sec=$7, start_nsec=$8, finish_sec=$9, finish_nsec=$10, size=$11, digest=$12,
			chunks=chunks+1 WHERE kid=$13 AND gen=$14 AND chunks=$15`,
			e.Events, e.Complete, []byte(e.Command), []byte(e.Result), e.ExitCode, e.HasExitCode, ss, sn, fs, fn,
			e.Size, e.Digest, kid, a.gen, a.n)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("store: stream %s: %w", local.ShortKey(a.stream.Key), ErrFenced)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO chunks(kid, n, blob, size, events) VALUES($1,$2,$3,$4,$5)`,
		kid, a.n, name, int64(len(data)), m.Events-a.events); err != nil {
		return err
	}
	a.n++
	a.size = e.Size
	a.events = m.Events
	a.pending.Reset()
	return nil
}

// syncPending stores the pending bytes as the next chunk: upload, then one
// transaction (with more in it when also is not nil). A blob whose
// transaction failed is removed.
func (a *Appender) syncPending(ctx context.Context, also func(tx pgx.Tx) error) error {
	var name string
	if a.pending.Len() > 0 {
		var err error
		if name, err = a.upload(ctx); err != nil {
			return err
		}
	}
	err := a.s.tx(ctx, func(tx pgx.Tx) error {
		if name != "" {
			if err := a.commitChunk(ctx, tx, name, false); err != nil {
				return err
			}
		}
		if also != nil {
			return also(tx)
		}
		return nil
	})
	if err != nil && name != "" {
		a.s.blobs.remove(context.WithoutCancel(ctx), name)
	}
	return err
}

// Stream returns the identity of the stream, as stored.
func (a *Appender) Stream() *bepfile.Stream { return a.stream }

// Events returns the number of events stored.
func (a *Appender) Events() int64 { return a.events }

// Meta returns the metadata of the events appended so far.
func (a *Appender) Meta() store.Meta { return a.meta }

// Append encodes one event; the next Sync stores it.
func (a *Appender) Append(ev *bepfile.Event) error {
	if a.closed {
		return store.ErrWriterClosed
	}
	if a.err != nil {
		return a.err
	}
	if _, err := a.enc.Record(ev); err != nil { // a bytes.Buffer: cannot fail
		return err
	}
	a.meta.Observe(ev)
	a.observeFacts(ev)
	return nil
}

func (a *Appender) observeFacts(ev *bepfile.Event) {
	if a.facts == nil {
		a.facts = store.NewFactsBuilder(a.stream)
	}
	a.facts.Add(ev)
}

// Sync stores the events appended since the last Sync as one chunk: when
// it returns nil they are in the bucket and the catalog, and the entry
// counts them. After a failure the Appender keeps failing.
func (a *Appender) Sync(ctx context.Context) error {
	if a.closed {
		return store.ErrWriterClosed
	}
	if a.err != nil {
		return a.err
	}
	if a.pending.Len() == 0 {
		return nil
	}
	if err := a.syncPending(ctx, nil); err != nil {
		a.err = err
		return err
	}
	return nil
}

// Flush does nothing more than check the Appender: Sync keeps the entry up
// to date.
func (a *Appender) Flush(context.Context) error {
	if a.closed {
		return store.ErrWriterClosed
	}
	return a.err
}

// Close syncs what is pending, stores the stream's facts, compacts the
// stream's chunks into one blob (compact) and releases the stream. It
// returns the entry; later calls return the entry of the first.
func (a *Appender) Close(ctx context.Context) (*store.Entry, error) {
	if a.closed {
		e := *a.final
		return &e, nil
	}
	a.closed = true
	defer a.s.appendUnlock(ctx, a.stream.Key)
	var err error
	if a.err == nil {
		var facts *store.Facts
		if a.facts != nil {
			facts = a.facts.Facts()
		}
		err = a.syncPending(ctx, func(tx pgx.Tx) error {
			// The facts, if the stream is still ours.
			var ok bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM streams WHERE kid=$1 AND gen=$2 AND chunks=$3)`,
				kidOf(a.stream.Key), a.gen, a.n).Scan(&ok); err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("store: stream %s: %w", local.ShortKey(a.stream.Key), ErrFenced)
			}
			return putFacts(ctx, tx, a.stream.Key, facts)
		})
	} else {
		err = a.err
	}
	if err == nil && a.n > 1 {
		a.compact(ctx)
	}
	m := a.meta
	m.Events = a.events
	e := local.NewEntry(a.stream, &m)
	e.File = bodyDir(a.stream.Key, a.gen)
	e.Size = a.size
	e.Digest = hex.EncodeToString(a.h.Sum(nil))
	e.Source, e.Format, e.Ingested = a.entry.Source, a.entry.Format, a.entry.Ingested
	a.final = e
	c := *e
	return &c, err
}

// compact replaces the chunks of a's stream, one per Sync, with one blob
// holding them all, so that reading the stream later is one request: the
// new blob is uploaded from the old ones, then one transaction, on
// condition that the stream is still as a left it, lists it in their
// place and moves them to the garbage (readers that had started reading
// them finish within GraceAfterDelete). The body's bytes, and so the
// entry, do not change. It is best effort: after a failure the chunks
// stay as they were, as readable.
func (a *Appender) compact(ctx context.Context) {
	key := a.stream.Key
	chunks, gen, err := a.s.body(ctx, key)
	if err != nil || gen != a.gen || len(chunks) != a.n {
		return
	}
	var total int64
	for _, c := range chunks {
		total += c.size
	}
	if total != a.size {
		return
	}
	cr := &chunkReader{ctx: ctx, b: a.s.blobs, chunks: chunks}
	name := chunkName(bodyDir(key, a.gen), 0)
	err = a.s.blobs.put(ctx, name, cr)
	cr.Close()
	if err != nil {
		a.s.blobs.remove(context.WithoutCancel(ctx), name)
		return
	}
	kid := kidOf(key)
	err = a.s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE streams SET chunks = 1 WHERE kid = $1 AND gen = $2 AND chunks = $3 AND size = $4`,
			kid, a.gen, a.n, a.size)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return ErrFenced
		}
		if err := discard(ctx, tx, key); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO chunks(kid, n, blob, size, events) VALUES($1, 0, $2, $3, $4)`, kid, name, a.size, a.events)
		return err
	})
	if err != nil {
		a.s.blobs.remove(context.WithoutCancel(ctx), name)
		return
	}
	a.n = 1
	a.s.sweep(ctx)
}
