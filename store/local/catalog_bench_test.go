package local

import (
	"database/sql"
	"fmt"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"

	"github.com/bes-cli/bes/bepfile"
)

// BenchmarkIngestInvocation commits one invocation (testdata's
// test_mixed.bep, 106 events, as bes ingest does: CommitAll) into stores
// whose catalogs hold 0 to 1,000,000 other streams (rows inserted directly,
// their stream files absent: a commit of another key never opens them).
// The cost should not grow with the store (issue 12: ≤ 1.5× at 20,000).
//
//	go test ./store/local -run '^$' -bench IngestInvocation -benchtime 50x
func BenchmarkIngestInvocation(b *testing.B) {
	_, evs := bepStream(b, "test_mixed.bep", "x")
	for _, n := range []int{0, 20000, 100000, 1000000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			s := openStore(b)
			defer s.Close()
			if err := fillCatalog(s, n); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				id := fmt.Sprintf("bench-%08d", i)
				st := bepfile.NewStream(&buildpb.StreamId{BuildId: id, InvocationId: id, Component: buildpb.StreamId_TOOL})
				w := write(b, s, st, evs)
				out, err := s.commitAll(bg, []*StreamWriter{w}, "test_mixed.bep", "bep", false)
				if err != nil || out[0].Err != nil || out[0].Result != Created {
					b.Fatalf("%+v, %v", out, err)
				}
			}
		})
	}
}

// fillCatalog inserts n entries, in transactions of 50,000.
func fillCatalog(s *Store, n int) error {
	for start := 0; start < n; start += 50000 {
		err := s.write(bg, func(tx *sql.Tx) error {
			for i := start; i < min(n, start+50000); i++ {
				key := fmt.Sprintf("sim-%07d.3.sim-%07d", i, i)
				e := &Entry{Key: key, BuildID: key[:11], InvocationID: key[14:], Component: 3, Events: 100, Complete: true,
					Command: "test", Result: "SUCCESS", HasExitCode: true, File: FileName(key), Size: 10000, Digest: fmt.Sprintf("%064x", i)}
				if err := putEntryTx(bg, tx, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
