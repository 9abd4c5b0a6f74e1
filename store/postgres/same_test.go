package postgres

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// TestSameEventsOtherBytes: the .json Bazel wrote beside the .bep of one
// run is the same stream (Unchanged), as on a directory store; so is a
// stream with an event less (within the stored events); one with an event
// changed is a duplicate, and with replace the JSON's bytes.
func TestSameEventsOtherBytes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, newCatalog(t), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commit := func(st *bepfile.Stream, evs []bepfile.Event, replace bool) (*store.Entry, store.CommitResult, error) {
		w, err := s.Create(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		for i := range evs {
			w.Append(&evs[i])
		}
		return w.Commit(ctx, "src", "bep", replace)
	}
	bst, bevs := readInput(t, "test_mixed.bep", "")
	jst, jevs := readInput(t, "test_mixed.json", "")
	if bst.Key != jst.Key || len(bevs) != len(jevs) {
		t.Fatalf(".bep %q (%d events), .json %q (%d events)", bst.Key, len(bevs), jst.Key, len(jevs))
	}
	first, res, err := commit(bst, bevs, false)
	if err != nil || res != store.Created {
		t.Fatal(res, err)
	}
	e, res, err := commit(jst, jevs, false)
	if err != nil || res != store.Unchanged || e.Digest != first.Digest {
		t.Errorf("the .json after the .bep: %v, %v (digest %s, stored %s); want unchanged", res, err, e.Digest, first.Digest)
	}
	// An event less: within the stored events, unchanged (a cut copy).
	if e, res, err := commit(jst, jevs[:len(jevs)-1], false); err != nil || res != store.Unchanged || e.Digest != first.Digest {
		t.Errorf("an event less: %v, %v; want unchanged", res, err)
	}
	other := slices.Clone(jevs)
	other[len(other)-1] = bepfile.Event{Seq: other[len(other)-1].Seq, Payload: []byte("other")}
	var dup *store.DuplicateStreamError
	if _, _, err := commit(jst, other, false); !errors.As(err, &dup) {
		t.Errorf("an event changed: %v, want a duplicate", err)
	}
	if e, res, err := commit(jst, jevs, true); err != nil || res != store.Replaced || e.Digest == first.Digest {
		t.Errorf("the .json with replace: %v, %v", res, err)
	}
}
