package local

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/bes-cli/bes/bepfile/bepgen"
	"github.com/bes-cli/bes/store"
)

// Stores for the benchmarks of the history queries (issue 15,
// BENCHMARKS.md): BES_HISTORY_STORE=DIR BES_HISTORY_N=100000 go test
// ./store/local -run TestMakeHistoryStore makes a store of N invocations
// in DIR, their facts written through the catalog's own writer (putEntryTx,
// putFactsTx) without stream files: generating and ingesting 100,000
// streams would take hours. Each invocation's facts are those
// store.FactsOf gives for a bepgen invocation of historyBenchTargets
// targets (a quarter of them tests), one of 16 seeds, started 5 minutes
// after the one before, at commit i/4, with the known flaky tests of
// historyBenchFlaky; every other test passes. It prints the catalog's
// size and the bytes of the bepgen files the facts describe.
const historyBenchTargets = 80

// historyBenchFlaky says whether test t (0-based in //pkg00000) is FLAKY
// in invocation i: test001 in every 7th, test004 in every 11th,
// pkg00001:test002 in every 50th. No other test flakes.
func historyBenchFlaky(i int, label string) bool {
	switch label {
	case "//pkg00000:test001":
		return i%7 == 0
	case "//pkg00000:test004":
		return i%11 == 3
	case "//pkg00001:test002":
		return i%50 == 17
	}
	return false
}

func TestMakeHistoryStore(t *testing.T) {
	dir := os.Getenv("BES_HISTORY_STORE")
	n, _ := strconv.Atoi(os.Getenv("BES_HISTORY_N"))
	if dir == "" || n <= 0 {
		t.Skip("BES_HISTORY_STORE and BES_HISTORY_N make a store for the benchmarks of bes history and bes flaky")
	}
	// The templates: bepgen invocations, every test passing, read as a
	// store reads them.
	tmp := t.TempDir()
	var templates []*store.Facts
	var bepBytes int64
	for seed := range 16 {
		path := filepath.Join(tmp, fmt.Sprintf("t%d.bep", seed))
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		st, err := bepgen.WriteBEP(f, bepgen.Config{Seed: uint64(seed), Targets: historyBenchTargets, Passing: true, Statuses: nil})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		bepBytes += st.Bytes
		td, _ := filepath.Abs(filepath.Join("..", "..", "testdata"))
		rel, err := filepath.Rel(td, path) // readFile reads testdata's
		if err != nil {
			t.Fatal(err)
		}
		s, evs := readFile(t, rel)
		templates = append(templates, wantFacts(t, s, evs))
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const batch = 2000
	began := time.Now()
	for start := 0; start < n; start += batch {
		err := s.write(bg, func(tx *sql.Tx) error {
			for i := start; i < min(n, start+batch); i++ {
				f := *templates[i%len(templates)]
				f.Tests = append([]store.TestFacts(nil), f.Tests...)
				id := fmt.Sprintf("%08x-0000-4000-a000-%012x", i, i)
				f.Key, f.InvocationID = id+".3."+id, id
				f.Start = base.Add(time.Duration(i) * 5 * time.Minute)
				f.Commit = fmt.Sprintf("%040x", i/4)
				for j := range f.Tests {
					if historyBenchFlaky(i, f.Tests[j].Label) {
						tf := &f.Tests[j]
						tf.Status, tf.Attempts, tf.TotalRuns, tf.Cached = "FLAKY", 2, 2, 0
						tf.FailedLog = "file:///var/cache/bazel-out/x/execroot/bep_gen/bazel-out/k8-fastbuild/testlogs/" + tf.Label[2:] + "/test_attempts/attempt_1.log"
					}
				}
				e := &Entry{Key: f.Key, BuildID: id, InvocationID: id, Component: 3, Events: 1000, Complete: true,
					Command: f.Command, Result: f.Result, HasExitCode: true, Start: f.Start, File: FileName(f.Key),
					Size: bepBytes / int64(len(templates)), Digest: fmt.Sprintf("%064x", i)}
				if err := putEntryTx(bg, tx, e); err != nil {
					return err
				}
				if err := putFactsTx(bg, tx, f.Key, &f); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := s.catalog(bg, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, catalogName))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d invocations of %d targets (%d tests) in %v: catalog %d bytes, %.0f bytes per invocation; a bepgen .bep of one: %d bytes",
		n, len(templates[0].Targets), len(templates[0].Tests), time.Since(began).Round(time.Second), fi.Size(), float64(fi.Size())/float64(n), bepBytes/int64(len(templates)))
	// The known answer: bes flaky finds exactly the three tests.
	got, err := s.FlakyTests(bg, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for i := range n {
		for _, l := range []string{"//pkg00000:test001", "//pkg00000:test004", "//pkg00001:test002"} {
			if historyBenchFlaky(i, l) {
				want[l]++
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("flaky %+v, want %v", got, want)
	}
	for _, f := range got {
		if want[f.Label] != f.Flakes || f.Runs != n {
			t.Errorf("flaky %+v, want %d flakes in %d runs", f, want[f.Label], n)
		}
	}
}
