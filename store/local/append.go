package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
)

// ErrStreamBusy is returned (wrapped) by OpenAppend when another Appender,
// in this process or another, holds the stream file: store.ErrStreamBusy.
// Test for it with errors.Is.
var ErrStreamBusy = store.ErrStreamBusy

// errTornHeader is a stream file whose header is cut short.
var errTornHeader = errors.New("stream file header cut short")

// DefaultIndexInterval is how often, at most, an Appender updates its
// catalog entry while events keep arriving.
const DefaultIndexInterval = time.Second

// AppendOptions configure OpenAppend (store.AppendOptions).
type AppendOptions = store.AppendOptions

// Appender writes a stream file in place, batch by batch, for a stream that
// arrives live (bes serve). Unlike StreamWriter, whose file appears whole at
// Commit, an Appender's stream is listed in the catalog as soon as OpenAppend
// returns, and every event is in the stream file, on disk, when Sync
// returns:
//
//   - Append encodes events into a buffer;
//   - Sync writes the buffer with one write, fsyncs the file, and now and
//     then (IndexInterval) updates the stream's catalog entry (event count,
//     size, digest, outcome): one row, in one small transaction;
//   - Close syncs, writes the final entry and releases the file.
//
// The entry may lag behind the file by up to IndexInterval while the stream
// is open, and after a crash until Reconcile (or OpenAppend of the same
// stream) corrects it; readers of the stream file (Load, Events) always see
// every synced event. The Appender holds an exclusive flock on its stream
// file, so two writers never append to one stream; Reconcile and OpenAppend
// leave a held file alone.
//
// An Appender is not safe for concurrent use. After a failed write or sync
// it keeps failing: close it and open the stream again, which cuts off
// anything not synced.
type Appender struct {
	s        *Store
	stream   *bepfile.Stream
	f        *os.File
	h        hash.Hash
	enc      bess.Encoder
	pending  bytes.Buffer
	meta     store.Meta
	facts    *store.FactsBuilder // the invocation's facts, from every event; written by Close
	size     int64               // bytes of the file that are synced
	events   int64               // events synced
	entry    Entry               // Source, Format, Ingested of the stream's entry
	interval time.Duration
	indexed  time.Time // when the entry was last written
	dirty    bool      // synced events the entry does not count yet
	err      error     // sticky
	closed   bool
}

// openAppend (OpenAppend in its store.Backend form) opens the stream file of st for appending, creating the stream
// (an empty stream file and its index entry, both synced) when it is not
// stored yet. When it is (a stream that a server received before it
// stopped, or one ingested from a file), OpenAppend returns its stored
// events as well, as a store.Stream belonging to no Storage, and appends
// after them. A file that ends inside a record (a writer killed during a
// write) is cut back to its last whole record first; those bytes were never
// synced, so never acknowledged.
//
// st.IDBytes must be a valid StreamId encoding whose key is st.Key; they
// and st.TypeURL are stored exactly for a new stream. A stream file held by
// another Appender gives an error wrapping ErrStreamBusy; a damaged one a
// *CorruptError.
func (s *Store) openAppend(ctx context.Context, st *bepfile.Stream, opts AppendOptions) (*Appender, *store.Stream, error) {
	id, err := checkStream("append", st)
	if err != nil {
		return nil, nil, err
	}
	path := filepath.Join(s.dir, FileName(st.Key))
	a := &Appender{s: s, h: sha256.New(), interval: opts.IndexInterval}
	if a.interval <= 0 {
		a.interval = DefaultIndexInterval
	}
	a.enc.SetWriter(&a.pending)
	var loaded *store.Stream
	// made: the stream file is one this call created (or found empty, left
	// by a crash before its header was synced). If the call fails (a disk
	// full while the header or the catalog is written: issue 13 found empty
	// stream files left behind), it is removed, still under its flock.
	made := false
	// All of it in one write transaction of the catalog: no other writer
	// (a commit, Repair, another OpenAppend) sees the stream file between
	// its flock and its entry, and a new stream is listed, with its synced
	// header, when the transaction commits.
	err = s.write(ctx, func(tx *sql.Tx) error {
		old, err := getEntryTx(ctx, tx, st.Key)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
		made = err == nil
		if errors.Is(err, fs.ErrExist) {
			f, err = os.OpenFile(path, os.O_RDWR|noFollow|nonBlock, 0)
		}
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("store: lock %s: %w", path, err)
		}
		if !ok {
			f.Close()
			return fmt.Errorf("store: stream %s: %w", ShortKey(st.Key), ErrStreamBusy)
		}
		a.f = f
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("store: %s is not a regular file but %s (bes store check --repair)", path, fileType(fi.Mode()))
		}
		fresh := fi.Size() == 0
		made = made || fresh
		if !fresh {
			loaded, err = a.resume(ctx, path, fi.Size())
			if errors.Is(err, errTornHeader) {
				// The header itself is cut short: a crash before it was
				// ever synced, so before the stream had an entry or any
				// event.
				if err := f.Truncate(0); err != nil {
					return fmt.Errorf("store: truncate %s: %w", path, err)
				}
				fresh, made, err = true, true, nil
			}
			if err != nil {
				return err
			}
		}
		a.entry = Entry{Source: opts.Source, Format: opts.Format, Ingested: s.now().UTC()}
		if old != nil {
			a.entry.Source, a.entry.Format, a.entry.Ingested = old.Source, old.Format, old.Ingested
		}
		if fresh {
			// A new stream (or a file left empty by a crash before its
			// header was synced).
			a.stream = &bepfile.Stream{ID: id, Key: st.Key, IDBytes: bytes.Clone(st.IDBytes), TypeURL: st.TypeURL}
			if _, err := a.enc.Header(a.stream); err != nil {
				return err
			}
			if err := a.writePending(); err != nil {
				return err
			}
			// The stream file's name is durable before the catalog names it.
			if err := s.syncDir(); err != nil {
				return fmt.Errorf("store: sync %s: %w", s.dir, err)
			}
		}
		return putEntryTx(ctx, tx, a.currentEntry())
	})
	if err != nil {
		if a.f != nil {
			if made {
				os.Remove(path) // best effort: else Check reports it
				s.syncDir()
			}
			unlockFile(a.f)
			a.f.Close()
		}
		return nil, nil, err
	}
	a.indexed = s.now()
	return a, loaded, nil
}

// resume reads the existing stream file of a: its events, into a stream it
// returns, its metadata and digest, and the encoder's state; a torn last
// record is cut off.
func (a *Appender) resume(ctx context.Context, path string, size int64) (*store.Stream, error) {
	rd, err := bess.NewReader(io.NewSectionReader(a.f, 0, size), path, size)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, errTornHeader
	}
	if err != nil {
		return nil, err
	}
	if want := FileName(rd.Stream().Key); filepath.Base(path) != want {
		return nil, &CorruptError{File: path, Err: fmt.Errorf("file holds stream %q, whose file name is %s", rd.Stream().Key, want)}
	}
	a.stream = rd.Stream()
	loaded := store.NewStreamFromInfo(a.stream)
	good := rd.Offset()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if !torn(err) {
				return nil, err
			}
			// The last record was cut short by a crash during a write:
			// it was never synced, so never acknowledged. Cut it off.
			if err := a.f.Truncate(good); err != nil {
				return nil, fmt.Errorf("store: truncate %s: %w", path, err)
			}
			if err := a.f.Sync(); err != nil {
				return nil, fmt.Errorf("store: sync %s: %w", path, err)
			}
			break
		}
		good = rd.Offset()
		a.meta.Observe(ev)
		a.observeFacts(ev)
		loaded.Append(*ev)
	}
	if rd.Whole() || rd.EndOffset() >= 0 {
		// A file written whole (ingested), going on live: its header
		// loses the whole flag first, then the end record goes, so that
		// a crash between leaves a file that reads whole either way.
		if rd.Whole() {
			if _, err := a.f.WriteAt(bess.OpenHeader(a.stream), 0); err != nil {
				return nil, fmt.Errorf("store: write %s: %w", path, err)
			}
			if err := a.f.Sync(); err != nil {
				return nil, fmt.Errorf("store: sync %s: %w", path, err)
			}
		}
		if err := a.f.Truncate(good); err != nil {
			return nil, fmt.Errorf("store: truncate %s: %w", path, err)
		}
		if err := a.f.Sync(); err != nil {
			return nil, fmt.Errorf("store: sync %s: %w", path, err)
		}
	}
	a.enc.Continue(rd)
	if _, err := io.Copy(a.h, io.NewSectionReader(a.f, 0, good)); err != nil {
		return nil, fmt.Errorf("store: read %s: %w", path, err)
	}
	a.size = good
	a.events = a.meta.Events
	return loaded, nil
}

// Stream returns the identity of the stream being written, as its file
// holds it. It must not be changed.
func (a *Appender) Stream() *bepfile.Stream { return a.stream }

// Events returns the number of events synced.
func (a *Appender) Events() int64 { return a.events }

// Meta returns the metadata of the events appended so far.
func (a *Appender) Meta() store.Meta { return a.meta }

// Append encodes one event into the Appender's buffer. It is written and
// synced by the next Sync.
func (a *Appender) Append(ev *bepfile.Event) error {
	if a.closed {
		return ErrWriterClosed
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

// observeFacts folds ev into the stream's facts.
func (a *Appender) observeFacts(ev *bepfile.Event) {
	if a.facts == nil {
		a.facts = store.NewFactsBuilder(a.stream)
	}
	a.facts.Add(ev)
}

// Sync writes the buffered events and fsyncs the stream file: when it
// returns nil, every event appended so far is on disk. It updates the
// catalog entry when the last update is older than the IndexInterval.
func (a *Appender) Sync(ctx context.Context) error {
	if a.closed {
		return ErrWriterClosed
	}
	if a.err != nil {
		return a.err
	}
	if a.pending.Len() > 0 {
		if err := a.writePending(); err != nil {
			return err
		}
		a.events = a.meta.Events
		a.dirty = true
	}
	if a.dirty && a.s.now().Sub(a.indexed) >= a.interval {
		return a.writeEntry(ctx)
	}
	return nil
}

// writePending writes the buffer at the end of the synced part of the file
// in one write, and fsyncs.
func (a *Appender) writePending() error {
	b := a.pending.Bytes()
	if _, err := a.f.WriteAt(b, a.size); err != nil {
		a.err = fmt.Errorf("store: write %s: %w", a.f.Name(), err)
		a.f.Truncate(a.size) // best effort: leave no half record behind
		return a.err
	}
	if err := a.f.Sync(); err != nil {
		// After a failed fsync the page cache cannot be trusted.
		a.err = fmt.Errorf("store: sync %s: %w", a.f.Name(), err)
		return a.err
	}
	a.h.Write(b)
	a.size += int64(len(b))
	a.pending.Reset()
	return nil
}

// Flush updates the catalog entry if it does not count every synced event.
func (a *Appender) Flush(ctx context.Context) error {
	if a.closed {
		return ErrWriterClosed
	}
	if !a.dirty {
		return nil
	}
	return a.writeEntry(ctx)
}

// writeEntry puts the stream's entry, as of the synced events, in the
// catalog: one row, in one transaction.
func (a *Appender) writeEntry(ctx context.Context) error {
	e := a.currentEntry()
	return a.entryWritten(a.s.write(ctx, func(tx *sql.Tx) error { return putEntryTx(ctx, tx, e) }))
}

// entryWritten records that the entry is up to date, unless err.
func (a *Appender) entryWritten(err error) error {
	if err != nil {
		return err
	}
	a.indexed = a.s.now()
	a.dirty = false
	return nil
}

func (a *Appender) currentEntry() *Entry {
	m := a.meta
	m.Events = a.events
	e := NewEntry(a.stream, &m)
	e.Size = a.size
	e.Digest = hex.EncodeToString(a.h.Sum(nil))
	e.Source, e.Format, e.Ingested = a.entry.Source, a.entry.Format, a.entry.Ingested
	return e
}

// Close syncs what is buffered, writes the final catalog entry and releases
// the stream file. It returns the entry. Close may be called more than
// once; later calls do nothing and return the entry of the first.
func (a *Appender) Close(ctx context.Context) (*Entry, error) {
	if a.closed {
		return a.currentEntry(), nil
	}
	var errs []error
	if a.err == nil && a.pending.Len() > 0 {
		if err := a.writePending(); err != nil {
			errs = append(errs, err)
		} else {
			a.events = a.meta.Events
			a.dirty = true
		}
	}
	switch {
	case a.err == nil && len(errs) == 0:
		// The final entry and the facts of every event (all synced now),
		// in one transaction. A stream continued later gets them anew
		// when it is closed again.
		e := a.currentEntry()
		var facts *store.Facts
		if a.facts != nil {
			facts = a.facts.Facts()
		}
		err := a.entryWritten(a.s.write(ctx, func(tx *sql.Tx) error {
			if err := putEntryTx(ctx, tx, e); err != nil {
				return err
			}
			return putFactsTx(ctx, tx, e.Key, facts)
		}))
		if err != nil {
			errs = append(errs, err)
		}
	case a.dirty || a.indexed.IsZero():
		if err := a.writeEntry(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	a.closed = true
	unlockFile(a.f)
	if err := a.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("store: close %s: %w", a.f.Name(), err))
	}
	return a.currentEntry(), errors.Join(errs...)
}

// Reconcile brings the catalog up to date with stream files that appenders
// left behind: for every entry whose stream file's size differs from the
// entry's (a server that was killed before it closed its streams), it cuts
// a torn last record off the file and rewrites the entry from the file.
// Files held by a live Appender are left alone. It returns the keys of the
// entries it corrected, and an error joining one error per stream it could
// not read.
func (s *Store) Reconcile(ctx context.Context) ([]string, error) {
	var stale []*Entry
	err := s.List(ctx, func(e *Entry) error {
		path, err := s.streamPath(e)
		if err != nil {
			return nil
		}
		if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() && fi.Size() != e.Size {
			stale = append(stale, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var fixed []string
	var errs []error
	for _, e := range stale {
		// The file's own header names the stream; the entry's ids are
		// used only if the header itself is torn.
		info := bepfile.NewStream(&buildpb.StreamId{BuildId: e.BuildID, InvocationId: e.InvocationID, Component: buildpb.StreamId_BuildComponent(e.Component)})
		a, _, err := s.openAppend(ctx, info, AppendOptions{Source: e.Source, Format: e.Format})
		if errors.Is(err, ErrStreamBusy) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := a.Close(ctx); err != nil {
			errs = append(errs, err)
			continue
		}
		fixed = append(fixed, e.Key)
	}
	return fixed, errors.Join(errs...)
}
