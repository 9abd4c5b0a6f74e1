package store

import (
	"slices"
	"testing"
	"time"
)

// TestSelectGCKeepsBuildsWhole: --keep and --older-than count builds (the
// streams of one build id: a BES invocation's tool stream and its two
// lifecycle streams), never splitting one; a stream without a build id is
// a build of its own.
func TestSelectGCKeepsBuildsWhole(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(h int) time.Time { return base.Add(time.Duration(h) * time.Hour) }
	entries := func() []*Entry {
		return []*Entry{
			// Build "old": started at 0h, its lifecycle streams stored at
			// 0h and 5h (the build-level one has no start).
			{Key: "old.3.i1", BuildID: "old", Start: at(0)},
			{Key: "old.1.", BuildID: "old", Ingested: at(5)},
			{Key: "old.2.i1", BuildID: "old", Ingested: at(0)},
			// Build "new": 3 streams at 2h to 3h.
			{Key: "new.1.", BuildID: "new", Ingested: at(2)},
			{Key: "new.2.i2", BuildID: "new", Ingested: at(3)},
			{Key: "new.3.i2", BuildID: "new", Start: at(2)},
			// A stream without a build id, at 1h.
			{Key: "lone", Ingested: at(1)},
		}
	}
	keys := func(es []*Entry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Key)
		}
		return out
	}
	for _, c := range []struct {
		name string
		opts GCOptions
		want []string // removed, in order
	}{
		// Builds by their newest stream: lone (1h), new (3h), old (5h).
		{"keep 2", GCOptions{Keep: 2}, []string{"lone"}},
		{"keep 1", GCOptions{Keep: 1}, []string{"lone", "new.1.", "new.3.i2", "new.2.i2"}},
		{"keep 0", GCOptions{Keep: 0}, []string{"lone", "new.1.", "new.3.i2", "new.2.i2", "old.2.i1", "old.3.i1", "old.1."}},
		{"keep 3", GCOptions{Keep: 3}, nil},
		// Older than 4h at 6h: before 2h. "old" has a stream at 5h: kept
		// whole, though two of its streams are 6h old.
		{"older than 4h", GCOptions{Keep: -1, OlderThan: 4 * time.Hour, Now: at(6)}, []string{"lone"}},
		{"older than 2h", GCOptions{Keep: -1, OlderThan: 2 * time.Hour, Now: at(6)}, []string{"lone", "new.1.", "new.3.i2", "new.2.i2"}},
	} {
		all := entries()
		n := SelectGC(all, c.opts)
		if got := keys(all[:n]); !slices.Equal(got, c.want) {
			t.Errorf("%s: removes %q, want %q", c.name, got, c.want)
		}
	}
}
