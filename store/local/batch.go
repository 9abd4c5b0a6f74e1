package local

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bes-cli/bes/store"
)

// CommitOutcome is what CommitAll did with one stream (store.CommitOutcome).
type CommitOutcome = store.CommitOutcome

// CommitAll commits several streams at once, as Commit commits one, but
// with one rewrite of the index for all of them: committing the N streams
// of a capture one by one would rewrite an index of up to N entries N
// times. The outcomes are in the order of ws. Stream files are put in
// place before the index that lists them; streams with the same key in
// one batch are committed one by one, in order. An error that concerns
// the whole batch (I/O, the lock, the index) is returned as err, and then
// no stream of the batch is listed. After CommitAll every writer is closed.
func (s *Store) CommitAll(ctx context.Context, ws []*StreamWriter, source, format string, replace bool) ([]CommitOutcome, error) {
	out := make([]CommitOutcome, len(ws))
	defer func() {
		for _, w := range ws {
			w.Abort()
		}
	}()
	keys := map[string]bool{}
	for _, w := range ws {
		if keys[w.stream.Key] {
			// The same key twice: one by one, as Commit would.
			for i, w := range ws {
				out[i].Entry, out[i].Result, out[i].Err = w.Commit(ctx, source, format, replace)
			}
			return out, nil
		}
		keys[w.stream.Key] = true
	}
	type pending struct {
		i     int
		w     *StreamWriter
		entry *Entry
	}
	var todo []pending
	for i, w := range ws {
		switch {
		case w.closed:
			out[i].Err = ErrWriterClosed
			continue
		case w.err != nil:
			out[i].Err = w.err
			continue
		}
		if err := w.finish(); err != nil {
			return nil, err
		}
		e := NewEntry(w.stream, &w.meta)
		e.Size = w.size
		e.Digest = hex.EncodeToString(w.h.Sum(nil))
		e.Source, e.Format = source, format
		e.Ingested = s.now().UTC()
		todo = append(todo, pending{i, w, e})
	}
	slices.SortFunc(todo, func(a, b pending) int { return strings.Compare(a.entry.Key, b.entry.Key) })

	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// decide is Commit's decision for one stream, given the stored entry.
	decide := func(p pending, old *Entry) *Entry {
		final := filepath.Join(s.dir, p.entry.File)
		switch {
		case fileHeld(final): // a stream being received live
			out[p.i] = CommitOutcome{Err: fmt.Errorf("store: stream %q: %w", p.entry.Key, ErrStreamBusy)}
			return old
		case old == nil:
			out[p.i] = CommitOutcome{Entry: p.entry, Result: Created}
		case old.Digest == p.entry.Digest && old.File == p.entry.File && fileExists(final),
			!replace && old.File == p.entry.File && sameStreamAs(final, p.w.f.Name()):
			out[p.i] = CommitOutcome{Entry: old, Result: Unchanged}
			return old
		case !replace:
			out[p.i] = CommitOutcome{Err: &store.DuplicateStreamError{Key: p.entry.Key}}
			return old
		default:
			out[p.i] = CommitOutcome{Entry: p.entry, Result: Replaced}
		}
		return p.entry
	}
	sorted := make([]string, len(todo))
	for i, p := range todo {
		sorted[i] = p.entry.Key
	}
	err = s.rewriteIndex(ctx, sorted, func(i int, old *Entry) (*Entry, error) {
		return decide(todo[i], old), nil
	}, func() error {
		for _, p := range todo {
			if r := out[p.i].Result; r != Created && r != Replaced {
				continue
			}
			if err := os.Rename(p.w.f.Name(), filepath.Join(s.dir, p.entry.File)); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			p.w.renamed = true
		}
		// The stream files' names are durable before the index names them.
		if err := s.syncDir(); err != nil {
			return fmt.Errorf("store: sync %s: %w", s.dir, err)
		}
		return nil
	})
	// Release the files' flocks while the store is still locked (see
	// Commit).
	for _, w := range ws {
		w.Abort()
	}
	if err != nil && !errors.Is(err, errNoChange) {
		return nil, err
	}
	return out, nil
}
