package commands

import (
	"encoding/json"
	"html"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// reportDataOf returns the JSON a page inlines for its script, decoded.
func reportDataOf(t *testing.T, page string) reportData {
	t.Helper()
	const open = `<script type="application/json" id="bes-data">`
	i := strings.Index(page, open)
	if i < 0 {
		t.Fatalf("no bes-data element in the page (%d bytes)", len(page))
	}
	rest := page[i+len(open):]
	j := strings.Index(rest, "</script>")
	if j < 0 {
		t.Fatal("bes-data element not closed")
	}
	var d reportData
	if err := json.Unmarshal([]byte(rest[:j]), &d); err != nil {
		t.Fatalf("bes-data: %v", err)
	}
	return d
}

// section returns the HTML of the page's <section id="id">.
func section(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `<section id="`+id+`">`)
	if i < 0 {
		t.Fatalf("no section %s", id)
	}
	j := strings.Index(page[i:], "</section>")
	return page[i : i+j]
}

// TestReportTestMixed: the page of the corpus's test_mixed (Bazel 4.2.3,
// MANIFEST.md: exit TESTS_FAILED (3); //tests:fail FAILED and
// //tests:timeout TIMEOUT in 2 attempts, //tests:flaky FLAKY) says so in
// its header, failures and data, as bes tests and bes summary do, and
// exits 6 like bes summary.
func TestReportTestMixed(t *testing.T) {
	in := filepath.Join("..", "testdata", "test_mixed.bep")
	page, stderr, code := runCLI(t, "report", in)
	if code != ExitTestFail {
		t.Fatalf("exit %d, want %d (tests failed); stderr: %s", code, ExitTestFail, stderr)
	}
	if _, _, sumCode := runCLI(t, "summary", in); sumCode != code {
		t.Errorf("report exits %d, summary %d", code, sumCode)
	}
	header := section0(t, page)
	for _, want := range []string{"tests failed (exit 6)", "TESTS_FAILED (3)", "bazel test //... -//broken/...", "657fb236-551f-4f88-ab84-e114caf29e48", "verdict-tests_failed", ">root<", ">vm<"} {
		if !strings.Contains(header, want) {
			t.Errorf("header lacks %q:\n%s", want, header)
		}
	}
	failures := section(t, page, "failures")
	for _, want := range []string{"test //tests:fail (FAILED)", "test //tests:timeout (TIMEOUT)"} {
		if !strings.Contains(failures, want) {
			t.Errorf("failures lack %q", want)
		}
	}
	if strings.Contains(failures, "//tests:flaky") {
		t.Error("the flaky test, which passed, is listed as a failure")
	}

	d := reportDataOf(t, page)
	testsJSON, _, _ := runCLI(t, "tests", in, "--format", "json")
	var rows []testRow
	if err := json.Unmarshal([]byte(testsJSON), &rows); err != nil {
		t.Fatal(err)
	}
	if len(d.Tests) != len(rows) || len(rows) != 9 {
		t.Fatalf("%d tests in the page, %d in bes tests, want 9", len(d.Tests), len(rows))
	}
	want := map[string]struct {
		status   string
		attempts int
	}{"//tests:fail": {"FAILED", 2}, "//tests:timeout": {"TIMEOUT", 2}, "//tests:flaky": {"FLAKY", 2}, "//tests:pass_a": {"PASSED", 1}}
	for i, r := range d.Tests {
		if r.Label != rows[i].Label || r.Status != rows[i].Status || r.Attempts != rows[i].Attempts || len(r.Runs) != len(rows[i].Runs) {
			t.Errorf("test %d: page %s %s %d attempts, bes tests %s %s %d", i, r.Label, r.Status, r.Attempts, rows[i].Label, rows[i].Status, rows[i].Attempts)
		}
		if w, ok := want[r.Label]; ok && (r.Status != w.status || r.Attempts != w.attempts || len(r.Runs) != w.attempts) {
			t.Errorf("%s: %s in %d attempts (%d runs), want %s in %d", r.Label, r.Status, r.Attempts, len(r.Runs), w.status, w.attempts)
		}
	}
	if d.Summary.Result != "TESTS_FAILED" || d.Summary.Tests.Flaky != 1 || d.Summary.Tests.Failed != 1 || d.Summary.Tests.TimedOut != 1 {
		t.Errorf("summary: %s, tests %+v", d.Summary.Result, d.Summary.Tests)
	}
	if len(d.CriticalPath) != 4 || d.CriticalPath[0].Seconds != 4.51 || d.CriticalPath[0].What != "action 'Testing //tests:timeout'" {
		t.Errorf("critical path %+v, want 4 steps from 4.51s action 'Testing //tests:timeout'", d.CriticalPath)
	}
	labels := map[string]string{}
	for _, c := range d.CommandLines {
		labels[c.Label] = c.Text
	}
	if !strings.Contains(labels["original"], "--flaky_test_attempts=2") || !strings.Contains(labels["canonical"], "--flaky_test_attempts=2") {
		t.Errorf("command lines %q lack --flaky_test_attempts=2", labels)
	}
	if d.Options == nil || !slices.Contains(d.Options.ExplicitCmdLine, "--flaky_test_attempts=2") {
		t.Errorf("options %+v lack the explicit --flaky_test_attempts=2", d.Options)
	}
	console := html.UnescapeString(section(t, page, "console"))
	for _, want := range []string{"FAILED: //tests:fail (Summary)", "Executed 9 out of 9 tests"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

// section0 is the page's header.
func section0(t *testing.T, page string) string {
	t.Helper()
	i := strings.Index(page, "<header")
	j := strings.Index(page, "</header>")
	if i < 0 || j < i {
		t.Fatal("no header")
	}
	return page[i:j]
}

// TestReportBuildFailed: build_keep_going_fail's page shows the failed
// genrule's own output ("genrule about to fail", which Bazel printed after
// its ERROR line) among the failures, in HTML that needs no script, and
// exits 5 (build failed) like bes summary.
func TestReportBuildFailed(t *testing.T) {
	page, stderr, code := runCLI(t, "report", filepath.Join("..", "testdata", "build_keep_going_fail.bep"))
	if code != ExitBuildFail {
		t.Fatalf("exit %d, want %d; stderr: %s", code, ExitBuildFail, stderr)
	}
	failures := section(t, page, "failures")
	if !strings.Contains(failures, "action //broken:fails_to_build (NON_ZERO_EXIT)") || !strings.Contains(failures, "genrule about to fail") {
		t.Errorf("failures lack the genrule and its output:\n%s", failures)
	}
	if !strings.Contains(failures, "target //broken:missing_input (SOURCE_INPUT_MISSING)") {
		t.Error("failures lack //broken:missing_input")
	}
	if !strings.Contains(section0(t, page), "BUILD_FAILURE (1)") {
		t.Error("header lacks BUILD_FAILURE (1)")
	}
	d := reportDataOf(t, page)
	if len(d.Failures) != 7 {
		t.Errorf("%d failures in the data, want 7 (bes failures lists 7)", len(d.Failures))
	}
	var groups []string
	for _, a := range d.Artifacts {
		if a.Label == "//gen:hello" {
			groups = append(groups, a.Group+" "+a.Name)
		}
	}
	if !slices.Contains(groups, "default gen/hello.txt") {
		t.Errorf("//gen:hello's artifacts %q lack gen/hello.txt in the default group", groups)
	}
}

// TestReportExitAndOutput: -o writes the file whole (nothing else in its
// directory), --exit-zero exits 0, a passing build exits 0, and several
// invocations are a usage error that writes nothing.
func TestReportExitAndOutput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "report.html")
	stdout, stderr, code := runCLI(t, "report", filepath.Join("..", "testdata", "test_mixed.bep"), "-o", out, "--exit-zero")
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "<!DOCTYPE html>") || !strings.HasSuffix(string(b), "</html>\n") {
		t.Errorf("the file is not one whole page: %.40q … %q", b, b[max(0, len(b)-20):])
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the directory, want the page alone", len(entries))
	}
	if _, stderr, code := runCLI(t, "report", filepath.Join("..", "testdata", "build_ok.bep"), "-o", out); code != 0 {
		t.Errorf("build_ok: exit %d, want 0; %s", code, stderr)
	}
	stdout, stderr, code = runCLI(t, "report", filepath.Join("..", "testdata", "build_ok.bep"), filepath.Join("..", "testdata", "test_mixed.bep"))
	if code != ExitUsage || stdout != "" || !strings.Contains(stderr, "2 invocations selected") {
		t.Errorf("two invocations: exit %d, %d bytes out, stderr %q; want exit 2, nothing written", code, len(stdout), stderr)
	}
}
