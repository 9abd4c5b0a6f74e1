package store

import (
	"slices"
	"strings"
	"time"
)

// GCOptions selects the streams a backend's GC removes (`bes store gc`,
// store retention). Each limit that is set is applied on its own: a
// stream is removed when it is beyond any of them.
type GCOptions struct {
	// OlderThan, when positive, removes the streams whose time (GCTime)
	// is before Now minus OlderThan.
	OlderThan time.Duration
	// Keep, when not negative, keeps only the Keep newest streams (by
	// GCTime) and removes the others. 0 removes every stream.
	Keep int
	// Now is the time OlderThan counts back from (time.Now when zero).
	Now time.Time
	// DryRun removes nothing: GC only says what it would remove.
	DryRun bool
	// OrphanGrace is how old a blob no catalog row names must be before
	// GC deletes it (store/postgres: an upload in progress is younger);
	// 0 means the backend's default. Backends without blobs ignore it.
	OrphanGrace time.Duration
}

// GCItem is one stream GC selected, in the order GC considered them:
// oldest first.
type GCItem struct {
	Entry *Entry
	// Time is the time GC ordered the stream by (GCTime).
	Time time.Time
	// Removed is set when the stream was removed (never with DryRun).
	Removed bool
	// Busy is set when an Appender (a `bes serve` receiving it) holds the
	// stream: it is kept.
	Busy bool
	// Gone is set when the stream was no longer stored as GC listed it
	// when GC came to it (another process deleted it, or replaced it with
	// a stream of another time, meanwhile): nothing was removed.
	Gone bool
}

// GCTime is the time retention orders a stream by: its start
// (BuildStarted.start_time, Entry.Start), or, for a stream without one (a
// stream whose first events were lost, a tool stream without its
// BuildStarted), the time it was stored (Entry.Ingested); the zero time
// when it has neither, which makes it the oldest.
func GCTime(e *Entry) time.Time {
	if !e.Start.IsZero() {
		return e.Start
	}
	return e.Ingested
}

// SelectGC sorts all, the entries of a store, oldest first (by GCTime,
// then key), and returns how many of the first ones opts removes: those
// beyond Keep, and those older than OlderThan.
func SelectGC(all []*Entry, opts GCOptions) int {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	slices.SortStableFunc(all, func(a, b *Entry) int {
		if c := GCTime(a).Compare(GCTime(b)); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	cut := 0 // all[:cut] are removed
	if opts.Keep >= 0 && len(all) > opts.Keep {
		cut = len(all) - opts.Keep
	}
	if opts.OlderThan > 0 {
		limit := now.Add(-opts.OlderThan)
		for cut < len(all) && GCTime(all[cut]).Before(limit) {
			cut++
		}
	}
	return cut
}
