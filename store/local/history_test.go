package local

import (
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/catalogsql"
)

// corpusHistory stores the three runs of the corpus that ran //tests:flaky
// (testdata/README.md) and returns the store and each stream's facts as
// invocation.Build gives them, by key.
func corpusHistory(t *testing.T) (*Store, map[string]*store.Facts) {
	t.Helper()
	s := openStore(t)
	want := map[string]*store.Facts{}
	var ws []store.Writer
	for _, name := range []string{"test_mixed.bep", "test_cached.bep", "bes_test_mixed.obe"} {
		st, evs := readFile(t, name)
		ws = append(ws, write(t, s, st, evs))
		want[st.Key] = wantFacts(t, st, evs)
	}
	out, err := s.CommitAll(bg, ws, "src", "bep", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
	}
	return s, want
}

// testOf returns the facts of label in f, nil if it did not run.
func testOf(f *store.Facts, label string) *store.TestFacts {
	for i := range f.Tests {
		if f.Tests[i].Label == label {
			return &f.Tests[i]
		}
	}
	return nil
}

// The history of //tests:flaky on the corpus: its three runs, newest
// first, each as the stream's own facts say, and a summary that counts
// them.
func TestLabelHistoryCorpus(t *testing.T) {
	s, want := corpusHistory(t)
	h, err := s.LabelHistory(bg, "//tests:flaky", store.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if !h.Test || len(h.Runs) != 3 || h.Total != 3 {
		t.Fatalf("history: test %v, %d runs, total %d", h.Test, len(h.Runs), h.Total)
	}
	var statuses []string
	passed, flaky := 0, 0
	for i, r := range h.Runs {
		f := want[r.Key]
		tf := testOf(f, r.Label)
		if f == nil || tf == nil {
			t.Fatalf("run %d: stream %s has no such test", i, r.Key)
		}
		if r.InvocationID != f.InvocationID || !r.Start.Equal(f.Start) || r.Status != tf.Status || r.Attempts != tf.Attempts ||
			r.Cached != tf.Cached || r.Duration != tf.Duration || r.Shards != tf.Shards || r.FailedLog != tf.FailedLog {
			t.Errorf("run %d: %+v, want %+v of %s", i, r, *tf, f.InvocationID)
		}
		if i > 0 && r.Start.After(h.Runs[i-1].Start) {
			t.Errorf("run %d started after run %d", i, i-1)
		}
		statuses = append(statuses, fmt.Sprintf("%s cached=%v", r.Status, r.Cached > 0))
		switch {
		case r.Status == "PASSED" || r.CachedPass(): // test_cached's FLAKY from the cache passed
			passed++
		case r.Status == "FLAKY":
			flaky++
		}
	}
	// What the corpus holds (MANIFEST.md of the corpus): flaky in
	// test_mixed and bes_test_mixed, and in test_cached one cached
	// result with status FLAKY (total_num_cached 1).
	if got := strings.Join(slices.Sorted(slices.Values(statuses)), ", "); got != "FLAKY cached=false, FLAKY cached=false, FLAKY cached=true" {
		t.Errorf("statuses %s", got)
	}
	if h.Passed != passed || h.Flaky != flaky || h.Failed != 0 || h.Cached != 1 || !h.FirstFailure.IsZero() {
		t.Errorf("summary %+v", h)
	}
	for _, r := range h.Runs {
		if r.Status == "FLAKY" && (!strings.HasPrefix(r.FailedLog, "file://") || !strings.HasSuffix(r.FailedLog, ".log")) {
			t.Errorf("flaky run of %s: failed log %q", r.Key, r.FailedLog)
		}
	}

	// --limit, --match and --since.
	h2, err := s.LabelHistory(bg, "//tests:flaky", store.HistoryQuery{Limit: 2})
	if err != nil || len(h2.Runs) != 2 || h2.Runs[0].Key != h.Runs[0].Key || h2.Runs[1].Key != h.Runs[1].Key || h2.Total != 3 {
		t.Errorf("limit 2: %+v, %v", h2, err)
	}
	h3, err := s.LabelHistory(bg, "//tests:flaky", store.HistoryQuery{Match: func(k string) bool { return k == h.Runs[2].Key }})
	if err != nil || len(h3.Runs) != 1 || h3.Runs[0].Key != h.Runs[2].Key || h3.Total != 1 {
		t.Errorf("match: %+v, %v", h3, err)
	}
	h4, err := s.LabelHistory(bg, "//tests:flaky", store.HistoryQuery{Since: h.Runs[0].Start.Truncate(time.Second)})
	if err != nil || len(h4.Runs) == 0 || len(h4.Runs) == 3 || h4.Runs[0].Key != h.Runs[0].Key {
		t.Errorf("since the newest: %+v, %v", h4, err)
	}

	// A failing test: the failures' times are its streams'.
	h5, err := s.LabelHistory(bg, "//tests:fail", store.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var first, last time.Time
	for _, r := range h5.Runs {
		if r.Status == "FAILED" {
			if first.IsZero() || r.Start.Before(first) {
				first = r.Start
			}
			if r.Start.After(last) {
				last = r.Start
			}
		}
	}
	if h5.Failed == 0 || !h5.FirstFailure.Equal(first) || !h5.LastFailure.Equal(last) {
		t.Errorf("//tests:fail: %+v, want failures %v..%v", h5, first, last)
	}

	// A target that is no test: its builds.
	var target string
	var built int
	for _, f := range want {
		for _, tg := range f.Targets {
			if !strings.Contains(tg.Kind, "test") && target == "" {
				target = tg.Label
			}
		}
	}
	for _, f := range want {
		for _, tg := range f.Targets {
			if tg.Label == target && tg.Success {
				built++
			}
		}
	}
	h6, err := s.LabelHistory(bg, target, store.HistoryQuery{})
	if err != nil || h6.Test || h6.Passed != built || len(h6.Runs) != h6.Total || h6.Runs[0].Status != "BUILT" {
		t.Errorf("target %s: %+v, %v; want %d built", target, h6, err, built)
	}
	// A label that never ran.
	h7, err := s.LabelHistory(bg, "//no:such", store.HistoryQuery{})
	if err != nil || len(h7.Runs) != 0 || h7.Total != 0 {
		t.Errorf("no such label: %+v, %v", h7, err)
	}
}

// bes flaky on the corpus: //tests:flaky first, and no test that always
// passed.
func TestFlakyTestsCorpus(t *testing.T) {
	s, want := corpusHistory(t)
	got, err := s.FlakyTests(bg, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0].Label != "//tests:flaky" || got[0].Runs != 3 || got[0].Flakes != 2 || got[0].FlakyStatus != 2 {
		t.Fatalf("flaky: %+v", got)
	}
	if f := want[got[0].LastKey]; f == nil || testOf(f, "//tests:flaky").Status != "FLAKY" || got[0].LastLog != testOf(f, "//tests:flaky").FailedLog || got[0].LastLog == "" {
		t.Errorf("last flake %s, log %q", got[0].LastKey, got[0].LastLog)
	}
	for _, ft := range got {
		always := true
		for _, f := range want {
			if tf := testOf(f, ft.Label); tf != nil && tf.Status != "PASSED" {
				always = false
			}
		}
		if always {
			t.Errorf("%s always passed, listed as flaky", ft.Label)
		}
	}
	if got, err := s.FlakyTests(bg, time.Time{}, 4); err != nil || len(got) != 0 {
		t.Errorf("min runs 4: %+v, %v", got, err)
	}
}

// The facts of migration 3 survive a round trip, and the history queries
// run on indexes: the query plans SQLite chooses name them, and never scan
// the tests table.
func TestHistoryQueryPlans(t *testing.T) {
	s, _ := corpusHistory(t)
	db, err := s.catalog(bg, false)
	if err != nil {
		t.Fatal(err)
	}
	plan := func(q string, args ...any) string {
		rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			b.WriteString(detail + "; ")
		}
		return b.String()
	}
	for _, c := range []struct{ q, index string }{
		{`SELECT count(*), COALESCE(sum(CASE WHEN status = 'PASSED' THEN 1 ELSE 0 END), 0), COALESCE(sum(CASE WHEN cached > 0 THEN 1 ELSE 0 END), 0) FROM tests WHERE label = ? AND start_sec >= ?`, "COVERING INDEX tests_label_start"},
		{`SELECT t.key FROM tests t JOIN invocations i ON i.key = t.key WHERE t.label = ? ORDER BY t.start_sec DESC NULLS LAST LIMIT 10`, "tests_label_start"},
		{`SELECT count(*), COALESCE(sum(CASE WHEN success THEN 1 ELSE 0 END), 0), min(CASE WHEN success THEN NULL ELSE start_sec END) FROM targets WHERE label = ? AND start_sec >= ?`, "COVERING INDEX targets_label_start"},
		{`SELECT t.label FROM tests t WHERE t.status <> 'PASSED' AND t.status IN ('FLAKY', ` + failingIn + `) AND t.start_sec >= ?`, "tests_failing"},
		{`SELECT t.key FROM tests t JOIN invocations i ON i.key = t.key WHERE t.label = ? AND EXISTS (` + passedAtCommit + `)`, "USING INDEX invocations_commit (commit_id=?); SEARCH p USING INDEX tests_key (key=? AND label=?)"},
		// The streams an invocation stored more than once shadows: the
		// ids of migration 6's same_invocations, then migration 5's index
		// on the invocation id.
		{`SELECT count(*) FROM (` + catalogsql.SQLite.Shadowed() + `) AS sh`, "SEARCH i USING INDEX invocations_invocation_id (invocation_id=?)"},
	} {
		n := strings.Count(c.q, "?")
		args := make([]any, n)
		for i := range args {
			args[i] = sql.NullString{}
		}
		p := plan(c.q, args...)
		if !strings.Contains(p, c.index) || strings.Contains(p, "SCAN t ") || strings.Contains(p, "SCAN tests") || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("%s\nplan: %s\nwant %s", c.q, p, c.index)
		}
	}
}
