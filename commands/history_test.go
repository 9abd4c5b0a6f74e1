package commands

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/bepgen"
)

// corpusStore ingests the three runs of the corpus that ran //tests:flaky
// into a new store and returns it: four streams, bes_test_mixed's run
// being both its .bep file and its BES capture (one invocation id).
func corpusStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var args []string
	for _, name := range []string{"test_mixed.bep", "test_cached.bep", "bes_test_mixed.obe", "bes_test_mixed.bep"} {
		args = append(args, filepath.Join("..", "testdata", name))
	}
	if _, stderr, code := runCLI(t, append([]string{"ingest", "--store", dir}, args...)...); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	return dir
}

// testsOfStream returns `bes tests STREAM --format json` of a stored
// stream: what the stream's own events say, by label.
func testsOfStream(t *testing.T, dir, key string) map[string]testRow {
	t.Helper()
	out, stderr, _ := runCLI(t, "tests", "--store", dir, "--format", "json", key)
	var rows []testRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("tests %s: %v: %s", key, err, stderr)
	}
	m := map[string]testRow{}
	for _, r := range rows {
		m[r.Label] = r
	}
	return m
}

// Issue 15's acceptance on the corpus: bes history //tests:flaky lists the
// three invocations (FLAKY, passed from cache, FLAKY), each once though
// bes_test_mixed's is stored twice, each as its own stream says; bes
// flaky ranks //tests:flaky first, counts each invocation once and the
// cached result as a pass, and lists no test that always passed.
func TestHistoryCorpus(t *testing.T) {
	dir := corpusStore(t)
	out, stderr, code := runCLI(t, "history", "--store", dir, "//tests:flaky", "--format", "json")
	if code != 0 {
		t.Fatalf("history: exit %d: %s", code, stderr)
	}
	var h historySummary
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Runs) != 3 || h.Total != 3 || !h.Test {
		t.Fatalf("history: %+v", h)
	}
	ids := map[string]bool{}
	var got []string
	for i, r := range h.Runs {
		want := testsOfStream(t, dir, r.Stream)["//tests:flaky"]
		if r.BazelStatus != want.Status || r.Cached != want.Cached || r.Attempts != want.Attempts || r.InvocationID != want.InvocationID ||
			r.Duration != want.Duration || r.Start == nil {
			t.Errorf("run %d: %+v, bes tests says %+v", i, r, want)
		}
		if i > 0 && r.Start.After(*h.Runs[i-1].Start) {
			t.Errorf("run %d is newer than run %d", i, i-1)
		}
		ids[r.InvocationID] = true
		got = append(got, fmt.Sprintf("%s (%s) from_cache=%v cached=%d", r.Status, r.BazelStatus, r.FromCache, r.Cached))
	}
	// The three runs (MANIFEST.md of the corpus): flaky in test_mixed and
	// bes_test_mixed, and in test_cached its FLAKY result from the cache:
	// a pass from the cache, no new run.
	if len(ids) != 3 || strings.Join(got, ", ") != "FLAKY (FLAKY) from_cache=false cached=0, PASSED (FLAKY) from_cache=true cached=1, FLAKY (FLAKY) from_cache=false cached=0" {
		t.Errorf("runs: %v, %d invocations", got, len(ids))
	}
	// bes_test_mixed's run is its .bep's (complete, ingested last).
	if !strings.HasPrefix(h.Runs[0].Stream, "8b58a6b7-") {
		t.Errorf("bes_test_mixed's run is stream %s", h.Runs[0].Stream)
	}
	if h.Passed != 1 || h.Flaky != 2 || h.Failed != 0 || h.Cached != 1 || h.FirstFailure != nil {
		t.Errorf("summary: %+v", h)
	}
	table, _, _ := runCLI(t, "history", "--store", dir, "//tests:flaky")
	if !strings.Contains(table, "3 runs: 1 passed (33.3%; 1 from cache), 2 flaky (66.7%), 0 failed (0.0%)") || strings.Count(table, "PASSED (cached)") != 1 {
		t.Errorf("table:\n%s", table)
	}
	// --match keeps the BES capture: it then stands for its invocation.
	out, _, _ = runCLI(t, "history", "--store", dir, "//tests:flaky", "--format", "json", "--match", "^0fff9624-")
	var hm historySummary
	if err := json.Unmarshal([]byte(out), &hm); err != nil || hm.Total != 1 || len(hm.Runs) != 1 || hm.Runs[0].InvocationID != h.Runs[0].InvocationID {
		t.Errorf("history --match: %v: %s", err, out)
	}

	out, stderr, code = runCLI(t, "flaky", "--store", dir, "--format", "json")
	if code != 0 {
		t.Fatalf("flaky: exit %d: %s", code, stderr)
	}
	var flaky []flakyRow
	if err := json.Unmarshal([]byte(out), &flaky); err != nil {
		t.Fatal(err)
	}
	if len(flaky) == 0 || flaky[0].Label != "//tests:flaky" || flaky[0].Runs != 3 || flaky[0].Flakes != 2 || flaky[0].Flaky != 2 || flaky[0].Failed != 0 {
		t.Fatalf("flaky: %+v", flaky)
	}
	// bes trends too counts each invocation once.
	out, _, _ = runCLI(t, "trends", "--store", dir, "--format", "json")
	var tr struct {
		Builds []trendRow  `json:"builds"`
		Growth []growthRow `json:"growth"`
	}
	if err := json.Unmarshal([]byte(out), &tr); err != nil || len(tr.Builds) != 1 || tr.Builds[0].Runs != 3 ||
		!slices.ContainsFunc(tr.Growth, func(g growthRow) bool { return g.Label == "//tests:flaky" && g.RunsBefore+g.RunsAfter == 2 }) {
		t.Errorf("trends: %v: %s", err, out)
	}
	if tr := testsOfStream(t, dir, flaky[0].Stream)["//tests:flaky"]; tr.Status != "FLAKY" || tr.Cached != 0 || !slices.ContainsFunc(tr.Runs, func(r runRow) bool { return r.Log == flaky[0].Log && r.Status == "FAILED" }) {
		t.Errorf("last flake %s, log %s: bes tests says %+v", flaky[0].Stream, flaky[0].Log, tr)
	}
	streams := []string{}
	for _, r := range h.Runs {
		streams = append(streams, r.Stream)
	}
	for _, f := range flaky {
		always := true
		for _, s := range streams {
			if tr, ok := testsOfStream(t, dir, s)[f.Label]; ok && tr.Status != "PASSED" {
				always = false
			}
		}
		if always {
			t.Errorf("%s always passed, yet bes flaky lists it", f.Label)
		}
	}

	// A label that never ran: nothing to report, exit 7.
	if _, stderr, code := runCLI(t, "history", "--store", dir, "//no:such"); code != ExitNoData || !strings.Contains(stderr, "no run of //no:such") {
		t.Errorf("no such label: exit %d, %s", code, stderr)
	}
	if _, _, code := runCLI(t, "history", "--store", dir, "//tests:flaky", "--since", "yesterday-ish"); code != ExitUsage {
		t.Errorf("bad --since: exit %d", code)
	}
}

// flakyPlan is a store of known flaky tests: invocation i (of 24) of a
// workspace of 10 tests, at commit c(i/4) (none from 20 on), and the
// statuses of the tests it names; every other test passes.
func flakyPlan(i int) (commit string, statuses map[string]bes.TestStatus) {
	const (
		flaky, failed, timeout = bes.TestStatus_FLAKY, bes.TestStatus_FAILED, bes.TestStatus_TIMEOUT
	)
	if i < 20 {
		commit = fmt.Sprintf("c%039d", i/4)
	}
	statuses = map[string]bes.TestStatus{}
	set := func(test int, st bes.TestStatus) { statuses[fmt.Sprintf("//pkg00000:test%03d", test)] = st }
	if i%3 == 0 {
		set(1, flaky) // flaky: retried
	}
	if i%5 == 1 {
		set(4, flaky)
	}
	if i%4 == 0 {
		set(7, failed) // flaky: fails once at each commit, passes again at it
	}
	set(2, failed) // broken: never passes
	if i < 8 {
		set(5, failed) // fixed at commit 2: never both at one commit
	}
	if i/4 == 3 {
		set(8, timeout) // broken at commit 3 only
	}
	if i == 20 {
		set(9, failed) // fails then passes, but with no commit to tell
	}
	return commit, statuses
}

// A generated store of known flaky tests (flakyPlan): bes flaky finds
// exactly them, with their flakes, most first.
func TestFlakyGenerated(t *testing.T) {
	const n = 24
	dir, in := t.TempDir(), t.TempDir()
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	var files []string
	want := map[string]int{} // label → flakes
	for i := range n {
		commit, statuses := flakyPlan(i)
		path := filepath.Join(in, fmt.Sprintf("inv%02d.bep", i))
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bepgen.WriteBEP(f, bepgen.Config{Seed: uint64(100 + i), Targets: 40, Start: base.Add(time.Duration(i) * time.Hour),
			Commit: commit, Statuses: statuses, Passing: true}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		files = append(files, path)
		for label, st := range statuses {
			if st == bes.TestStatus_FLAKY {
				want[label]++
				continue
			}
			// Failed: a flake when another run at the commit passed.
			for j := range n {
				if c, other := flakyPlan(j); j != i && commit != "" && c == commit {
					if _, failedThere := other[label]; !failedThere {
						want[label]++
						break
					}
				}
			}
		}
	}
	if _, stderr, code := runCLI(t, append([]string{"ingest", "--store", dir}, files...)...); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	out, stderr, code := runCLI(t, "flaky", "--store", dir, "--format", "json")
	if code != 0 {
		t.Fatalf("flaky: exit %d: %s", code, stderr)
	}
	var rows []flakyRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for i, r := range rows {
		got[r.Label] = r.Flakes
		if r.Runs != n {
			t.Errorf("%s: %d runs, want %d", r.Label, r.Runs, n)
		}
		if i > 0 && r.Flakes > rows[i-1].Flakes {
			t.Errorf("%s ranked after %s with more flakes", r.Label, rows[i-1].Label)
		}
	}
	known := []string{"//pkg00000:test001", "//pkg00000:test004", "//pkg00000:test007"}
	if !slices.Equal(slices.Sorted(maps(got)), known) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("flaky tests %v, want %v (known: %v)", got, want, known)
	}
	// The window and --min-runs: the last 12 invocations.
	out, _, _ = runCLI(t, "flaky", "--store", dir, "--format", "json", "--since", base.Add(12*time.Hour).Format(time.RFC3339))
	rows = nil
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Runs != 12 || r.Start.Before(base.Add(12*time.Hour)) {
			t.Errorf("since: %+v", r)
		}
	}
	if out, _, _ := runCLI(t, "flaky", "--store", dir, "--format", "json", "--min-runs", "25"); strings.TrimSpace(out) != "[]" {
		t.Errorf("min-runs 25: %s", out)
	}
	// The history of the test that fails at each commit once.
	out, _, _ = runCLI(t, "history", "--store", dir, "--format", "json", "//pkg00000:test007", "--limit", "5")
	var h historySummary
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		t.Fatal(err)
	}
	if h.Total != n || h.Failed != n/4 || h.Passed+h.Failed != n || len(h.Runs) != 5 || h.Runs[0].Commit != "" || h.Runs[4].Commit != fmt.Sprintf("c%039d", 4) ||
		!h.LastFailure.Equal(base.Add(20*time.Hour)) || !h.FirstFailure.Equal(base) {
		t.Errorf("history of test007: %+v", h)
	}
}

func maps(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestFlakyMinRunsNegative: a negative --min-runs is a usage error (exit 2,
// one line naming the flag), not silently no bound.
func TestFlakyMinRunsNegative(t *testing.T) {
	stdout, stderr, code := runCLI(t, "flaky", "--store", t.TempDir(), "--min-runs", "-1")
	if code != ExitUsage || stdout != "" || !strings.Contains(stderr, "--min-runs -1: want 0 or more") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("flaky --min-runs -1: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestHistoryNoRun: a label never seen prints the table's header alone
// (as every view with no row), no summary line, and one line on standard
// error that names --since and --match when given; exit 7. JSON keeps its
// shape.
func TestHistoryNoRun(t *testing.T) {
	dir := t.TempDir()
	stdout, stderr, code := runCLI(t, "history", "--store", dir, "//no:such")
	if code != ExitNoData || stdout != "INVOCATION  START  COMMIT  BRANCH  STATUS\n" || stderr != "bes: history: no run of //no:such in the store\n" {
		t.Errorf("no such label: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	_, stderr, code = runCLI(t, "history", "--store", dir, "//no:such", "--since", "30d", "--match", "ci")
	if code != ExitNoData || stderr != "bes: history: no run of //no:such (--since 30d, --match ci) in the store\n" {
		t.Errorf("with --since and --match: exit %d, stderr %q", code, stderr)
	}
	stdout, _, code = runCLI(t, "history", "--store", dir, "//no:such", "-o", "json")
	var sum historySummary
	if err := json.Unmarshal([]byte(stdout), &sum); code != ExitNoData || err != nil || sum.Label != "//no:such" || sum.Runs == nil {
		t.Errorf("json: exit %d, %v: %s", code, err, stdout)
	}
}
