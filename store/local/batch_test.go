package local

import (
	"errors"
	"slices"
	"testing"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

func TestCommitAll(t *testing.T) {
	s := openStore(t)
	type stream struct {
		st  *bepfile.Stream
		evs []bepfile.Event
	}
	var ss []stream
	for _, id := range []string{"c", "a", "b"} {
		st, evs := bepStream(t, "test_mixed.bep", id)
		ss = append(ss, stream{st, evs})
	}
	// One stream committed before: the batch must merge with the index.
	pre, preEvs := bepStream(t, "build_ok.bep", "b0")
	mustCommit(t, s, pre, preEvs)
	batch := func(replace bool, streams ...stream) []CommitOutcome {
		t.Helper()
		var ws []*StreamWriter
		for _, x := range streams {
			ws = append(ws, write(t, s, x.st, x.evs))
		}
		out, err := s.commitAll(bg, ws, "src", "bep", replace)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != len(ws) {
			t.Fatalf("%d outcomes for %d writers", len(out), len(ws))
		}
		return out
	}
	for i, o := range batch(false, ss...) {
		if o.Err != nil || o.Result != Created || o.Entry.Key != ss[i].st.Key {
			t.Fatalf("stream %d: %+v, want created %s", i, o, ss[i].st.Key)
		}
	}
	if got, want := entryKeys(list(t, s)), []string{"a.3.a", "b.3.b", "b0.3.b0", "c.3.c"}; !equalStrings(got, want) {
		t.Fatalf("index lists %v, want %v", got, want)
	}
	for _, e := range list(t, s) {
		_, evs := readBack(t, s, e)
		if e.Key != "b0.3.b0" {
			sameEvents(t, evs, ss[0].evs)
		}
	}
	// The same content again: unchanged. Other content: refused, then replaced.
	other := stream{ss[1].st, slices.Clone(ss[1].evs[:10])}
	other.evs[9] = bepfile.Event{Seq: other.evs[9].Seq, Payload: []byte("other content")} // not within the stored events
	out := batch(false, ss[0], other)
	if out[0].Result != Unchanged || out[0].Err != nil {
		t.Fatalf("same content: %+v, want unchanged", out[0])
	}
	var dup *store.DuplicateStreamError
	if !errors.As(out[1].Err, &dup) || dup.Key != "a.3.a" {
		t.Fatalf("other content: %+v, want a duplicate error", out[1])
	}
	out = batch(true, other)
	if out[0].Result != Replaced {
		t.Fatalf("replace: %+v, want replaced", out[0])
	}
	for _, e := range list(t, s) {
		if e.Key == "a.3.a" {
			_, evs := readBack(t, s, e)
			sameEvents(t, evs, other.evs)
		}
	}
	assertNoTemp(t, s)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
