package commands

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// bes diff compares the options the two invocations ran with (issue 15),
// from their OptionsParsed events: test_mixed's .bep against
// bes_test_mixed's BES capture (.obe), which streamed to a BES and wrote
// other files; build_ok against build_keep_going_fail (--keep_going).
func TestDiffFlags(t *testing.T) {
	dir := t.TempDir()
	args := []string{"ingest", "--store", dir}
	for _, name := range []string{"test_mixed.bep", "bes_test_mixed.obe", "build_ok.bep", "build_keep_going_fail.bep"} {
		args = append(args, filepath.Join("..", "testdata", name))
	}
	if _, stderr, code := runCLI(t, args...); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	flags := func(a, b string) []string {
		t.Helper()
		out, stderr, _ := runCLI(t, "diff", "--store", dir, "--format", "json", "--exit-zero", a, b)
		var rows []diffRow
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("diff %s %s: %v: %s", a, b, err, stderr)
		}
		var got []string
		for i, r := range rows {
			if r.Kind != "flag" {
				if len(got) > 0 && r.Kind != "metric" {
					t.Errorf("row %d: %+v after the flags", i, r)
				}
				continue
			}
			got = append(got, fmt.Sprintf("%s %s %v→%v", r.Label, r.Change, r.Before, r.After))
		}
		return got
	}
	// test_mixed: --flaky_test_attempts=2 --test_timeout=2,60,300,3600
	// --build_event_binary_file=/out/test_mixed.bep
	// --build_event_json_file=/out/test_mixed.json
	// --build_event_text_file=/out/test_mixed.txt; bes_test_mixed:
	// --bes_backend=grpc://127.0.0.1:38067 --bes_lifecycle_events
	// --project_id=bepcorpus, the same two, and
	// --build_event_binary_file=/out/bes_test_mixed.bep. The startup
	// options are the same.
	want := []string{
		"--bes_backend added <nil>→grpc://127.0.0.1:38067",
		"--bes_lifecycle_events added <nil>→",
		"--build_event_binary_file changed /out/test_mixed.bep→/out/bes_test_mixed.bep",
		"--build_event_json_file removed /out/test_mixed.json→<nil>",
		"--build_event_text_file removed /out/test_mixed.txt→<nil>",
		"--project_id added <nil>→bepcorpus",
	}
	if got := flags("657fb236", "0fff9624"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("flags of test_mixed → bes_test_mixed:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The other way round: added and removed swap.
	if got := flags("0fff9624", "657fb236"); len(got) != 6 || got[0] != "--bes_backend removed grpc://127.0.0.1:38067→<nil>" {
		t.Errorf("flags of bes_test_mixed → test_mixed: %q", got)
	}
	// The same invocation: no flag differs.
	if got := flags("657fb236", "657fb236"); len(got) != 0 {
		t.Errorf("flags of test_mixed → test_mixed: %q", got)
	}
	ok, fail := "716bc5f2-0416-4984-bf6d-e57bb3dc67a7", "5a64b61f-5c5f-48dd-94e7-685ae0e6aab0"
	got := flags(ok, fail)
	if !slices.Contains(got, "--keep_going added <nil>→") {
		t.Errorf("flags of build_ok → build_keep_going_fail: %q", got)
	}
	table, _, _ := runCLI(t, "diff", "--store", dir, "--exit-zero", ok, fail)
	if !strings.Contains(table, "flag") || !strings.Contains(table, "--keep_going") || !strings.Contains(table, "(given)") {
		t.Errorf("table:\n%s", table)
	}
}
