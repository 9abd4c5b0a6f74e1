package commands

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/bepgen"
)

// bes diff on the corpus: build_ok, then build_keep_going_fail (which
// also builds //broken/...): the targets it failed are newly failing,
// exit 5; the metrics are those bes summary gives.
func TestDiffCorpusTargets(t *testing.T) {
	dir := t.TempDir()
	args := []string{"ingest", "--store", dir}
	for _, name := range []string{"build_ok.bep", "build_keep_going_fail.bep"} {
		args = append(args, filepath.Join("..", "testdata", name))
	}
	if _, stderr, code := runCLI(t, args...); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	ok, fail := "716bc5f2-0416-4984-bf6d-e57bb3dc67a7", "5a64b61f-5c5f-48dd-94e7-685ae0e6aab0"
	out, stderr, code := runCLI(t, "diff", "--store", dir, "--format", "json", ok, fail)
	if code != ExitBuildFail {
		t.Fatalf("diff: exit %d: %s", code, stderr)
	}
	var rows []diffRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	// What bes failures says failed in the second build.
	fout, _, _ := runCLI(t, "failures", "--store", dir, "--format", "json", fail)
	newly := 0
	for _, r := range rows {
		if r.Kind == "target" && r.Change == "newly failing" {
			newly++
			if !strings.Contains(fout, `"`+r.Label+`"`) {
				t.Errorf("%s newly failing, not among bes failures", r.Label)
			}
		}
		if r.Kind == "test" {
			t.Errorf("a build has no tests: %+v", r)
		}
	}
	if newly == 0 || rows[0].Change != "newly failing" {
		t.Errorf("rows %+v", rows)
	}
	sum, _, _ := runCLI(t, "summary", "--store", dir, "--format", "json", ok, fail)
	var sums []struct {
		Verdict string  `json:"verdict"`
		Dur     float64 `json:"duration_seconds"`
	}
	if err := json.Unmarshal([]byte(sum), &sums); err != nil || len(sums) != 2 {
		t.Fatalf("summary: %v", err)
	}
	found := 0
	for _, r := range rows {
		switch r.Label {
		case "verdict":
			found++
			if r.Before != sums[0].Verdict || r.After != sums[1].Verdict {
				t.Errorf("verdict %+v, summary %+v", r, sums)
			}
		case "wall time":
			found++
			if r.Before != sums[0].Dur || r.After != sums[1].Dur {
				t.Errorf("wall time %+v, summary %+v", r, sums)
			}
		}
	}
	if found != 2 {
		t.Errorf("metrics missing: %+v", rows)
	}
	// The other way round the targets are fixed (those A built) or absent.
	if _, _, code := runCLI(t, "diff", "--store", dir, fail, ok); code != 0 {
		t.Errorf("diff fail ok: exit %d", code)
	}
	if _, _, code := runCLI(t, "diff", "--store", dir, ok); code != ExitUsage {
		t.Errorf("one argument: exit %d", code)
	}
}

// bes diff of two generated invocations: a test that passed and now fails
// exits 6; one that failed and now passes is fixed; --exit-zero exits 0.
func TestDiffGeneratedTests(t *testing.T) {
	dir, in := t.TempDir(), t.TempDir()
	write := func(i int, statuses map[string]bes.TestStatus) {
		path := filepath.Join(in, fmt.Sprintf("inv%d.bep", i))
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := bepgen.WriteBEP(f, bepgen.Config{Seed: uint64(40 + i), Targets: 40, Start: time.Date(2026, 11, 2, i, 0, 0, 0, time.UTC),
			Passing: true, Statuses: statuses}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if _, stderr, code := runCLI(t, "ingest", "--store", dir, path); code != 0 {
			t.Fatalf("ingest: %d %s", code, stderr)
		}
	}
	write(0, map[string]bes.TestStatus{"//pkg00000:test002": bes.TestStatus_FAILED})
	write(1, map[string]bes.TestStatus{"//pkg00000:test005": bes.TestStatus_TIMEOUT})
	out, _, _ := runCLI(t, "streams", "--store", dir, "--format", "json")
	var streams []struct {
		Key   string    `json:"key"`
		Start time.Time `json:"start"`
	}
	if err := json.Unmarshal([]byte(out), &streams); err != nil || len(streams) != 2 {
		t.Fatalf("streams: %v %s", err, out)
	}
	a, b := streams[0].Key, streams[1].Key
	if streams[1].Start.Before(streams[0].Start) {
		a, b = b, a
	}
	out, stderr, code := runCLI(t, "diff", "--store", dir, "--format", "json", a, b)
	if code != ExitTestFail {
		t.Fatalf("diff: exit %d: %s", code, stderr)
	}
	var rows []diffRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	var tests []string
	for _, r := range rows {
		if r.Kind == "test" {
			tests = append(tests, fmt.Sprintf("%s %s %v→%v", r.Label, r.Change, r.Before, r.After))
		}
	}
	if got := strings.Join(tests, "; "); got != "//pkg00000:test005 newly failing PASSED→TIMEOUT; //pkg00000:test002 fixed FAILED→PASSED" {
		t.Errorf("tests: %s", got)
	}
	if _, _, code := runCLI(t, "diff", "--store", dir, "--exit-zero", a, b); code != 0 {
		t.Errorf("--exit-zero: exit %d", code)
	}
	md, _, _ := runCLI(t, "diff", "--store", dir, "--format", "markdown", a, b)
	if !strings.HasPrefix(md, "### bes diff: ") || !strings.Contains(md, "| test | //pkg00000:test005 | newly failing | PASSED | TIMEOUT |") {
		t.Errorf("markdown:\n%s", md)
	}
}
