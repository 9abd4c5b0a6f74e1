package local

import (
	"context"
	"database/sql"
	"path/filepath"
	"time"

	"github.com/bes-cli/bes/store"
)

// The options and results of GC are the store package's (store/gc.go),
// shared with store/postgres.
type (
	GCOptions = store.GCOptions
	GCItem    = store.GCItem
)

// GCTime is the time retention orders a stream by (store.GCTime).
func GCTime(e *Entry) time.Time { return store.GCTime(e) }

// GC removes whole streams by age (store retention: `bes store gc`):
// those opts selects, oldest first (by GCTime, then key). It reads the
// catalog once, then removes each stream as Delete does, one write
// transaction per stream: its file first, then its entry, so that a crash
// in the middle leaves streams either whole or gone (an entry whose file
// is missing reads as gone, and `bes store check --repair` drops it; see
// Delete), never a stream file that Repair would index again. A stream an
// Appender holds is never removed (GCItem.Busy); it still counts among
// the streams Keep keeps, if it is among the newest. A stream that was
// committed while GC ran is not considered. The items are those selected,
// oldest first; on an error, the items done so far and the error. With
// opts.DryRun nothing is removed and Busy says which streams are held now.
func (s *Store) GC(ctx context.Context, opts GCOptions) ([]GCItem, error) {
	var all []*Entry
	if err := s.List(ctx, func(e *Entry) error {
		all = append(all, e)
		return nil
	}); err != nil {
		return nil, err
	}
	cut := store.SelectGC(all, opts)
	items := make([]GCItem, 0, cut)
	if opts.DryRun && cut > 0 {
		// The flocks are probed inside a write transaction of the
		// catalog, where no Appender can be taking one: a probe outside
		// would make an OpenAppend at that instant fail as busy.
		err := s.write(ctx, func(*sql.Tx) error {
			for _, e := range all[:cut] {
				if err := ctx.Err(); err != nil {
					return err
				}
				items = append(items, GCItem{Entry: e, Time: GCTime(e), Busy: fileHeld(filepath.Join(s.dir, FileName(e.Key)))})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		return items, nil
	}
	return store.RemoveGC(ctx, all[:cut], s.deleteIf)
}

// errChanged: the stream GC selected was replaced since GC listed it.
var errChanged = store.ErrChanged

// deleteIf deletes the stream of e as Delete does, unless its entry
// changed since e was read (a stream replaced with --replace is a new
// stream, with a new time: GC does not judge it on the old one's).
func (s *Store) deleteIf(ctx context.Context, e *Entry) error {
	return s.delete(ctx, e.Key, func(found *Entry) bool {
		return found.Start.Equal(e.Start) && found.Ingested.Equal(e.Ingested)
	})
}
