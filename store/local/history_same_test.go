package local

import (
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// readAs reads the testdata file name as the stream of build id buildID
// ("" for the file's own): the same invocation under another key.
func readAs(t *testing.T, name, buildID string) (*bepfile.Stream, []bepfile.Event) {
	t.Helper()
	r, err := bepfile.Open(filepath.Join("..", "..", "testdata", name), bepfile.Options{BuildID: buildID})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var st *bepfile.Stream
	var evs []bepfile.Event
	for {
		s, ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return st, evs
		}
		if err != nil {
			t.Fatal(err)
		}
		st = s
		evs = append(evs, *ev)
	}
}

// An invocation stored as several streams is one run in every answer of
// the history queries (issue 15): bes_test_mixed's run as its BES capture
// (.obe), its .bep file, and a copy cut short under another build id,
// stored last with the greatest key. Its run is that of the .bep, complete
// and ingested after the capture.
func TestHistorySameInvocation(t *testing.T) {
	s := openStore(t)
	keys := map[string]string{}
	var cut *Entry
	for _, name := range []string{"test_mixed.bep", "test_cached.bep", "bes_test_mixed.obe", "bes_test_mixed.bep", "cut"} {
		var st *bepfile.Stream
		var evs []bepfile.Event
		if name == "cut" {
			st, evs = readAs(t, "bes_test_mixed.bep", "zz-cut")
			evs = evs[:60]
		} else {
			st, evs = readAs(t, name, "")
		}
		keys[name] = st.Key
		e, _, err := commit(t, s, st, evs, false)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cut = e
		time.Sleep(2 * time.Millisecond) // ingested one after the other
	}
	if cut.Key != keys["cut"] || cut.Complete || cut.InvocationID != "8b58a6b7-1857-43e5-b701-ebbabc33fc5c" {
		t.Fatalf("the cut copy: %+v", cut)
	}
	ids := func(runs []store.LabelRun) []string {
		var out []string
		for _, r := range runs {
			out = append(out, r.InvocationID)
		}
		return out
	}

	h, err := s.LabelHistory(bg, "//tests:flaky", store.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Runs) != 3 || h.Total != 3 || len(slices.Compact(slices.Sorted(slices.Values(ids(h.Runs))))) != 3 ||
		h.Runs[0].Key != keys["bes_test_mixed.bep"] || h.Passed != 1 || h.Flaky != 2 || h.Cached != 1 || h.Failed != 0 {
		t.Errorf("history of //tests:flaky: %v, %+v", ids(h.Runs), h)
	}
	for _, r := range h.Runs {
		if r.CachedPass() != (r.Key == keys["test_cached.bep"]) {
			t.Errorf("run of %s: status %s, cached %d: cached pass %v", r.Key, r.Status, r.Cached, r.CachedPass())
		}
	}
	if h1, err := s.LabelHistory(bg, "//tests:flaky", store.HistoryQuery{Limit: 1}); err != nil || len(h1.Runs) != 1 || h1.Runs[0].Key != keys["bes_test_mixed.bep"] || h1.Total != 3 {
		t.Errorf("--limit 1: %+v, %v", h1, err)
	}
	// --match: among the streams kept, the greatest stands for the
	// invocation.
	for name, want := range map[string]int{"bes_test_mixed.obe": 1, "cut": 1} {
		k := keys[name]
		hm, err := s.LabelHistory(bg, "//tests:flaky", store.HistoryQuery{Match: func(key string) bool { return key == k }})
		if err != nil || len(hm.Runs) != want || hm.Total != want || want == 1 && hm.Runs[0].Key != k {
			t.Errorf("--match %s: %+v, %v", name, hm, err)
		}
	}
	hm, err := s.LabelHistory(bg, "//tests:flaky", store.HistoryQuery{Match: func(string) bool { return true }})
	if err != nil || !slices.Equal(ids(hm.Runs), ids(h.Runs)) || hm.Runs[0].Key != h.Runs[0].Key || hm.Passed != 1 || hm.Flaky != 2 || hm.Cached != 1 {
		t.Errorf("--match .: %+v, %v", hm, err)
	}
	// A test that failed in every invocation: three failures.
	ht, err := s.LabelHistory(bg, "//tests:timeout", store.HistoryQuery{})
	if err != nil || ht.Total != 3 || ht.Failed != 3 || len(ht.Runs) != 3 || !ht.LastFailure.Equal(h.Runs[0].Start) {
		t.Errorf("history of //tests:timeout: %+v, %v", ht, err)
	}
	fl, err := s.FlakyTests(bg, time.Time{}, 0)
	if err != nil || len(fl) == 0 || fl[0].Label != "//tests:flaky" || fl[0].Runs != 3 || fl[0].Flakes != 2 || fl[0].LastKey != keys["bes_test_mixed.bep"] {
		t.Errorf("flaky: %+v, %v", fl, err)
	}
	for _, f := range fl {
		if f.Label == "//tests:timeout" || f.Runs > 3 {
			t.Errorf("flaky: %+v", f)
		}
	}
	it, err := s.InvocationTimings(bg, time.Time{})
	if err != nil || len(it) != 3 || it[2].Key != keys["bes_test_mixed.bep"] {
		t.Errorf("invocation timings: %+v, %v", it, err)
	}
	tt, err := s.TestTimings(bg, "//tests:flaky", time.Time{})
	if err != nil || len(tt) != 3 {
		t.Errorf("test timings: %+v, %v", tt, err)
	}
	g, err := s.DurationGrowth(bg, time.Time{}, h.Runs[0].Start, 0)
	if err != nil || !slices.ContainsFunc(g, func(g store.TestGrowth) bool {
		return g.Label == "//tests:flaky" && g.RunsBefore == 1 && g.RunsAfter == 1 // test_cached's from the cache
	}) {
		t.Errorf("duration growth: %+v, %v", g, err)
	}
}
