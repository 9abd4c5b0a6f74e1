package local

import (
	"database/sql"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/invocation"
	"github.com/bes-cli/bes/store"
)

// readFile reads the one stream of a file of testdata.
func readFile(t *testing.T, name string) (*bepfile.Stream, []bepfile.Event) {
	t.Helper()
	r, err := bepfile.Open(filepath.Join("..", "..", "testdata", name), bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var st *bepfile.Stream
	var evs []bepfile.Event
	for {
		s, ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var be *bepfile.Error
			if errors.As(err, &be) && !be.Resumable() {
				break // a file cut short: what came before
			}
			t.Fatal(err)
		}
		if st != nil && s.Key != st.Key {
			t.Fatalf("%s: more than one stream", name)
		}
		st = s
		evs = append(evs, *ev)
	}
	return st, evs
}

// wantFacts builds the facts of events with invocation.Build.
func wantFacts(t *testing.T, st *bepfile.Stream, evs []bepfile.Event) *store.Facts {
	t.Helper()
	seq := func(yield func(*bepfile.Event, error) bool) {
		for i := range evs {
			if !yield(&evs[i], nil) {
				return
			}
		}
	}
	inv, err := invocation.Build(st, seq, invocation.Wants{Targets: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return store.FactsOf(inv)
}

// sameFacts compares facts, times by Equal.
func sameFacts(t *testing.T, what string, got, want *store.Facts) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("%s: facts %v, want %v", what, got, want)
		}
		return
	}
	g, w := *got, *want
	if !g.Start.Equal(w.Start) {
		t.Errorf("%s: start %v, want %v", what, g.Start, w.Start)
	}
	g.Start = w.Start
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s: facts\n%+v\nwant\n%+v", what, g, w)
	}
}

func factRows(t *testing.T, s *Store, key string) [3]int {
	t.Helper()
	db, err := s.catalog(bg, false)
	if err != nil {
		t.Fatal(err)
	}
	var n [3]int
	for i, table := range []string{"invocations", "targets", "tests"} {
		if err := db.QueryRow(`SELECT count(*) FROM `+table+` WHERE key = ?`, []byte(key)).Scan(&n[i]); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// The facts a commit stores are those invocation.Build gives for the
// corpus, in the catalog; replaced with the stream, deleted with it, and
// read from the stream when the catalog has none.
func TestFacts(t *testing.T) {
	s := openStore(t)
	names := []string{"test_mixed.bep", "test_cached.bep", "build_keep_going_fail.bep"}
	var ws []store.Writer
	want := map[string]*store.Facts{}
	var keys []string
	for _, name := range names {
		st, evs := readFile(t, name)
		w := write(t, s, st, evs)
		ws = append(ws, w)
		want[st.Key] = wantFacts(t, st, evs)
		keys = append(keys, st.Key)
	}
	out, err := s.CommitAll(bg, ws, "src", "bep", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Err != nil || o.Result != Created {
			t.Fatalf("commit: %+v", o)
		}
	}
	for i, key := range keys {
		got, err := s.Facts(bg, key)
		if err != nil {
			t.Fatal(err)
		}
		sameFacts(t, names[i], got, want[key])
	}
	// What the corpus says (testdata/README.md).
	mixed, _ := s.Facts(bg, keys[0])
	if mixed.Command != "test" || mixed.Verdict != "tests_failed" || mixed.Result != "TESTS_FAILED" || mixed.ExitCode != 3 ||
		mixed.User != "root" || mixed.Host != "vm" || len(mixed.Tests) != 9 || mixed.Tests[8].Label != "//tests:timeout" || mixed.Tests[8].Status != "TIMEOUT" || mixed.Tests[7].Shards != 3 || len(mixed.Targets) != 16 ||
		!slices.Equal(mixed.Patterns, []string{"//...", "-//broken/..."}) {
		t.Errorf("test_mixed: %+v", mixed)
	}
	failed, _ := s.Facts(bg, keys[2])
	if failed.Verdict != "build_failed" || len(failed.Targets) != 21 || failed.Targets[0].Label != "//broken:bad_dep" ||
		failed.Targets[0].AbortReason != "ANALYSIS_FAILURE" || failed.Targets[0].Success || len(failed.Tests) != 0 {
		t.Errorf("build_keep_going_fail: %+v", failed)
	}
	if n := factRows(t, s, keys[0]); n != [3]int{1, 16, 9} {
		t.Errorf("rows of test_mixed: %v", n)
	}

	// Replaced by the same invocation cut short: the facts follow.
	st, evs := readFile(t, "truncated-test_mixed.bep")
	if st.Key != keys[0] {
		t.Fatalf("truncated-test_mixed.bep is stream %s", st.Key)
	}
	if _, res, err := write(t, s, st, evs).Commit(bg, "src", "bep", true); err != nil || res != Replaced {
		t.Fatalf("replace: %v, %v", res, err)
	}
	got, err := s.Facts(bg, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	sameFacts(t, "replaced", got, wantFacts(t, st, evs))
	if got.Verdict != "did_not_finish" {
		t.Errorf("replaced by a cut stream: verdict %s", got.Verdict)
	}

	// A stream without facts in the catalog (stored before them): read
	// from the stream, the catalog left as it is.
	if err := s.write(bg, func(tx *sql.Tx) error { return putFactsTx(bg, tx, keys[1], nil) }); err != nil {
		t.Fatal(err)
	}
	got, err = s.Facts(bg, keys[1])
	if err != nil {
		t.Fatal(err)
	}
	sameFacts(t, "lazy", got, want[keys[1]])
	if n := factRows(t, s, keys[1]); n != [3]int{} {
		t.Errorf("rows after a lazy read: %v", n)
	}
	// Committed again, unchanged: the facts are stored.
	st, evs = readFile(t, names[1])
	if _, res, err := write(t, s, st, evs).Commit(bg, "src", "bep", false); err != nil || res != Unchanged {
		t.Fatalf("commit again: %v, %v", res, err)
	}
	if n := factRows(t, s, keys[1]); n[0] != 1 || n[2] != len(want[keys[1]].Tests) || n[1] != len(want[keys[1]].Targets) {
		t.Errorf("rows after an unchanged commit: %v", n)
	}
	got, err = s.Facts(bg, keys[1])
	if err != nil {
		t.Fatal(err)
	}
	sameFacts(t, "stored again", got, want[keys[1]])

	// Deleted with the stream (and by gc, which deletes as Delete does).
	if err := s.Delete(bg, keys[2]); err != nil {
		t.Fatal(err)
	}
	if n := factRows(t, s, keys[2]); n != [3]int{} {
		t.Errorf("rows after delete: %v", n)
	}
	if _, err := s.Facts(bg, keys[2]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("facts of a deleted stream: %v", err)
	}
}

// An Appender (bes serve) writes the facts when it closes the stream, and
// again, of every event, when a continued stream is closed.
func TestFactsAppender(t *testing.T) {
	s := openStore(t)
	st, evs := readFile(t, "test_cached.bep")
	a, _, err := s.OpenAppend(bg, st, AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	half := len(evs) / 2
	for i := range evs[:half] {
		if err := a.Append(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Close(bg); err != nil {
		t.Fatal(err)
	}
	got, err := s.Facts(bg, st.Key)
	if err != nil {
		t.Fatal(err)
	}
	sameFacts(t, "first half", got, wantFacts(t, st, evs[:half]))
	if got.Verdict != "did_not_finish" {
		t.Errorf("first half: verdict %s", got.Verdict)
	}
	a, _, err = s.OpenAppend(bg, st, AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs[half:] {
		if err := a.Append(&evs[half+i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Close(bg); err != nil {
		t.Fatal(err)
	}
	got, err = s.Facts(bg, st.Key)
	if err != nil {
		t.Fatal(err)
	}
	sameFacts(t, "whole", got, wantFacts(t, st, evs))
	if got.Verdict != "tests_failed" || got.User != "root" {
		t.Errorf("whole: %+v", got)
	}
	if n := factRows(t, s, st.Key); n[0] != 1 || n[2] != len(got.Tests) {
		t.Errorf("rows: %v", n)
	}
}
