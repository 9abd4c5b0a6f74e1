package local

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// Store implements the storage contract; store/storetest checks it.
var (
	_ store.Backend    = (*Store)(nil)
	_ store.Reconciler = (*Store)(nil)
	_ store.Writer     = (*StreamWriter)(nil)
	_ store.Appender   = (*Appender)(nil)
)

// Create starts writing a stream file for st (store.Backend.Create): a
// temporary file of the store, which Commit renames into place.
// The returned Writer is a *StreamWriter.
func (s *Store) Create(_ context.Context, st *bepfile.Stream) (store.Writer, error) {
	w, err := s.create(st)
	if err != nil {
		return nil, err
	}
	return w, nil
}

// OpenAppend opens the stream file of st for appending
// (store.Backend.OpenAppend); the returned Appender is an *Appender. Its
// details are those of openAppend: a file that ends inside a record (a
// writer killed during a write) is cut back to its last whole record
// first; those bytes were never synced, so never acknowledged. A damaged
// stream file gives a *CorruptError.
func (s *Store) OpenAppend(ctx context.Context, st *bepfile.Stream, opts AppendOptions) (store.Appender, *store.Stream, error) {
	a, loaded, err := s.openAppend(ctx, st, opts)
	if err != nil {
		return nil, nil, err
	}
	return a, loaded, nil
}

// CommitAll commits several writers (store.Backend.CommitAll) in one
// transaction of the catalog; see commitAll. A Writer that is not
// a *StreamWriter of this directory gets an error in its outcome.
func (s *Store) CommitAll(ctx context.Context, ws []store.Writer, source, format string, replace bool) ([]CommitOutcome, error) {
	out := make([]CommitOutcome, len(ws))
	var mine []*StreamWriter
	var at []int // at[j]: the index in ws of mine[j]
	for i, w := range ws {
		sw, ok := w.(*StreamWriter)
		if !ok || sw.s.dir != s.dir {
			out[i].Err = fmt.Errorf("store: commit %q: the writer belongs to another store", w.Stream().Key)
			w.Abort()
			continue
		}
		mine = append(mine, sw)
		at = append(at, i)
	}
	got, err := s.commitAll(ctx, mine, source, format, replace)
	if err != nil {
		return nil, err
	}
	for j, o := range got {
		out[at[j]] = o
	}
	return out, nil
}

// Location returns the store directory (store.Backend.Location).
func (s *Store) Location() string { return s.dir }

// Delete removes the stream with key (store.Backend.Delete): its stream
// file, then its catalog entry, in one write transaction of the catalog. A
// stream file that an Appender holds (a stream bes serve is receiving) is
// left alone: an error wrapping store.ErrStreamBusy.
//
// The file goes first because of what a crash between the two steps
// leaves. File first: an entry whose file is missing, which every reader
// takes for a stream that is gone (store.ErrNotFound), `bes store check`
// reports as "missing file", and Repair drops: the deletion completes.
// Entry first would leave a stream file no entry names, which Repair would
// index again: a deleted stream brought back.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.delete(ctx, key, nil)
}

// delete is Delete, which with a non-nil same deletes the stream only if
// same accepts its entry as read in the transaction (else an error
// wrapping errChanged).
func (s *Store) delete(ctx context.Context, key string, same func(*Entry) bool) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		found, err := getEntryTx(ctx, tx, key)
		if err != nil {
			return err
		}
		if found == nil {
			return fmt.Errorf("store: delete %s: %w", ShortKey(key), store.ErrNotFound)
		}
		if same != nil && !same(found) {
			return fmt.Errorf("store: delete %s: %w", ShortKey(key), errChanged)
		}
		// The stream file is the one named after the key, whatever the
		// entry says (the catalog is a file a user could edit).
		path := filepath.Join(s.dir, FileName(key))
		if fileHeld(path) {
			return fmt.Errorf("store: delete %s: %w", ShortKey(key), store.ErrStreamBusy)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: delete %s: %w", ShortKey(key), err)
		}
		if err := s.syncDir(); err != nil {
			return fmt.Errorf("store: sync %s: %w", s.dir, err)
		}
		return deleteEntryTx(ctx, tx, key) // and its facts
	})
}
