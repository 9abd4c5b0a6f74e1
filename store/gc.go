package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
)

// GCOptions selects the streams a backend's GC removes (`bes store gc`,
// store retention). GC keeps or removes the streams of one build together:
// the streams of one StreamId.build_id (Bazel's tool event stream and the
// BES lifecycle streams of that build; a file's stream alone, whose build
// id is its invocation id) are one build, ordered by the newest GCTime
// among them; a stream without a build id is a build of its own. Each
// limit that is set is applied on its own: a build is removed when it is
// beyond any of them.
type GCOptions struct {
	// OlderThan, when positive, removes the builds whose time (the
	// newest GCTime of their streams) is before Now minus OlderThan.
	OlderThan time.Duration
	// Keep, when not negative, keeps only the Keep newest builds (their
	// streams) and removes the others. 0 removes every stream.
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

// SelectGC sorts all, the entries of a store, build by build, oldest build
// first (by the newest GCTime of its streams, then its first key; within a
// build by GCTime, then key), and returns how many of the first ones opts
// removes: the streams of the builds beyond Keep, and of those older than
// OlderThan. A build's streams are never split (an invocation kept without
// its lifecycle streams, or the reverse; found by a first-user test of
// `bes store gc --keep`).
func SelectGC(all []*Entry, opts GCOptions) int {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	build := func(e *Entry) string {
		if e.BuildID != "" {
			return "b" + e.BuildID
		}
		return "k" + e.Key
	}
	newest := map[string]time.Time{} // build -> newest GCTime of its streams
	first := map[string]string{}     // build -> its least key
	for _, e := range all {
		b, t := build(e), GCTime(e)
		if cur, ok := newest[b]; !ok || t.After(cur) {
			newest[b] = t
		}
		if k, ok := first[b]; !ok || e.Key < k {
			first[b] = e.Key
		}
	}
	slices.SortStableFunc(all, func(a, b *Entry) int {
		ba, bb := build(a), build(b)
		if ba != bb {
			if c := newest[ba].Compare(newest[bb]); c != 0 {
				return c
			}
			return strings.Compare(first[ba], first[bb])
		}
		if c := GCTime(a).Compare(GCTime(b)); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	// builds lists the builds in that order, each with its streams' end.
	type span struct {
		time time.Time
		end  int
	}
	var builds []span
	for i, e := range all {
		if i == 0 || build(all[i-1]) != build(e) {
			builds = append(builds, span{time: newest[build(e)]})
		}
		builds[len(builds)-1].end = i + 1
	}
	gone := 0 // builds[:gone] are removed
	if opts.Keep >= 0 && len(builds) > opts.Keep {
		gone = len(builds) - opts.Keep
	}
	if opts.OlderThan > 0 {
		limit := now.Add(-opts.OlderThan)
		for gone < len(builds) && builds[gone].time.Before(limit) {
			gone++
		}
	}
	if gone == 0 {
		return 0
	}
	return builds[gone-1].end
}

// ErrChanged is what a backend's removal of a stream GC selected returns
// when the stream was replaced or deleted since GC listed it (RemoveGC's
// GCItem.Gone).
var ErrChanged = errors.New("store: the stream changed since it was listed")

// RemoveGC removes the streams GC selected (SelectGC's first ones), oldest
// first, with remove, a backend's removal of one stream unless it changed
// since it was listed, and returns their items: Removed, Busy (remove
// returned ErrStreamBusy: an Appender holds it) or Gone (ErrNotFound or
// ErrChanged). Another error stops it: the items done so far and the error.
func RemoveGC(ctx context.Context, selected []*Entry, remove func(context.Context, *Entry) error) ([]GCItem, error) {
	items := make([]GCItem, 0, len(selected))
	for _, e := range selected {
		it := GCItem{Entry: e, Time: GCTime(e)}
		err := remove(ctx, e)
		switch {
		case err == nil:
			it.Removed = true
		case errors.Is(err, ErrStreamBusy):
			it.Busy = true
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrChanged):
			it.Gone = true
		default:
			return items, err
		}
		items = append(items, it)
	}
	return items, nil
}
