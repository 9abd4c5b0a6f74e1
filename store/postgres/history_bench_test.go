package postgres

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bes-cli/bes/bepfile/bepgen"
	"github.com/bes-cli/bes/store"
)

// The PostgreSQL twin of store/local's TestMakeHistoryStore, for the
// benchmarks of the history queries (issue 15, BENCHMARKS.md):
// BES_HISTORY_PG='postgres://…?search_path=SCHEMA' BES_HISTORY_N=10000 go
// test ./store/postgres -run TestMakeHistoryStore makes, in SCHEMA
// (created if missing), a catalog of N invocations with the same facts as
// store/local's (the same bepgen templates of historyBenchTargets
// targets, 16 seeds, 5 minutes apart, commit i/4, the flaky tests of
// historyBenchFlaky), written through this catalog's own writers
// (putStream, putFacts) without stream bodies. It prints the catalog's
// size (pg_total_relation_size of its tables) and checks that FlakyTests
// finds exactly the known flaky tests.
const historyBenchTargets = 80

// historyBenchFlaky is store/local's (history_bench_test.go): test001 of
// //pkg00000 FLAKY in every 7th invocation, test004 in every 11th,
// //pkg00001:test002 in every 50th; no other test flakes.
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
	catalog := os.Getenv("BES_HISTORY_PG")
	n, _ := strconv.Atoi(os.Getenv("BES_HISTORY_N"))
	if catalog == "" || n <= 0 {
		t.Skip("BES_HISTORY_PG and BES_HISTORY_N make a catalog for the benchmarks of bes history and bes flaky")
	}
	ctx := context.Background()
	u, err := url.Parse(catalog)
	if err != nil {
		t.Fatal(err)
	}
	if schema := u.Query().Get("search_path"); schema != "" {
		c, err := pgx.Connect(ctx, catalog)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize())
		c.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
	}
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
		rel, err := filepath.Rel(td, path) // readInput reads testdata's
		if err != nil {
			t.Fatal(err)
		}
		s, evs := readInput(t, rel, "")
		fb := store.NewFactsBuilder(s)
		for i := range evs {
			fb.Add(&evs[i])
		}
		templates = append(templates, fb.Facts())
	}
	s, err := Open(ctx, catalog, "file://"+tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const batch = 500
	began := time.Now()
	for start := 0; start < n; start += batch {
		err := s.tx(ctx, func(tx pgx.Tx) error {
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
				e := &store.Entry{Key: f.Key, BuildID: id, InvocationID: id, Component: 3, Events: 1000, Complete: true,
					Command: f.Command, Result: f.Result, HasExitCode: true, Start: f.Start, File: bodyDir(f.Key, "g"),
					Size: bepBytes / int64(len(templates)), Digest: fmt.Sprintf("%064x", i)}
				if err := putStream(ctx, tx, e, "g", 1); err != nil {
					return err
				}
				if err := putFacts(ctx, tx, f.Key, &f); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE`); err != nil { // as autovacuum would, soon
		t.Fatal(err)
	}
	var size int64
	if err := s.pool.QueryRow(ctx, `SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
		WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d invocations of %d targets (%d tests) in %v: catalog %d bytes, %.0f bytes per invocation; a bepgen .bep of one: %d bytes",
		n, len(templates[0].Targets), len(templates[0].Tests), time.Since(began).Round(time.Second), size, float64(size)/float64(n), bepBytes/int64(len(templates)))
	got, err := s.FlakyTests(ctx, time.Time{}, 0)
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
