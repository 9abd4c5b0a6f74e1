package local

import (
	"bytes"
	clist "container/list"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"
)

// ErrWriterClosed is returned by a StreamWriter used after Commit or Abort
// (store.ErrWriterClosed).
var ErrWriterClosed = store.ErrWriterClosed

// StreamWriter writes one stream into a temporary file of the store; Commit
// puts it in place and into the catalog, Abort throws it away. Nothing of
// it is visible before Commit. It buffers up to 32 KiB of encoded events
// and keeps its file open only while it writes them out (see tempfiles.go),
// so that any number of StreamWriters hold at most MaxOpenTempFiles files
// open. A StreamWriter is not safe for concurrent use; distinct ones are.
type StreamWriter struct {
	s       *Store
	stream  *bepfile.Stream
	path    string // the temporary file
	f       *os.File
	elem    *clist.Element // its place in tempPool's idle list, or nil
	pending bytes.Buffer
	h       hash.Hash
	enc     *bess.Encoder
	meta    store.Meta
	facts   *store.FactsBuilder // the invocation's facts, from the events appended
	size    int64               // bytes encoded
	written int64               // bytes written to the file
	err     error               // first write error; sticky
	closed  bool
	renamed bool // the temporary file became the stream file
}

// create starts writing a stream file for st (Create in its store.Backend
// form returns it as a store.Writer). st.IDBytes must be a valid
// StreamId encoding whose key is st.Key (as bepfile produces them); they
// and st.TypeURL are stored exactly. A stream whose identity exceeds the
// store's limits gives an error wrapping ErrLimit (CheckStreamID), and
// nothing is written. The caller must end the writer with Commit or Abort.
func (s *Store) create(st *bepfile.Stream) (*StreamWriter, error) {
	id, err := checkStream("create", st)
	if err != nil {
		return nil, err
	}
	path, err := s.ownTemp()
	if err != nil {
		return nil, err
	}
	w := &StreamWriter{s: s, path: path, h: sha256.New()}
	if _, err := tempPool.acquire(w, true); err != nil {
		s.disownTemp()
		return nil, fmt.Errorf("store: %w", err)
	}
	tempPool.release(w)
	// Keep our own copy of the identity, with the id decoded from the bytes
	// stored, so the entry describes exactly what a reader will see.
	w.stream = &bepfile.Stream{ID: id, Key: st.Key, IDBytes: st.IDBytes, TypeURL: st.TypeURL}
	w.facts = store.NewFactsBuilder(w.stream)
	w.enc = bess.NewEncoder(io.MultiWriter(&w.pending, w.h))
	// A file written whole (bess version 3): cut, it reads as damaged, not
	// as a stream being received (issue 13).
	n, _ := w.enc.WholeHeader(w.stream) // into memory: cannot fail
	w.size = int64(n)
	return w, nil
}

// checkStream checks the identity of a stream to be written: a valid
// StreamId encoding whose key is st.Key, within the store's limits. It
// returns the decoded id.
func checkStream(op string, st *bepfile.Stream) (*buildpb.StreamId, error) {
	if st == nil {
		return nil, fmt.Errorf("store: %s: nil stream", op)
	}
	if err := CheckStreamID(st); err != nil {
		return nil, err
	}
	id := &buildpb.StreamId{}
	if err := proto.Unmarshal(st.IDBytes, id); err != nil {
		return nil, fmt.Errorf("store: %s %s: bad stream id bytes: %w", op, ShortKey(st.Key), err)
	}
	if k := bepfile.Key(id); k != st.Key {
		return nil, fmt.Errorf("store: %s %s: stream id bytes have key %s", op, ShortKey(st.Key), ShortKey(k))
	}
	return id, nil
}

// Append writes one event and feeds it to the stream's metadata.
func (w *StreamWriter) Append(ev *bepfile.Event) error {
	if w.closed {
		return ErrWriterClosed
	}
	if w.err != nil {
		return w.err
	}
	n, _ := w.enc.Record(ev) // into memory: cannot fail
	w.size += int64(n)
	w.meta.Observe(ev)
	w.facts.Add(ev)
	if w.pending.Len() >= spillSize {
		return w.spill()
	}
	return nil
}

// spill writes the buffered bytes to the file.
func (w *StreamWriter) spill() error {
	if w.pending.Len() == 0 {
		return nil
	}
	f, err := tempPool.acquire(w, false)
	if err != nil {
		w.err = fmt.Errorf("store: write %s: %w", w.path, err)
		return w.err
	}
	defer tempPool.release(w)
	n, err := f.WriteAt(w.pending.Bytes(), w.written)
	w.written += int64(n)
	if err != nil {
		w.err = fmt.Errorf("store: write %s: %w", w.path, err)
		return w.err
	}
	w.pending.Reset()
	return nil
}

// Meta returns the metadata gathered from the events appended so far.
func (w *StreamWriter) Meta() store.Meta { return w.meta }

// Stream returns the stream being written.
func (w *StreamWriter) Stream() *bepfile.Stream { return w.stream }

// Commit makes the stream durable and lists it in the catalog, atomically:
// in one write transaction of the catalog, the stream file (fsynced) is
// renamed into place and its entry written. It returns the stream's entry
// and what it did:
//
//   - Created when the key is new;
//   - Unchanged, with the entry already stored, when the key exists with the
//     identical content (same digest), or, without replace, with the same
//     events in other bytes (the binary and the JSON file of one Bazel
//     invocation) or with more events (the new stream is a cut copy of
//     the stored one): nothing is written (store.CommitExisting);
//   - with replace, Replaced when the key exists with other bytes; without
//     replace, Replaced when the stored stream is partial and the new,
//     complete one holds all its events (store.CommitExisting);
//   - without replace, a *store.DuplicateStreamError when the key exists
//     with other content: nothing is changed;
//   - an error wrapping ErrStreamBusy when an Appender (bes serve) holds
//     the stream's file: nothing is changed.
//
// source and format are recorded in the entry. After Commit, successful or
// not, the writer is closed and its temporary file is gone.
func (w *StreamWriter) Commit(ctx context.Context, source, format string, replace bool) (*Entry, CommitResult, error) {
	if w.closed {
		return nil, 0, ErrWriterClosed
	}
	defer w.Abort()
	if w.err != nil {
		return nil, 0, w.err
	}
	if err := w.finish(); err != nil {
		return nil, 0, err
	}
	s := w.s
	entry := w.entry(source, format)
	facts := w.facts.Facts()
	var out store.CommitOutcome
	err := s.write(ctx, func(tx *sql.Tx) error {
		old, err := getEntryTx(ctx, tx, entry.Key)
		if err != nil {
			return err
		}
		out = s.decide(w, entry, old, replace)
		if out.Err == nil && out.Result == Unchanged {
			// The same events: the facts of a stream stored without
			// them (before catalog version 2) are stored now.
			return putFactsIfAbsentTx(ctx, tx, entry.Key, facts)
		}
		if out.Err != nil {
			return nil
		}
		if err := w.rename(); err != nil {
			return err
		}
		// The stream file's name is durable before the catalog names it.
		if err := s.syncDir(); err != nil {
			return fmt.Errorf("store: sync %s: %w", s.dir, err)
		}
		if err := putEntryTx(ctx, tx, entry); err != nil {
			return err
		}
		return putFactsTx(ctx, tx, entry.Key, facts)
	})
	if err != nil {
		return nil, 0, err
	}
	return out.Entry, out.Result, out.Err
}

// entry returns the writer's entry, once finished.
func (w *StreamWriter) entry(source, format string) *Entry {
	e := NewEntry(w.stream, &w.meta)
	e.Size = w.size
	e.Digest = hex.EncodeToString(w.h.Sum(nil))
	e.Source, e.Format = source, format
	e.Ingested = w.s.now().UTC()
	return e
}

// decide is Commit's decision for the stream of w, with entry, given the
// entry stored under its key (nil if none). The caller holds the catalog's
// write transaction, so no Appender can take the stream file meanwhile.
func (s *Store) decide(w *StreamWriter, entry, old *Entry, replace bool) store.CommitOutcome {
	final := filepath.Join(s.dir, entry.File)
	switch {
	case fileHeld(final): // a stream being received live
		return store.CommitOutcome{Err: fmt.Errorf("store: stream %s: %w", ShortKey(entry.Key), ErrStreamBusy)}
	case old == nil:
		return store.CommitOutcome{Entry: entry, Result: Created}
	case old.Digest == entry.Digest && old.File == entry.File && fileExists(final):
		return store.CommitOutcome{Entry: old, Result: Unchanged}
	case !replace:
		// Other bytes: the events decide (store.CommitExisting).
		o := store.Different
		if old.File == entry.File {
			o = overlapWith(final, w.path)
		}
		res, err := store.CommitExisting(old, entry, o)
		switch {
		case err != nil:
			return store.CommitOutcome{Err: err}
		case res == Unchanged:
			return store.CommitOutcome{Entry: old, Result: Unchanged}
		}
	}
	return store.CommitOutcome{Entry: entry, Result: Replaced}
}

// rename puts the temporary file in place as the stream file.
func (w *StreamWriter) rename() error {
	if err := os.Rename(w.path, filepath.Join(w.s.dir, FileName(w.stream.Key))); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	w.renamed = true
	return nil
}

// finish writes what is buffered, fsyncs the temporary file and closes it.
func (w *StreamWriter) finish() error {
	n, _ := w.enc.End(w.meta.Events) // into memory: cannot fail
	w.size += int64(n)
	if err := w.spill(); err != nil {
		return err
	}
	f, err := tempPool.acquire(w, false)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	err = f.Sync()
	tempPool.release(w)
	if err != nil {
		return fmt.Errorf("store: sync %s: %w", w.path, err)
	}
	if err := tempPool.close(w); err != nil {
		return fmt.Errorf("store: close %s: %w", w.path, err)
	}
	return nil
}

// Abort discards the stream: it closes and removes the temporary file.
// It may be called after Commit (it then does nothing) and more than once.
func (w *StreamWriter) Abort() error {
	if w.closed {
		return nil
	}
	w.closed = true
	defer w.s.disownTemp()
	tempPool.close(w)
	if w.renamed {
		return nil
	}
	if err := os.Remove(w.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

func fileExists(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().IsRegular()
}
