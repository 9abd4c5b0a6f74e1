package commands

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func tdPath(name string) string { return filepath.Join("..", "testdata", name) }

// TestViews runs the CI views on Bazel's files and checks their tables
// against golden files (go test ./commands -run TestViews -update) and
// their exit statuses.
func TestViews(t *testing.T) {
	storeDir := t.TempDir()
	s := "--store=" + storeDir
	if _, stderr, code := runCLI(t, "ingest", s, tdPath("test_mixed.bep"), tdPath("build_keep_going_fail.bep"), tdPath("bes_test_mixed.obe"), tdPath("bes_test_mixed.lifecycle.obe")); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	cases := []cliCase{
		// summary
		{name: "summary test_mixed", args: []string{"summary", tdPath("test_mixed.bep")}, golden: "views_summary_test_mixed.txt", code: ExitTestFail},
		{name: "summary of four invocations", args: []string{"summary", tdPath("test_mixed.bep"), tdPath("test_cached.bep"), tdPath("build_keep_going_fail.bep"), tdPath("query.bep")}, golden: "views_summary_multi.txt", code: ExitTestFail},
		{name: "summary build failure", args: []string{"summary", tdPath("build_keep_going_fail.json")}, stdout: "21 configured, 17 built, 3 failed, 1 aborted", code: ExitBuildFail},
		{name: "summary success", args: []string{"summary", tdPath("build_ok.bep")}, stdout: "SUCCESS (0)"},
		{name: "summary from the store by --match", args: []string{"summary", s, "--match", "."}, golden: "views_summary_store.txt", code: ExitTestFail},
		{name: "summary of a lifecycle stream", args: []string{"summary", tdPath("bes_test_mixed.lifecycle.obe"), "--format", "json"}, stdout: "[]\n", stderr: "no stream with Bazel build events", code: ExitNoData},
		{name: "summary --match nothing", args: []string{"summary", s, "--match", "no-such-stream"}, stderr: "no stream with Bazel build events", code: ExitNoData},
		{name: "summary needs an argument", args: []string{"summary", s}, stderr: "name a STREAM", code: ExitUsage},
		{name: "summary of a truncated file", args: []string{"summary", tdPath("truncated-test_mixed.bep")}, stdout: "did not finish", stderr: "byte 24361 (event 62)", code: ExitIncomplete},
		// tests
		{name: "tests test_mixed", args: []string{"tests", tdPath("test_mixed.bep")}, golden: "views_tests_test_mixed.txt", code: ExitTestFail},
		{name: "tests --runs", args: []string{"tests", "--runs", tdPath("test_mixed.bep")}, golden: "views_tests_runs_test_mixed.txt", code: ExitTestFail},
		{name: "tests test_cached", args: []string{"tests", tdPath("test_cached.bep")}, golden: "views_tests_test_cached.txt", code: ExitTestFail},
		{name: "tests of two invocations --status", args: []string{"tests", tdPath("test_mixed.bep"), tdPath("test_cached.bep"), "--status", "Flaky,timeout", "--status", "FAILED"}, golden: "views_tests_multi_status.txt", code: ExitTestFail},
		{name: "tests by invocation id from the store", args: []string{"tests", s, "8b58a6b7-1857-43e5-b701-ebbabc33fc5c", "--status", "flaky", "--runs"}, golden: "views_tests_runs_flaky_store.txt", code: ExitTestFail},
		{name: "tests of a build without tests", args: []string{"tests", tdPath("build_ok.bep")}, stderr: "no test in the streams given", code: ExitNoData},
		{name: "tests bad --status", args: []string{"tests", "--status", "green", tdPath("test_mixed.bep")}, stderr: `unknown test status "GREEN"`, code: ExitUsage},
		// failures
		{name: "failures build_keep_going_fail", args: []string{"failures", tdPath("build_keep_going_fail.bep")}, golden: "views_failures_keep_going.txt", code: ExitBuildFail},
		{name: "failures test_mixed", args: []string{"failures", tdPath("test_mixed.bep")}, golden: "views_failures_test_mixed.txt", code: ExitTestFail},
		{name: "no failures", args: []string{"failures", tdPath("build_ok.bep"), "--format", "json"}, stdout: "[]\n"},
		// artifacts
		{name: "artifacts build_ok", args: []string{"artifacts", tdPath("build_ok.bep")}, golden: "views_artifacts_build_ok.txt"},
		{name: "artifacts --label", args: []string{"artifacts", tdPath("build_keep_going_fail.bep"), "--label", "^//broken:"}, golden: "views_artifacts_label.txt"},
		{name: "artifacts of a failed build exit 0", args: []string{"artifacts", tdPath("build_keep_going_fail.bep"), "--label", "nothing-matches", "--format", "json"}, stdout: "[]\n"},
		{name: "artifacts of a query", args: []string{"artifacts", tdPath("query.bep")}, stdout: "LABEL  GROUP  NAME  URI\n", stderr: "no output file", code: ExitNoData},
		{name: "artifacts bad --label", args: []string{"artifacts", "--label", "(", tdPath("query.bep")}, stderr: "--label", code: ExitUsage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, c.args...)
			if code != c.code {
				t.Errorf("exit status %d, want %d\nstderr: %s", code, c.code, stderr)
			}
			if c.stderr == "" && stderr != "" {
				t.Errorf("unexpected stderr: %s", stderr)
			}
			if c.stderr != "" {
				if !strings.Contains(stderr, c.stderr) {
					t.Errorf("stderr %q does not contain %q", stderr, c.stderr)
				}
				if !strings.HasSuffix(stderr, "\n") || strings.HasSuffix(stderr, "\n\n") {
					t.Errorf("stderr must end in exactly one newline: %q", stderr)
				}
			}
			if c.stdout != "" && !strings.Contains(stdout, c.stdout) {
				t.Errorf("stdout does not contain %q:\n%s", c.stdout, stdout)
			}
			if c.golden != "" {
				checkGolden(t, c.golden, stdout)
			}
		})
	}
}

func runOK(t *testing.T, wantCode int, args ...string) string {
	t.Helper()
	stdout, stderr, code := runCLI(t, args...)
	if code != wantCode {
		t.Fatalf("%v: exit %d, want %d: %s", args, code, wantCode, stderr)
	}
	return stdout
}

// TestSummaryJSON checks every figure of test_mixed's summary.
func TestSummaryJSON(t *testing.T) {
	var rows []summaryRow
	if err := json.Unmarshal([]byte(runOK(t, ExitTestFail, "summary", "--format", "json", tdPath("test_mixed.bep"))), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("%d rows", len(rows))
	}
	r := rows[0]
	if r.Command != "test" || !slices.Equal(r.Patterns, []string{"//...", "-//broken/..."}) || r.Result != "TESTS_FAILED" ||
		r.ExitCode == nil || *r.ExitCode != 3 || !r.Complete || r.Interrupted || r.ExitStatus != ExitTestFail {
		t.Errorf("summary %+v", r)
	}
	if r.Start == nil || r.Start.UnixMilli() != 1795464878972 || r.Duration == nil || *r.Duration != 5.094 {
		t.Errorf("start %v duration %v", r.Start, r.Duration)
	}
	if r.Targets != (targetCounts{Configured: 16, Built: 16}) {
		t.Errorf("targets %+v", r.Targets)
	}
	if r.Tests != (testCounts{Total: 9, Passed: 6, Flaky: 1, Failed: 1, TimedOut: 1}) {
		t.Errorf("tests %+v", r.Tests)
	}
	if f := r.FirstFailure; f == nil || f.Kind != "test" || f.Label != "//tests:fail" || f.Reason != "FAILED" || len(f.Logs) != 2 {
		t.Errorf("first failure %+v", f)
	}

	// test_cached: 7 tests cached; keep_going: the first failure is the
	// aborted //no/such/package.
	rows = nil
	if err := json.Unmarshal([]byte(runOK(t, ExitTestFail, "summary", "--format", "json", tdPath("test_cached.bep"), tdPath("build_keep_going_fail.bep"))), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
	kg, cached := rows[0], rows[1] // by start time
	if cached.Tests != (testCounts{Total: 9, Passed: 6, Flaky: 1, Failed: 1, TimedOut: 1, Cached: 7}) || cached.ExitStatus != ExitTestFail {
		t.Errorf("test_cached %+v", cached)
	}
	if kg.Targets != (targetCounts{Configured: 21, Built: 17, Failed: 3, Aborted: 1}) || kg.ExitStatus != ExitBuildFail || kg.Result != "BUILD_FAILURE" {
		t.Errorf("keep_going %+v", kg)
	}
	if f := kg.FirstFailure; f == nil || f.Kind != "aborted" || f.Event != "configuredLabel" || f.Label != "//no/such/package:file.txt" || f.Reason != "ANALYSIS_FAILURE" {
		t.Errorf("first failure %+v", f)
	}

	// --match keeps, among the streams of the files, those it matches.
	rows = nil
	if err := json.Unmarshal([]byte(runOK(t, ExitTestFail, "summary", "--format", "json", "--match", "^520ce742", tdPath("test_mixed.bep"), tdPath("test_cached.bep"))), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].InvocationID != "520ce742-a0b9-4acc-b1a6-73c2f9313d08" {
		t.Errorf("--match ^520ce742: %+v", rows)
	}
}

func TestTestsJSON(t *testing.T) {
	var rows []testRow
	if err := json.Unmarshal([]byte(runOK(t, ExitTestFail, "tests", "--format", "json", tdPath("test_cached.bep"))), &rows); err != nil {
		t.Fatal(err)
	}
	byLabel := map[string]testRow{}
	for _, r := range rows {
		byLabel[r.Label] = r
	}
	if len(rows) != 9 {
		t.Fatalf("%d tests", len(rows))
	}
	f := byLabel["//tests:flaky"]
	if f.Status != "FLAKY" || f.TotalRuns != 2 || f.Cached != 1 || len(f.Runs) != 1 || f.Runs[0].Status != "FLAKY" || !f.Runs[0].CachedLocally {
		t.Errorf("flaky %+v", f)
	}
	sh := byLabel["//tests:sharded"]
	if sh.Shards != 3 || sh.Cached != 3 || len(sh.Runs) != 3 || len(sh.Logs) != 3 || sh.Duration != 0.607 {
		t.Errorf("sharded %+v", sh)
	}
	for _, r := range sh.Runs {
		if !r.CachedLocally || r.Stream != "" || r.Label != "" {
			t.Errorf("sharded run %+v", r)
		}
	}
	if fl := byLabel["//tests:fail"]; fl.Attempts != 2 || fl.Cached != 0 || fl.Runs[0].Strategy != "linux-sandbox" {
		t.Errorf("fail %+v", fl)
	}
}

func TestFailuresJSON(t *testing.T) {
	var rows []failureRow
	if err := json.Unmarshal([]byte(runOK(t, ExitBuildFail, "failures", "--format", "json", tdPath("build_keep_going_fail.bep"))), &rows); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Kind+" "+r.Event+" "+r.Label+" "+r.Reason)
	}
	want := []string{
		"aborted configuredLabel //no/such/package:file.txt ANALYSIS_FAILURE",
		"aborted targetCompleted //broken:bad_dep ANALYSIS_FAILURE",
		"action actionCompleted //broken:fails_to_build NON_ZERO_EXIT",
		"target targetCompleted //broken:fails_to_build NON_ZERO_EXIT",
		"target targetCompleted //broken:depends_on_failure NON_ZERO_EXIT",
		"aborted unconfiguredLabel //broken:does_not_exist.txt UNKNOWN",
		"target targetCompleted //broken:missing_input SOURCE_INPUT_MISSING",
	}
	if !slices.Equal(got, want) {
		t.Errorf("failures:\n got %q\nwant %q", got, want)
	}
	if a := rows[2]; a.ActionType != "Genrule" || a.ExitCode == nil || *a.ExitCode != 1 || !strings.HasSuffix(a.Stderr, "/bazel-out/_tmp/actions/stderr-3") {
		t.Errorf("action %+v", a)
	}
	for _, r := range rows {
		if strings.Contains(r.Label, "builds_fine") {
			t.Errorf("builds_fine listed: %+v", r)
		}
	}
}

// markdownRows splits a Markdown document's table into its rows of cells.
func markdownRows(t *testing.T, md string) [][]string {
	t.Helper()
	var rows [][]string
	lines := strings.Split(strings.TrimSuffix(md, "\n"), "\n")
	// The document's heading and the blank line after it (markdown.go).
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "### bes ") || lines[1] != "" {
		t.Fatalf("no heading: %q", md)
	}
	for _, line := range lines[2:] {
		if line == "" && len(rows) > 0 {
			break // the table ends; failures follow it with their own words
		}
		if !strings.HasPrefix(line, "| ") || !strings.HasSuffix(line, " |") {
			t.Fatalf("not a table row: %q", line)
		}
		rows = append(rows, strings.Split(line[2:len(line)-2], " | "))
	}
	return rows
}

func TestMarkdown(t *testing.T) {
	rows := markdownRows(t, runOK(t, ExitTestFail, "summary", "--format", "markdown", tdPath("test_mixed.bep"), tdPath("build_keep_going_fail.bep")))
	want := [][]string{
		{"INVOCATION", "COMMAND", "RESULT", "START", "DURATION", "TARGETS", "TESTS", "FIRST FAILURE"},
		{"---", "---", "---", "---", "---", "---", "---", "---"},
		{"5a64b61f-5c5f-48dd-94e7-685ae0e6aab0", "build //...", "BUILD_FAILURE (1)", "2026-11-23T20:14:37Z", "702ms",
			"21 configured, 17 built, 3 failed, 1 aborted", "",
			"aborted //no/such/package:file.txt: ANALYSIS_FAILURE: no such package 'no/such/package': BUILD file not found in any of the following directories. Add a BUILD file to a directory to mark it as a package. …"},
		{"657fb236-551f-4f88-ab84-e114caf29e48", "test //... -//broken/...", "TESTS_FAILED (3)", "2026-11-23T20:14:38Z", "5.094s",
			"16 configured, 16 built", "9: 6 passed, 1 flaky, 1 failed, 1 timed out", "test //tests:fail: FAILED: 2 of 2 test attempts failed"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %q", len(rows), len(want), rows)
	}
	for i := range want {
		if !slices.Equal(rows[i], want[i]) {
			t.Errorf("row %d:\n got %q\nwant %q", i, rows[i], want[i])
		}
	}

	// The failures table escapes what Markdown would misread: the
	// action's message holds "'\''" and ">&2".
	md := runOK(t, ExitBuildFail, "failures", "--format", "markdown", tdPath("build_keep_going_fail.bep"))
	rows = markdownRows(t, md)
	if len(rows) != 2+7 {
		t.Fatalf("%d rows, want 9", len(rows))
	}
	action := rows[4]
	if action[0] != "action" || action[2] != "//broken:fails_to_build" || !strings.Contains(action[4], `'\\''genrule about to fail'\\'' &gt;&amp;2`) {
		t.Errorf("action row %q", action)
	}

	// One row per test of each invocation.
	rows = markdownRows(t, runOK(t, ExitTestFail, "tests", "--format", "markdown", tdPath("test_mixed.bep"), tdPath("test_cached.bep")))
	if len(rows) != 2+18 || rows[0][0] != "INVOCATION" || rows[0][1] != "LABEL" {
		t.Errorf("%d rows, header %q", len(rows), rows[0])
	}
}

// TestTestsSummaryLogs: a JSON file whose test result has no id (as in
// some of Bazel's CI files) and whose summary lists the failed log shows
// that log in bes tests' LOG column, and in the JSON's logs.
func TestTestsSummaryLogs(t *testing.T) {
	const uri = "file:///ws/bazel-out/testlogs/pkg/t/test.log"
	events := strings.Join([]string{
		`{"id":{"started":{}},"children":[{"testSummary":{"label":"//pkg:t"}}],"started":{"uuid":"0e4a1c3f-5b2d-4c6e-8f7a-9b0c1d2e3f40","startTimeMillis":"1700000000000","command":"test"}}`,
		`{"id":{"testResult":{}},"testResult":{"testActionOutput":[{"name":"test.log","uri":"` + uri + `"}],"status":"FAILED"}}`,
		`{"id":{"testSummary":{"label":"//pkg:t","configuration":{"id":"cfg"}}},"testSummary":{"totalRunCount":1,"runCount":1,"failed":[{"uri":"` + uri + `"}],"overallStatus":"FAILED","totalRunDurationMillis":"1500"}}`,
		`{"id":{"buildFinished":{}},"lastMessage":true,"finished":{"exitCode":{"name":"TESTS_FAILED","code":3},"finishTimeMillis":"1700000002000"}}`,
	}, "\n") + "\n"
	file := filepath.Join(t.TempDir(), "win.json")
	if err := os.WriteFile(file, []byte(events), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, "tests", file)
	if code != ExitTestFail || !strings.Contains(stdout, "//pkg:t") || !strings.HasSuffix(strings.TrimRight(stdout, "\n"), "  "+uri) {
		t.Errorf("table: exit %d, stderr %q:\n%s", code, stderr, stdout)
	}
	stdout, _, _ = runCLI(t, "tests", file, "-o", "json")
	var rows []testRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil || len(rows) != 1 || !slices.Equal(rows[0].Logs, []string{uri}) {
		t.Errorf("json: %v: %s", err, stdout)
	}
}
