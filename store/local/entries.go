package local

import (
	"cmp"
	"context"
	"slices"
	"sync"
)

// entryBatch gathers the index entries that Appenders ask to be written, so
// that one rewrite of the index writes those of every stream waiting for
// one (a group commit): sixteen streams that open or end together cost a
// few rewrites, not sixteen in a row. A rewrite holds the store's lock, and
// whoever gets the lock next writes everything gathered meanwhile.
type entryBatch struct {
	mu      sync.Mutex
	pending map[string]*Entry // by key: the latest entry asked for
	open    uint64            // number of the batch being gathered
	failed  map[uint64]error  // batches whose rewrite failed, by number
}

// putEntry writes e into the index, with the entries other Appenders asked
// for meanwhile. When it returns nil, e (or a later entry of its stream) is
// in the index.
func (s *Store) putEntry(ctx context.Context, e *Entry) error {
	mine := s.gather(e)
	unlock, err := s.lock(ctx)
	if err != nil {
		s.batch.mu.Lock()
		if s.batch.pending[e.Key] == e { // not taken by a rewrite: withdraw it
			delete(s.batch.pending, e.Key)
		}
		s.batch.mu.Unlock()
		return err
	}
	defer unlock()
	return s.writeBatchLocked(ctx, mine)
}

// putEntryLocked is putEntry for a caller that holds the store's lock.
func (s *Store) putEntryLocked(ctx context.Context, e *Entry) error {
	return s.writeBatchLocked(ctx, s.gather(e))
}

// gather adds e to the batch being gathered and returns its number.
func (s *Store) gather(e *Entry) uint64 {
	b := &s.batch
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending == nil {
		b.pending = map[string]*Entry{}
	}
	b.pending[e.Key] = e
	return b.open
}

// writeBatchLocked writes the batch gathered so far unless batch mine was
// written already, by whoever held the lock before, and returns the result
// of batch mine. The caller holds the store's lock: a batch taken has been
// written (or has failed) by the time the next holder gets the lock.
func (s *Store) writeBatchLocked(ctx context.Context, mine uint64) error {
	b := &s.batch
	b.mu.Lock()
	if mine < b.open {
		err := b.failed[mine]
		b.mu.Unlock()
		return err
	}
	entries := make([]*Entry, 0, len(b.pending))
	for _, e := range b.pending {
		entries = append(entries, e)
	}
	b.pending = nil
	taken := b.open
	b.open++
	b.mu.Unlock()

	slices.SortFunc(entries, func(x, y *Entry) int { return cmp.Compare(x.Key, y.Key) })
	err := s.putEntries(ctx, entries)
	if err != nil {
		b.mu.Lock()
		if b.failed == nil {
			b.failed = map[uint64]error{}
		}
		b.failed[taken] = err
		for n := range b.failed { // keep the recent failures only
			if n+1024 < taken {
				delete(b.failed, n)
			}
		}
		b.mu.Unlock()
	}
	return err
}

// putEntries rewrites the index with entries (sorted by key, one per key)
// in place of the entries of the same keys, in one rewrite. The caller
// holds the lock.
func (s *Store) putEntries(ctx context.Context, entries []*Entry) error {
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.Key
	}
	return s.rewriteIndex(ctx, keys, func(i int, _ *Entry) (*Entry, error) { return entries[i], nil }, nil)
}
