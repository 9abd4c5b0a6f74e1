package local

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bes-cli/bes/store"
)

// gcStore commits streams a..e, ingested an hour apart from base (they
// have no BuildStarted, so their GC time is their ingest time), in an
// order other than their keys'.
func gcStore(t *testing.T, base time.Time) *Store {
	t.Helper()
	now := base
	s := openStore(t, WithClock(func() time.Time { return now }))
	for i, name := range []string{"c", "a", "e", "b", "d"} {
		now = base.Add(time.Duration(i) * time.Hour)
		st, evs := synthNamed(name, 3)
		mustCommit(t, s, st, evs)
	}
	return s
}

func gcKeys(items []GCItem) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Entry.BuildID)
	}
	return out
}

func TestGC(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := base.Add(4*time.Hour + time.Minute) // "d", the newest, is a minute old

	// Dry run: --older-than 2h selects c, a, e (ingested 0, 1 and 2 hours
	// after base: 4h01, 3h01, 2h01 old), oldest first, and removes nothing.
	s := gcStore(t, base)
	items, err := s.GC(bg, GCOptions{OlderThan: 2 * time.Hour, Keep: -1, Now: now, DryRun: true})
	if err != nil || !equalStrings(gcKeys(items), []string{"c", "a", "e"}) {
		t.Fatalf("dry run: %q, %v", gcKeys(items), err)
	}
	for _, it := range items {
		if it.Removed || it.Busy || it.Gone || !it.Time.Equal(it.Entry.Ingested) {
			t.Errorf("dry run item %+v", it)
		}
	}
	if got := entryKeys(list(t, s)); len(got) != 5 {
		t.Fatalf("after a dry run: %q", got)
	}

	// --keep 2: the two newest (b, d) stay; files and entries of the
	// others are gone, and check finds the store consistent.
	items, err = s.GC(bg, GCOptions{Keep: 2, Now: now})
	if err != nil || !equalStrings(gcKeys(items), []string{"c", "a", "e"}) {
		t.Fatalf("keep 2: %q, %v", gcKeys(items), err)
	}
	for _, it := range items {
		if !it.Removed {
			t.Errorf("keep 2: %+v not removed", it)
		}
		if _, err := os.Stat(filepath.Join(s.Dir(), FileName(it.Entry.Key))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("file of %s: %v", it.Entry.Key, err)
		}
	}
	if got := entryKeys(list(t, s)); !equalStrings(got, []string{"b.3.i", "d.3.i"}) {
		t.Errorf("left: %q", got)
	}
	if r := mustCheck(t, s); !r.OK() || r.Entries != 2 || r.Files != 2 {
		t.Errorf("check after gc: %+v", r)
	}

	// Both limits: a stream beyond either is removed. --older-than 2h
	// alone would not take b (61 minutes old); --keep 1 does.
	items, err = s.GC(bg, GCOptions{OlderThan: 2 * time.Hour, Keep: 1, Now: now})
	if err != nil || !equalStrings(gcKeys(items), []string{"b"}) || !items[0].Removed {
		t.Fatalf("older-than 2h, keep 1: %+v, %v", items, err)
	}
	// Nothing selected: no items.
	if items, err := s.GC(bg, GCOptions{OlderThan: time.Hour, Keep: -1, Now: now}); err != nil || len(items) != 0 {
		t.Errorf("nothing old: %+v, %v", items, err)
	}
}

// A stream an Appender holds is never removed, dry run or not; the others
// are.
func TestGCKeepsBusyStream(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := gcStore(t, base)
	st, _ := synthNamed("a", 3)
	other, err := Open(s.Dir()) // the server, another Store on the directory
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	a, _, err := other.OpenAppend(bg, st, AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := base.Add(10 * time.Hour)
	items, err := s.GC(bg, GCOptions{Keep: 0, Now: now, DryRun: true})
	if err != nil || len(items) != 5 {
		t.Fatalf("dry run: %+v, %v", items, err)
	}
	for _, it := range items {
		if it.Busy != (it.Entry.BuildID == "a") {
			t.Errorf("dry run: %s busy %v", it.Entry.BuildID, it.Busy)
		}
	}
	items, err = s.GC(bg, GCOptions{Keep: 0, Now: now})
	if err != nil || len(items) != 5 {
		t.Fatalf("gc: %+v, %v", items, err)
	}
	for _, it := range items {
		if busy := it.Entry.BuildID == "a"; it.Busy != busy || it.Removed == busy {
			t.Errorf("gc: %s busy %v removed %v", it.Entry.BuildID, it.Busy, it.Removed)
		}
	}
	if got := entryKeys(list(t, s)); !equalStrings(got, []string{"a.3.i"}) {
		t.Errorf("left: %q", got)
	}
	if _, err := a.Close(bg); err != nil {
		t.Fatal(err)
	}
	// Released, it goes.
	items, err = s.GC(bg, GCOptions{Keep: 0, Now: now})
	if err != nil || len(items) != 1 || !items[0].Removed {
		t.Fatalf("after close: %+v, %v", items, err)
	}
	if err := s.Delete(bg, st.Key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete after gc: %v", err)
	}
}

// A stream replaced after GC listed it is not removed on its old time.
func TestGCSkipsChangedStream(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := gcStore(t, base)
	var old *Entry
	for _, e := range list(t, s) {
		if e.BuildID == "c" {
			old = e
		}
	}
	st, evs := synthNamed("c", 4)
	if _, res, err := commit(t, s, st, evs, true); err != nil || res != Replaced {
		t.Fatalf("replace: %v, %v", res, err)
	}
	if err := s.deleteIf(bg, old); !errors.Is(err, errChanged) {
		t.Errorf("deleteIf of the old entry: %v", err)
	}
	if got := entryKeys(list(t, s)); len(got) != 5 {
		t.Errorf("left: %q", got)
	}
}
