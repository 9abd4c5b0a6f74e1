package local

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/bes-cli/bes/store"
)

// CommitOutcome is what CommitAll did with one stream (store.CommitOutcome).
type CommitOutcome = store.CommitOutcome

// commitAll (CommitAll in its store.Backend form) commits several streams
// at once, as Commit commits one, but in one write transaction of the
// catalog: one commit (and one fsync of the catalog and of the directory)
// for the N streams of a capture. The outcomes are in the order of ws.
// Stream files are put in place before the catalog that lists them commits;
// streams with the same key in one batch are committed one by one, in
// order. An error that concerns the whole batch (I/O, the catalog) is
// returned as err, and then no stream of the batch is listed (a stream
// file renamed before the failure is then not indexed: Check reports it,
// Repair indexes it). After CommitAll every writer is closed.
func (s *Store) commitAll(ctx context.Context, ws []*StreamWriter, source, format string, replace bool) ([]CommitOutcome, error) {
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
		facts *store.Facts
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
		todo = append(todo, pending{i, w, w.entry(source, format), w.facts.Facts()})
	}
	slices.SortFunc(todo, func(a, b pending) int { return strings.Compare(a.entry.Key, b.entry.Key) })

	err := s.write(ctx, func(tx *sql.Tx) error {
		for i := range out {
			if out[i].Err == nil {
				out[i] = CommitOutcome{}
			}
		}
		var put []pending
		for _, p := range todo {
			old, err := getEntryTx(ctx, tx, p.entry.Key)
			if err != nil {
				return err
			}
			o := s.decide(p.w, p.entry, old, replace)
			out[p.i] = o
			if o.Err == nil && o.Result == Unchanged {
				// As Commit: the facts of an old stream, if it lacks them.
				if err := putFactsIfAbsentTx(ctx, tx, p.entry.Key, p.facts); err != nil {
					return err
				}
				continue
			}
			if o.Err != nil {
				continue
			}
			if err := p.w.rename(); err != nil {
				return err
			}
			put = append(put, p)
		}
		if len(put) == 0 {
			return nil
		}
		// The stream files' names are durable before the catalog names them.
		if err := s.syncDir(); err != nil {
			return fmt.Errorf("store: sync %s: %w", s.dir, err)
		}
		for _, p := range put {
			if err := putEntryTx(ctx, tx, p.entry); err != nil {
				return err
			}
			// The facts in the same transaction as the entry.
			if err := putFactsTx(ctx, tx, p.entry.Key, p.facts); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
