package storetest

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/invocation"
	"github.com/bes-cli/bes/store"
)

// wantFacts returns store.FactsOf the invocation in's events make, built
// with invocation.Build.
func wantFacts(t testing.TB, in *input) *store.Facts {
	t.Helper()
	inv, err := invocation.Build(in.st, func(yield func(*bepfile.Event, error) bool) {
		for i := range in.evs {
			if !yield(&in.evs[i], nil) {
				return
			}
		}
	}, invocation.Wants{Targets: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return store.FactsOf(inv)
}

// sameFacts wants got to be want: times by Equal, a nil list as an empty
// one.
func sameFacts(t testing.TB, what string, got, want *store.Facts) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("%s: facts %+v, want %+v", what, got, want)
		}
		return
	}
	g, w := *got, *want
	if !g.Start.Equal(w.Start) {
		t.Errorf("%s: start %v, want %v", what, g.Start, w.Start)
	}
	g.Start, w.Start = time.Time{}, time.Time{}
	for _, f := range []*store.Facts{&g, &w} {
		if f.Patterns == nil {
			f.Patterns = []string{}
		}
		if f.Targets == nil {
			f.Targets = []store.TargetFacts{}
		}
		if f.Tests == nil {
			f.Tests = []store.TestFacts{}
		}
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: facts\n%+v\nwant\n%+v", what, g, w)
	}
}

// factsOf reads the facts of key.
func factsOf(t testing.TB, fr store.FactsReader, key string) *store.Facts {
	t.Helper()
	f, err := fr.Facts(bg, key)
	if err != nil {
		t.Fatalf("Facts(%s): %v", key, err)
	}
	return f
}

// testFacts: a backend that keeps the facts of its streams
// (store.FactsReader) gives for each stream store.FactsOf the invocation
// its events make: committed (CommitAll, Commit), replaced, written live
// by an Appender and closed; nil for a stream without Bazel events; an
// error wrapping ErrNotFound for a key deleted or never stored.
func testFacts(t *testing.T, b store.Backend) {
	fr, ok := b.(store.FactsReader)
	if !ok {
		t.Skip("the backend keeps no facts (no store.FactsReader)")
	}
	// Committed in one batch.
	ins := []*input{file(t, "test_mixed.bep", ""), file(t, "test_cached.bep", ""), file(t, "build_keep_going_fail.bep", "")}
	var ws []store.Writer
	for _, in := range ins {
		ws = append(ws, write(t, b, in))
	}
	out, err := b.CommitAll(bg, ws, "src", "bep", false)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if o.Err != nil || o.Result != store.Created {
			t.Fatalf("commit %s: %v, %v", ins[i].st.Key, o.Result, o.Err)
		}
	}
	for _, in := range ins {
		sameFacts(t, in.st.Key, factsOf(t, fr, in.st.Key), wantFacts(t, in))
	}
	// What the corpus says (testdata/README.md), lest both sides be empty.
	mixed := factsOf(t, fr, ins[0].st.Key)
	if mixed.Command != "test" || mixed.Verdict != "tests_failed" || mixed.ExitCode != 3 || len(mixed.Tests) != 9 ||
		len(mixed.Targets) != 16 || mixed.Tests[8].Label != "//tests:timeout" || mixed.Tests[8].Status != "TIMEOUT" {
		t.Errorf("facts of test_mixed.bep: %+v", mixed)
	}
	if f := factsOf(t, fr, ins[2].st.Key); f.Verdict != "build_failed" || len(f.Tests) != 0 || len(f.Targets) != 21 {
		t.Errorf("facts of build_keep_going_fail.bep: %+v", f)
	}

	// Replaced by the same invocation cut short (--replace): the facts
	// follow the new events.
	data, err := os.ReadFile(filepath.Join(root(t), "testdata", "truncated-test_mixed.bep"))
	if err != nil {
		t.Fatal(err)
	}
	cut, _ := read(t, "truncated-test_mixed.bep", data, "") // a file cut short: what came before
	if len(cut) != 1 || cut[0].st.Key != ins[0].st.Key {
		t.Fatalf("truncated-test_mixed.bep: %d streams", len(cut))
	}
	if _, res, err := commit(t, b, cut[0], true); err != nil || res != store.Replaced {
		t.Fatalf("replace: %v, %v", res, err)
	}
	f := factsOf(t, fr, ins[0].st.Key)
	sameFacts(t, "replaced", f, wantFacts(t, cut[0]))
	if f.Verdict != "did_not_finish" || f.HasExitCode {
		t.Errorf("replaced by a cut stream: %+v", f)
	}

	// A stream without Bazel events (a BES lifecycle stream): none.
	data, err = os.ReadFile(filepath.Join(root(t), "testdata", "bes_test_mixed.lifecycle.obe"))
	if err != nil {
		t.Fatal(err)
	}
	life, err := read(t, "bes_test_mixed.lifecycle.obe", data, "")
	if err != nil || len(life) == 0 {
		t.Fatalf("bes_test_mixed.lifecycle.obe: %d streams, %v", len(life), err)
	}
	mustCommit(t, b, life[0])
	if f := factsOf(t, fr, life[0].st.Key); f != nil {
		t.Errorf("facts of a lifecycle stream: %+v", f)
	}

	// Written live: the facts of every event once the Appender closes,
	// and of every event again when a continued stream closes.
	live := file(t, "bes_test_mixed.obe", "")
	half := len(live.evs) / 2
	a, _ := openAppend(t, b, live.st, store.AppendOptions{Source: "127.0.0.1:1", Format: "grpc"})
	appendAll(t, a, live.evs[:half], 7)
	if _, err := a.Close(bg); err != nil {
		t.Fatal(err)
	}
	sameFacts(t, "first half, closed", factsOf(t, fr, live.st.Key), wantFacts(t, &input{st: live.st, evs: live.evs[:half]}))
	a, _ = openAppend(t, b, live.st, store.AppendOptions{})
	appendAll(t, a, live.evs[half:], 7)
	if _, err := a.Close(bg); err != nil {
		t.Fatal(err)
	}
	f = factsOf(t, fr, live.st.Key)
	sameFacts(t, "continued, closed", f, wantFacts(t, live))
	if f.Verdict != "tests_failed" || len(f.Tests) != 9 {
		t.Errorf("facts of the live stream: %+v", f)
	}

	// Many at once (store.FactsLister): what Facts gives for each.
	if fl, ok := b.(store.FactsLister); ok {
		keys := []string{life[0].st.Key, ins[2].st.Key, live.st.Key, ins[0].st.Key, ins[1].st.Key}
		many, err := fl.ManyFacts(bg, keys)
		if err != nil || len(many) != len(keys) {
			t.Fatalf("ManyFacts: %d, %v", len(many), err)
		}
		for i, k := range keys {
			sameFacts(t, "ManyFacts of "+k, many[i], factsOf(t, fr, k))
		}
		if _, err := fl.ManyFacts(bg, []string{ins[0].st.Key, "no-such-build.3.no-such-invocation"}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ManyFacts of a key not stored: %v; want ErrNotFound", err)
		}
	}

	// Deleted with the stream; a key never stored has none.
	for _, key := range []string{ins[1].st.Key, live.st.Key} {
		if err := b.Delete(bg, key); err != nil {
			t.Fatal(err)
		}
		if f, err := fr.Facts(bg, key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("facts of deleted %s: %+v, %v; want ErrNotFound", key, f, err)
		}
	}
	if f, err := fr.Facts(bg, "no-such-build.3.no-such-invocation"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("facts of a key not stored: %+v, %v; want ErrNotFound", f, err)
	}
	// The others are untouched.
	sameFacts(t, "after deletes", factsOf(t, fr, ins[2].st.Key), wantFacts(t, ins[2]))
}
