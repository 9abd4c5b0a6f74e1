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

// bes trends on the corpus: each day's median and 90th percentile of the
// invocations' wall times, and their metrics, are those bes summary gives
// of each invocation.
func TestTrendsCorpus(t *testing.T) {
	dir := t.TempDir()
	args := []string{"ingest", "--store", dir}
	for _, name := range []string{"build_ok.bep", "build_keep_going_fail.bep", "test_mixed.bep", "test_cached.bep", "build_genrules.bep"} {
		args = append(args, filepath.Join("..", "testdata", name))
	}
	if _, stderr, code := runCLI(t, args...); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	out, _, _ := runCLI(t, "summary", "--store", dir, "--match", ".", "--format", "json")
	var sums []struct {
		InvocationID string    `json:"invocation_id"`
		Start        time.Time `json:"start"`
		Duration     float64   `json:"duration_seconds"`
		Metrics      struct {
			ActionsExecuted int64   `json:"actions_executed"`
			CriticalPath    float64 `json:"critical_path_seconds"`
		} `json:"metrics"`
	}
	if err := json.Unmarshal([]byte(out), &sums); err != nil || len(sums) != 5 {
		t.Fatalf("summary: %v, %d invocations", err, len(sums))
	}
	byDay := map[string][]float64{}
	crit := map[string][]float64{}
	for _, s := range sums {
		day := s.Start.UTC().Format(time.DateOnly)
		byDay[day] = append(byDay[day], s.Duration)
		crit[day] = append(crit[day], s.Metrics.CriticalPath)
	}
	rank := func(v []float64, p int) float64 {
		slices.Sort(v)
		k := max(1, (p*len(v)+99)/100)
		return v[k-1]
	}
	out, stderr, code := runCLI(t, "trends", "--store", dir, "--format", "json", "--invocations", "//tests:fail")
	if code != 0 {
		t.Fatalf("trends: exit %d: %s", code, stderr)
	}
	var doc trendsDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Builds) != len(byDay) {
		t.Fatalf("builds: %+v, want days %v", doc.Builds, byDay)
	}
	n := 0
	for _, r := range doc.Builds {
		d := byDay[r.Period]
		if r.Runs != len(d) || r.Median != rank(d, 50) || r.P90 != rank(d, 90) || r.CriticalPath != rank(crit[r.Period], 50) {
			t.Errorf("day %s: %+v, want durations %v, critical paths %v", r.Period, r, d, crit[r.Period])
		}
		n += r.Runs
	}
	if n != len(sums) || len(doc.Invocations) != len(sums) {
		t.Errorf("%d invocations in the periods, %d listed, want %d", n, len(doc.Invocations), len(sums))
	}
	for _, inv := range doc.Invocations {
		i := slices.IndexFunc(sums, func(s struct {
			InvocationID string    `json:"invocation_id"`
			Start        time.Time `json:"start"`
			Duration     float64   `json:"duration_seconds"`
			Metrics      struct {
				ActionsExecuted int64   `json:"actions_executed"`
				CriticalPath    float64 `json:"critical_path_seconds"`
			} `json:"metrics"`
		}) bool {
			return s.InvocationID == inv.InvocationID
		})
		if i < 0 || sums[i].Duration != inv.Duration || sums[i].Metrics.ActionsExecuted != inv.ActionsExecuted || sums[i].Metrics.CriticalPath != inv.CriticalPath {
			t.Errorf("invocation %+v, summary says %+v", inv, sums[i])
		}
	}
	// //tests:fail ran (not from a cache) in test_mixed and test_cached.
	runs := 0
	for _, r := range doc.Tests {
		if r.Label != "//tests:fail" {
			t.Errorf("test row %+v", r)
		}
		runs += r.Runs
	}
	if runs != 2 {
		t.Errorf("//tests:fail: %d runs in %+v", runs, doc.Tests)
	}
	nd, _, _ := runCLI(t, "trends", "--store", dir, "--format", "ndjson")
	if lines := strings.Count(nd, "\n"); lines != len(doc.Builds)+len(doc.Growth) {
		t.Errorf("ndjson: %d lines", lines)
	}
}

// A test that got slower: bes trends' growth names it first. Eight
// invocations of one bepgen seed (the same tests, the same durations),
// a day apart; in the last four the last test generated, test009, is
// FLAKY: a second attempt adds to its time, and to no other test's.
func TestTrendsGrowth(t *testing.T) {
	dir, in := t.TempDir(), t.TempDir()
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range 8 {
		path := filepath.Join(in, fmt.Sprintf("inv%d.bep", i))
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		// The same seed: the same tests with the same durations, but for
		// the start time.
		if _, err := bepgen.WriteBEP(f, bepgen.Config{Seed: 7, Targets: 40, Start: base.Add(time.Duration(i) * 24 * time.Hour), Passing: true,
			Statuses: slowIf(i >= 4), InvocationID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i)}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		// One seed, but an invocation id of its own (bes history counts
		// one run per invocation id), and a build id of its own.
		if _, stderr, code := runCLI(t, "ingest", "--store", dir, "--build-id", fmt.Sprintf("build-%d", i), path); code != 0 {
			t.Fatalf("ingest: exit %d: %s", code, stderr)
		}
	}
	out, stderr, code := runCLI(t, "trends", "--store", dir, "--format", "json", "//pkg00000:test009")
	if code != 0 {
		t.Fatalf("trends: exit %d: %s", code, stderr)
	}
	var doc trendsDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Growth) == 0 || doc.Growth[0].Label != "//pkg00000:test009" || doc.Growth[0].RunsBefore != 4 || doc.Growth[0].RunsAfter != 4 ||
		doc.Growth[0].After <= doc.Growth[0].Before {
		t.Errorf("growth: %+v", doc.Growth)
	}
	if len(doc.Builds) != 8 || len(doc.Tests) != 8 || doc.Tests[7].Median <= doc.Tests[0].Median {
		t.Errorf("builds %d days, test009 %+v", len(doc.Builds), doc.Tests)
	}
}

// slowIf makes //pkg00000:test009 flaky (two attempts) when slow.
func slowIf(slow bool) map[string]bes.TestStatus {
	if !slow {
		return nil
	}
	return map[string]bes.TestStatus{"//pkg00000:test009": bes.TestStatus_FLAKY}
}
