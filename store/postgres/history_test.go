package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/catalogsql"
	"github.com/bes-cli/bes/store/local"
)

// corpusBoth stores the three runs of the corpus that ran //tests:flaky
// (testdata/README.md), as store/local's history tests do, in a
// PostgreSQL store and in a directory store, and returns both.
// bes_test_mixed's run is stored three times: its BES capture, its .bep,
// and last a copy of the .bep cut short under the build id zz-cut.
func corpusBoth(t *testing.T) (*Store, *local.Store) {
	t.Helper()
	ctx := context.Background()
	pg, err := Open(ctx, newCatalog(t), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	dir, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	for _, name := range []string{"test_mixed.bep", "test_cached.bep", "bes_test_mixed.obe", "bes_test_mixed.bep", "cut"} {
		var st *bepfile.Stream
		var evs []bepfile.Event
		if name == "cut" {
			st, evs = readInput(t, "bes_test_mixed.bep", "zz-cut")
			evs = evs[:60]
		} else {
			st, evs = readInput(t, name, "")
		}
		for _, b := range []store.Backend{pg, dir} {
			w, err := b.Create(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			for i := range evs {
				w.Append(&evs[i])
			}
			if _, _, err := w.Commit(ctx, "src", "bep", false); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	return pg, dir
}

// The acceptance of issue 15 on the team store: bes history //tests:flaky
// lists the three invocations (FLAKY, passed from cache, FLAKY), each
// once, bes_test_mixed's by its complete .bep, bes flaky
// ranks //tests:flaky first and lists no test that always passed; and
// every history query answers on PostgreSQL what it answers on SQLite
// (store/local's tests check those answers against the streams' facts).
func TestHistoryCorpus(t *testing.T) {
	ctx := context.Background()
	pg, dir := corpusBoth(t)

	h, err := pg.LabelHistory(ctx, "//tests:flaky", store.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for _, r := range h.Runs {
		statuses = append(statuses, r.Status+" cached pass="+map[bool]string{true: "true", false: "false"}[r.CachedPass()])
	}
	slices.Sort(statuses)
	if !h.Test || len(h.Runs) != 3 || h.Total != 3 || h.Flaky != 2 || h.Passed != 1 || h.Cached != 1 || !strings.HasPrefix(h.Runs[0].Key, "8b58a6b7-") ||
		strings.Join(statuses, ", ") != "FLAKY cached pass=false, FLAKY cached pass=false, FLAKY cached pass=true" {
		t.Errorf("history of //tests:flaky: test %v, %d runs %v, summary %+v", h.Test, len(h.Runs), statuses, h)
	}
	fl, err := pg.FlakyTests(ctx, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(fl) == 0 || fl[0].Label != "//tests:flaky" || fl[0].Runs != 3 || fl[0].Flakes != 2 || fl[0].LastLog == "" {
		t.Errorf("flaky: %+v", fl)
	}

	// The same answers as SQLite's, query by query.
	same := func(what string, got, want any, gerr, werr error) {
		t.Helper()
		if gerr != nil || werr != nil {
			t.Errorf("%s: PostgreSQL %v, SQLite %v", what, gerr, werr)
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\nPostgreSQL %+v\nSQLite     %+v", what, got, want)
		}
	}
	newest := h.Runs[0].Start.Truncate(time.Second)
	for _, label := range []string{"//tests:flaky", "//tests:fail", "//tests:timeout", "//tests:pass", "//no:such"} {
		for _, q := range []store.HistoryQuery{{}, {Limit: 2}, {Limit: 1}, {Since: newest}, {Match: func(k string) bool { return k == h.Runs[2].Key }},
			{Match: func(k string) bool { return !strings.HasPrefix(k, "8b58a6b7-") }}, {Match: func(k string) bool { return strings.HasPrefix(k, "0fff") }}} {
			g, gerr := pg.LabelHistory(ctx, label, q)
			w, werr := dir.LabelHistory(ctx, label, q)
			same("history of "+label, g, w, gerr, werr)
		}
		g, gerr := pg.TestTimings(ctx, label, time.Time{})
		w, werr := dir.TestTimings(ctx, label, time.Time{})
		same("test timings of "+label, g, w, gerr, werr)
	}
	// A target that is no test: its builds, from targets.
	f, err := dir.Facts(ctx, h.Runs[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	target := ""
	for _, tg := range f.Targets {
		if !strings.Contains(tg.Kind, "test") {
			target = tg.Label
			break
		}
	}
	g, gerr := pg.LabelHistory(ctx, target, store.HistoryQuery{})
	w, werr := dir.LabelHistory(ctx, target, store.HistoryQuery{})
	same("history of the target "+target, g, w, gerr, werr)
	if gerr == nil && (g.Test || g.Total == 0) {
		t.Errorf("target %s: %+v", target, g)
	}
	for _, minRuns := range []int{0, 4} {
		g, gerr := pg.FlakyTests(ctx, time.Time{}, minRuns)
		w, werr := dir.FlakyTests(ctx, time.Time{}, minRuns)
		same("flaky", g, w, gerr, werr)
	}
	gi, gerr := pg.InvocationTimings(ctx, time.Time{})
	wi, werr := dir.InvocationTimings(ctx, time.Time{})
	same("invocation timings", gi, wi, gerr, werr)
	if len(gi) != 3 {
		t.Errorf("%d invocation timings, want 3", len(gi))
	}
	split := h.Runs[0].Start
	gg, gerr := pg.DurationGrowth(ctx, time.Time{}, split, 0)
	wg, werr := dir.DurationGrowth(ctx, time.Time{}, split, 0)
	same("duration growth", gg, wg, gerr, werr)

	// ManyFacts: what Facts gives for each key, in order; a key not
	// stored is ErrNotFound.
	keys := []string{h.Runs[2].Key, h.Runs[0].Key, h.Runs[1].Key}
	many, err := pg.ManyFacts(ctx, keys)
	if err != nil || len(many) != 3 {
		t.Fatalf("ManyFacts: %d, %v", len(many), err)
	}
	for i, k := range keys {
		one, err := pg.Facts(ctx, k)
		if err != nil || one == nil || !reflect.DeepEqual(many[i], one) {
			t.Errorf("ManyFacts[%d] of %s: %+v, Facts %+v, %v", i, k, many[i], one, err)
		}
	}
	if _, err := pg.ManyFacts(ctx, []string{keys[0], "nope.3.nope"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ManyFacts of a key not stored: %v", err)
	}
}

// A run whose stream has no start time (no BuildStarted) comes after the
// runs of a known start, newest first, with or without a limit, and is
// outside any window with a start.
func TestHistoryUnknownStart(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, newCatalog(t), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	starts := []time.Time{base, {}, base.Add(time.Hour), base.Add(2 * time.Hour)}
	var keys []string
	err = s.tx(ctx, func(tx pgx.Tx) error {
		for i, start := range starts {
			id := fmt.Sprintf("%08x-0000-4000-a000-%012x", i, i)
			key := id + ".3." + id
			keys = append(keys, key)
			e := &store.Entry{Key: key, BuildID: id, InvocationID: id, Component: 3, Events: 1, Complete: true, Start: start, File: bodyDir(key, "g"), Digest: id}
			f := &store.Facts{Key: key, InvocationID: id, Start: start,
				Tests: []store.TestFacts{{Label: "//a:t", Configuration: "c", Status: []string{"PASSED", "FAILED", "FLAKY", "PASSED"}[i], Attempts: 1, Shards: 1, Runs: 1, TotalRuns: 1}}}
			if err := putStream(ctx, tx, e, "g", 1); err != nil {
				return err
			}
			if err := putFacts(ctx, tx, key, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	order := func(h *store.LabelHistory) string {
		var ks []string
		for _, r := range h.Runs {
			ks = append(ks, r.Key[:8])
		}
		return strings.Join(ks, " ")
	}
	for _, c := range []struct {
		q    store.HistoryQuery
		want string
	}{
		{store.HistoryQuery{}, "00000003 00000002 00000000 00000001"},
		{store.HistoryQuery{Limit: 4}, "00000003 00000002 00000000 00000001"},
		{store.HistoryQuery{Limit: 3}, "00000003 00000002 00000000"},
		{store.HistoryQuery{Limit: 1}, "00000003"},
		{store.HistoryQuery{Since: base.Add(time.Hour)}, "00000003 00000002"},
	} {
		h, err := s.LabelHistory(ctx, "//a:t", c.q)
		if err != nil || order(h) != c.want {
			t.Errorf("%+v: %q, %v; want %q", c.q, order(h), err, c.want)
		}
		if err == nil && c.q.Since.IsZero() && (h.Total != 4 || h.Failed != 1 || !h.FirstFailure.IsZero()) {
			t.Errorf("%+v: summary %+v", c.q, h)
		}
	}
}

// TestHistoryLabelIndexOnly: a label's summary (the count of its runs by
// status, and bes flaky's count of a flaky test's runs) is an index-only
// scan of migration 7's tests_label or targets_label, for a label of at
// most 1,024 bytes, and reads tests_label_long for a longer one; the
// summaries of both, and of a short label that is a long one's first 512
// characters, count their own runs only. Before migration 7 the summary
// read the table's rows (450 ms for a test, 1.7 s for a genrule at
// 100,000 invocations, BENCHMARKS.md).
func TestHistoryLabelIndexOnly(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, newCatalog(t), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	long := "//" + strings.Repeat("p", 1100) + ":t"
	short := long[:512]
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err = s.tx(ctx, func(tx pgx.Tx) error {
		for i := range 6 {
			id := fmt.Sprintf("%08x-0000-4000-a000-%012x", i, i)
			key := id + ".3." + id
			start := base.Add(time.Duration(i) * time.Hour)
			e := &store.Entry{Key: key, BuildID: id, InvocationID: id, Component: 3, Events: 1, Complete: true, Start: start, File: bodyDir(key, "g"), Digest: id}
			f := &store.Facts{Key: key, InvocationID: id, Start: start,
				Targets: []store.TargetFacts{{Label: "//a:g", Kind: "genrule", Success: i != 2}},
				Tests:   []store.TestFacts{{Label: "//a:t", Configuration: "c", Status: "PASSED", Attempts: 1, Shards: 1, Runs: 1, TotalRuns: 1}}}
			if i%2 == 0 {
				f.Tests = append(f.Tests, store.TestFacts{Label: long, Configuration: "c", Status: "FAILED", Attempts: 1, Shards: 1, Runs: 1, TotalRuns: 1})
			} else {
				f.Tests = append(f.Tests, store.TestFacts{Label: short, Configuration: "c", Status: "PASSED", Attempts: 1, Shards: 1, Runs: 1, TotalRuns: 1})
			}
			if err := putStream(ctx, tx, e, "g", 1); err != nil {
				return err
			}
			if err := putFacts(ctx, tx, key, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		label                 string
		total, passed, failed int
	}{{"//a:t", 6, 6, 0}, {"//a:g", 6, 5, 1}, {long, 3, 0, 3}, {short, 3, 3, 0}} {
		h, err := s.LabelHistory(ctx, c.label, store.HistoryQuery{})
		if err != nil || h.Total != c.total || h.Passed != c.passed || h.Failed != c.failed || len(h.Runs) != c.total {
			t.Errorf("%.20s: %+v, %v; want %d runs, %d passed, %d failed", c.label, h, err, c.total, c.passed, c.failed)
		}
	}
	// The plans, on these few rows with the table scans disabled: which
	// index, and whether it reads the table.
	err = s.tx(ctx, func(tx pgx.Tx) error {
		for _, set := range []string{`SET LOCAL enable_seqscan = off`, `SET LOCAL enable_bitmapscan = off`} {
			if _, err := tx.Exec(ctx, set); err != nil {
				return err
			}
		}
		for _, c := range []struct{ table, cols, label, want string }{
			{"tests", "count(*), sum(CASE WHEN status = 'PASSED' AND cached = 0 THEN 1 ELSE 0 END), max(start_sec)", "//a:t", "Index Only Scan using tests_label "},
			{"tests", "count(*)", "//a:t", "Index Only Scan using tests_label "},
			{"targets", "count(*), sum(CASE WHEN success THEN 1 ELSE 0 END), max(start_sec)", "//a:g", "Index Only Scan using targets_label "},
			{"tests", "count(*)", long, "using tests_label_long "},
		} {
			cond, args := catalogsql.PostgreSQL.LabelIs("label", c.label)
			q := catalogsql.PostgreSQL.Rebind(`EXPLAIN SELECT ` + c.cols + ` FROM ` + c.table + ` WHERE ` + cond + ` AND start_sec >= ?`)
			rows, err := tx.Query(ctx, q, append(args, int64(0))...)
			if err != nil {
				return err
			}
			var plan []string
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					return err
				}
				plan = append(plan, line)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if p := strings.Join(plan, "\n"); !strings.Contains(p, c.want) {
				t.Errorf("%s of %.20s: plan\n%s\nwant %q", c.table, c.label, p, c.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
