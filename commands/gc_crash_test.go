package commands

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/bes-cli/bes/store/local"
)

// TestGCKilled kills `bes store gc` with SIGKILL at random points, 20 times
// (BES_LONG_TESTS=1: 100). gc removes each stream file first, then its
// catalog entry (store/local's Delete): after each kill the store is
// readable, every stream it lists is whole, bes store check finds at most
// an entry whose file is gone (a stream caught between the two steps),
// --repair drops it, and gc run again completes (issue 12).
func TestGCKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bes in processes of its own")
	}
	files := ingestCrashArgs()
	want := referenceEntries(t, files...)
	iterations := 20
	if longTests() {
		iterations = 100
	}
	ingest := func(dir string) {
		t.Helper()
		if _, stderr, code := runBes(t, append([]string{"ingest", "--store", dir}, files...)...); code != 0 {
			t.Fatalf("ingest: exit %d: %s", code, stderr)
		}
	}
	// How long a whole gc takes here, to kill within it.
	timing := filepath.Join(t.TempDir(), "timing")
	ingest(timing)
	start := time.Now()
	if _, stderr, code := runBes(t, "store", "gc", "--store", timing, "--keep", "0"); code != 0 {
		t.Fatalf("gc: exit %d: %s", code, stderr)
	}
	full := time.Since(start)
	rng := rand.New(rand.NewPCG(12, uint64(time.Now().UnixNano())))
	interrupted, repaired := 0, map[string]int{}
	for i := range iterations {
		dir := filepath.Join(t.TempDir(), "store")
		ingest(dir)
		delay := time.Duration(rng.Int64N(int64(full)))
		p := startBes(t, "store", "gc", "--store", dir, "--keep", "0")
		time.Sleep(delay)
		p.kill()
		if p.cmd.ProcessState.ExitCode() != 0 {
			interrupted++
		}
		when := fmt.Sprintf("kill %d after %v", i, delay)

		// Readable; what is listed is whole or its file is gone.
		if _, stderr, code := runCLI(t, "streams", "--store", dir); code != 0 && code != ExitNoData {
			t.Fatalf("%s: bes streams: exit %d: %s", when, code, stderr)
		}
		_, problems := checkStore(t, dir)
		onlyKinds(t, when, problems, local.ProblemMissing, local.ProblemTemp)
		for _, p := range problems {
			repaired[p.Problem]++
		}
		if len(problems) > 0 {
			repairStore(t, dir)
		}
		for k, e := range entries(t, dir) {
			if !sameStream(e, want[k]) {
				t.Errorf("%s: stream %s listed as %+v, ingest stored %+v", when, k, e, want[k])
			}
		}
		// Run again: it completes, and the store is empty and consistent.
		if _, stderr, code := runBes(t, "store", "gc", "--store", dir, "--keep", "0"); code != 0 {
			t.Fatalf("%s: gc again: exit %d: %s", when, code, stderr)
		}
		if got := entries(t, dir); len(got) != 0 {
			t.Errorf("%s: %d streams left after gc --keep 0", when, len(got))
		}
		if code, rows := checkStore(t, dir); code != 0 {
			t.Errorf("%s: store check after gc: %+v", when, rows)
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("%d kills, %d during gc (a whole gc takes %v); problems repaired: %v", iterations, interrupted, full, repaired)
}
