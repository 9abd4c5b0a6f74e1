package commands

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Issue 11: JUnit XML that CI test reporters accept, one testcase per
// test target, checked against the schemas Jenkins and Surefire publish
// (testdata/junit/) and read by the parser of a GitHub test reporter.

// junitDoc is JUnit XML as a reader sees it.
type junitDoc struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Suites   []struct {
		Name       string `xml:"name,attr"`
		Tests      int    `xml:"tests,attr"`
		Failures   int    `xml:"failures,attr"`
		Errors     int    `xml:"errors,attr"`
		Skipped    int    `xml:"skipped,attr"`
		Time       string `xml:"time,attr"`
		Properties []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases []junitDocCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type junitDocCase struct {
	Name      string `xml:"name,attr"`
	Classname string `xml:"classname,attr"`
	Time      string `xml:"time,attr"`
	Failure   *struct {
		Type    string `xml:"type,attr"`
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Type    string `xml:"type,attr"`
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
	FlakyFailures []struct {
		Type       string `xml:"type,attr"`
		Message    string `xml:"message,attr"`
		StackTrace string `xml:"stackTrace"`
		SystemOut  string `xml:"system-out"`
	} `xml:"flakyFailure"`
	SystemOut string `xml:"system-out"`
}

func parseJUnitDoc(t *testing.T, out string) junitDoc {
	t.Helper()
	if !strings.HasPrefix(out, `<?xml version="1.0" encoding="UTF-8"?>`) {
		t.Errorf("no XML declaration: %.60s", out)
	}
	var doc junitDoc
	if err := xml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("invalid XML: %v\n%s", err, out)
	}
	return doc
}

// property returns the values of a suite's property name.
func (d junitDoc) property(suite, name string) []string {
	var vals []string
	for _, s := range d.Suites {
		if s.Name != suite {
			continue
		}
		for _, p := range s.Properties {
			if p.Name == name {
				vals = append(vals, p.Value)
			}
		}
	}
	return vals
}

// cases returns the testcases of a suite.
func (d junitDoc) cases(suite string) []junitDocCase {
	for _, s := range d.Suites {
		if s.Name == suite {
			return s.Cases
		}
	}
	return nil
}

var mixedLabels = []string{"//cc:greet_test", "//tests:fail", "//tests:flaky", "//tests:junit_xml", "//tests:pass_a", "//tests:pass_b", "//tests:pass_with_data", "//tests:sharded", "//tests:timeout"}

// TestJUnitTargets: one testcase per test target, named by its label, as
// Bazel counts them ("Executed 9 out of 9 tests"), in test_mixed and in
// test_cached (7 of them cached) alike.
func TestJUnitTargets(t *testing.T) {
	mixedOut := runOK(t, ExitTestFail, "tests", "--format", "junit", tdPath("test_mixed.bep"))
	checkGolden(t, "junit_test_mixed.xml", mixedOut)
	cachedOut := runOK(t, ExitTestFail, "tests", "--format", "junit", tdPath("test_cached.bep"))
	checkGolden(t, "junit_test_cached.xml", cachedOut)
	mixed, cached := parseJUnitDoc(t, mixedOut), parseJUnitDoc(t, cachedOut)

	for name, doc := range map[string]junitDoc{"test_mixed": mixed, "test_cached": cached} {
		var names []string
		for _, s := range doc.Suites {
			if len(s.Cases) != 1 || s.Tests != 1 {
				t.Errorf("%s: suite %s: %d testcases, tests=%d; want 1", name, s.Name, len(s.Cases), s.Tests)
				continue
			}
			c := s.Cases[0]
			if c.Name != s.Name || c.Classname != s.Name {
				t.Errorf("%s: suite %s holds testcase %q (classname %q)", name, s.Name, c.Name, c.Classname)
			}
			names = append(names, c.Name)
		}
		if !slices.Equal(names, mixedLabels) {
			t.Errorf("%s: testcases %q, want %q", name, names, mixedLabels)
		}
		if doc.Tests != 9 || doc.Failures != 2 || doc.Errors != 0 {
			t.Errorf("%s: tests=%d failures=%d errors=%d; want 9, 2, 0", name, doc.Tests, doc.Failures, doc.Errors)
		}
		fail := doc.cases("//tests:fail")[0]
		if fail.Failure == nil || fail.Failure.Type != "FAILED" || fail.Failure.Message != "FAILED in 2 out of 2 attempts" ||
			!strings.Contains(fail.Failure.Text, "attempt 1 of 2: FAILED in ") || !strings.Contains(fail.Failure.Text, "/testlogs/tests/fail/test_attempts/attempt_1.log") ||
			!strings.Contains(fail.Failure.Text, "attempt 2 of 2: FAILED in ") || !strings.Contains(fail.Failure.Text, "/testlogs/tests/fail/test.log") {
			t.Errorf("%s: //tests:fail: %+v", name, fail.Failure)
		}
		timeout := doc.cases("//tests:timeout")[0]
		if timeout.Failure == nil || timeout.Failure.Type != "TIMEOUT" || !strings.HasPrefix(timeout.Failure.Message, "timed out after 2.") ||
			!strings.HasSuffix(timeout.Failure.Message, "s (TIMEOUT in 2 out of 2 attempts)") {
			t.Errorf("%s: //tests:timeout: %+v", name, timeout.Failure)
		}
		flaky := doc.cases("//tests:flaky")[0]
		if flaky.Failure != nil || flaky.Error != nil || flaky.Skipped != nil || len(flaky.FlakyFailures) != 1 {
			t.Errorf("%s: //tests:flaky does not pass with one flakyFailure: %+v", name, flaky)
		}
		if got := doc.property("//tests:flaky", "bazel.status"); !slices.Equal(got, []string{"FLAKY"}) {
			t.Errorf("%s: //tests:flaky bazel.status %q", name, got)
		}
		if got := doc.property("//tests:sharded", "bazel.shard"); len(got) != 3 || !strings.HasPrefix(got[1], "shard 2 of 3: PASSED in ") {
			t.Errorf("%s: //tests:sharded bazel.shard %q", name, got)
		}
	}
	// test_mixed: the flaky test's failed attempt, from the BEP.
	ff := mixed.cases("//tests:flaky")[0].FlakyFailures[0]
	if ff.Type != "FAILED" || ff.Message != "attempt 1 of 2: FAILED in 123ms (passed on a later attempt)" || !strings.HasSuffix(ff.StackTrace, "/testlogs/tests/flaky/test_attempts/attempt_1.log") {
		t.Errorf("test_mixed: //tests:flaky flakyFailure %+v", ff)
	}
	if got := mixed.cases("//tests:timeout")[0].Failure.Message; got != "timed out after 2.086s (TIMEOUT in 2 out of 2 attempts)" {
		t.Errorf("test_mixed: //tests:timeout message %q", got)
	}
	// Nothing cached in test_mixed; in test_cached every test but the
	// failing two, each keeping the time of the run it came from.
	for _, label := range mixedLabels {
		want := "true"
		if label == "//tests:fail" || label == "//tests:timeout" {
			want = "false"
		}
		if got := cached.property(label, "bazel.cached"); !slices.Equal(got, []string{want}) {
			t.Errorf("test_cached: %s bazel.cached %q, want %s", label, got, want)
		}
		if got := mixed.property(label, "bazel.cached"); !slices.Equal(got, []string{"false"}) {
			t.Errorf("test_mixed: %s bazel.cached %q", label, got)
		}
		if want == "true" {
			start := mixed.property(label, "bazel.start")
			if label == "//tests:flaky" {
				// The cached result is the passing attempt's.
				start = []string{"2026-11-23T20:14:41.367Z"}
			}
			if got := cached.property(label, "bazel.start"); len(start) != 1 || !slices.Equal(got, start) {
				t.Errorf("test_cached: %s bazel.start %q, want the run it came from: %q", label, got, start)
			}
			if out := cached.cases(label)[0].SystemOut; !strings.Contains(out, "cached locally: the result of an earlier run started "+start[0]+", not run in this invocation") {
				t.Errorf("test_cached: %s does not say where its result comes from:\n%s", label, out)
			}
		}
	}
	if got := cached.property("//tests:pass_a", "bazel.invocation_id"); !slices.Equal(got, []string{"520ce742-a0b9-4acc-b1a6-73c2f9313d08"}) {
		t.Errorf("test_cached: bazel.invocation_id %q", got)
	}
	// test_cached's flaky result is a cached FLAKY one: its failed attempt
	// is said, though the BEP does not give it.
	if ff := cached.cases("//tests:flaky")[0].FlakyFailures[0]; ff.Type != "FLAKY" || !strings.Contains(ff.Message, "failed on an attempt before it passed") {
		t.Errorf("test_cached: //tests:flaky flakyFailure %+v", ff)
	}

	// Filtered by status, over two invocations: the failed targets of both.
	both := parseJUnitDoc(t, runOK(t, ExitTestFail, "tests", "--format", "junit", "--status", "failed", tdPath("test_mixed.bep"), tdPath("test_cached.bep")))
	if len(both.Suites) != 2 || both.Tests != 2 || both.Failures != 2 {
		t.Errorf("--status failed: %d suites, %d tests, %d failures", len(both.Suites), both.Tests, both.Failures)
	}
	if got := both.property("//tests:fail", "bazel.invocation_id"); !slices.Equal(got, []string{"657fb236-551f-4f88-ab84-e114caf29e48", "520ce742-a0b9-4acc-b1a6-73c2f9313d08"}) {
		t.Errorf("--status failed: invocation ids %q", got)
	}
}

// TestJUnitExitZero: --exit-zero writes the same document and exits 0
// whatever the verdict; without it the command gates.
func TestJUnitExitZero(t *testing.T) {
	gate := runOK(t, ExitTestFail, "tests", "--format", "junit", tdPath("test_mixed.bep"))
	report := runOK(t, ExitOK, "tests", "--format", "junit", "--exit-zero", tdPath("test_mixed.bep"))
	if gate != report {
		t.Errorf("--exit-zero changed the document")
	}
	killed := killedInputs(t, t.TempDir(), 70)["json cut on an event boundary"]
	out, stderr, code := runCLI(t, "tests", "--format", "junit", "--exit-zero", killed)
	if code != ExitOK || !strings.Contains(out, "did not report") || stderr != "" {
		t.Errorf("--exit-zero of a killed build: exit %d, stderr %q", code, stderr)
	}
	if _, _, code := runCLI(t, "tests", "--format", "junit", killed); code != ExitIncomplete {
		t.Errorf("a killed build: exit %d, want %d", code, ExitIncomplete)
	}
	// An error that leaves no document still fails.
	if _, stderr, code := runCLI(t, "tests", "--format", "junit", "--exit-zero", filepath.Join(t.TempDir(), "missing.bep")); code != ExitError || !strings.Contains(stderr, "no such file") {
		t.Errorf("--exit-zero of a missing file: exit %d: %s", code, stderr)
	}
}

// corpusTestlogs is where the corpus's Bazel wrote its test outputs: the
// prefix of every test.log and test.xml URI in test_mixed.
const corpusTestlogs = "file:///var/cache/bazel-out/1aa29ad37f9221d087614c667b81dbd7/execroot/bep_corpus/bazel-out/k8-fastbuild/testlogs/"

// testlogsInput writes a copy of test_mixed.json whose test outputs point
// into dir/testlogs, and the files given (paths under testlogs/).
func testlogsInput(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	data, err := os.ReadFile(tdPath("test_mixed.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(corpusTestlogs)) {
		t.Fatalf("test_mixed.json has no URI under %s", corpusTestlogs)
	}
	data = bytes.ReplaceAll(data, []byte(corpusTestlogs), []byte("file://"+filepath.ToSlash(dir)+"/testlogs/"))
	for name, content := range files {
		p := filepath.Join(dir, "testlogs", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in := filepath.Join(dir, "test_mixed_here.json")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return in
}

// bazelXML is the test.xml Bazel writes itself for a test that writes
// none (tools/test/generate-xml.sh).
func bazelXML(name, errorMsg string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
<testsuite name="` + name + `" tests="1" failures="0" errors="0">
  <testcase name="` + name + `" status="run" duration="0" time="0">` + errorMsg + `</testcase>
  <system-out><![CDATA[the log]]></system-out>
</testsuite>
</testsuites>
`
}

// failLog is a test.log of 30 lines, coloured at its end.
func failLog() string {
	var b strings.Builder
	for i := 1; i <= 29; i++ {
		b.WriteString("setup line " + string(rune('A'+i%26)) + "\n")
	}
	b.WriteString("\x1b[31mexpected 42, got 41\x1b[0m\n")
	return b.String()
}

// TestJUnitLocalFiles: when a test's outputs exist on this machine, a
// failure quotes the end of its test.log, and a test's own test.xml gives
// the target's testcases (Bazel's own one-case test.xml does not).
func TestJUnitLocalFiles(t *testing.T) {
	dir := t.TempDir()
	in := testlogsInput(t, dir, map[string]string{
		// //tests:junit_xml wrote its own JUnit: 3 cases, 1 skipped.
		"tests/junit_xml/test.xml": `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="greeter" tests="3" failures="0" errors="0" skipped="1">
    <testcase name="testHello" classname="greeter.GreeterTest" time="0.012"/>
    <testcase name="testBye" classname="greeter.GreeterTest" time="1,002.5"/>
    <testcase name="testLater" classname="greeter.GreeterTest" time="0"><skipped message="not yet"/></testcase>
  </testsuite>
</testsuites>
`,
		"tests/fail/test_attempts/attempt_1.log":  failLog(),
		"tests/fail/test.log":                     failLog(),
		"tests/fail/test.xml":                     bazelXML("tests/fail", `<error message="exited with error code 1"></error>`),
		"tests/flaky/test_attempts/attempt_1.log": "marker absent: failing (attempt 1)\n",
		"tests/timeout/test.log":                  "sleeping 30s; size=small with --test_timeout=2 kills this\n",
		"tests/pass_a/test.xml":                   bazelXML("tests/pass_a", ""),
		// Two shards wrote their own cases; the third wrote none.
		"tests/sharded/shard_1_of_3/test.xml": `<testsuite name="s1" tests="1" failures="0" errors="0"><testcase name="one" classname="Sharded" time="0.1"/></testsuite>`,
		"tests/sharded/shard_2_of_3/test.xml": `<testsuites><testsuite name="s2" tests="1" failures="0" errors="0"><testsuite name="nested"><testcase name="two" classname="Sharded" time="0.2"/></testsuite></testsuite></testsuites>`,
		// Not JUnit XML: said once on stderr, the label's testcase stays.
		"tests/pass_b/test.xml": "<testsuites><testsuite name=\"x\"><testcase name=\"y\"></testsuite></testsuites>",
	})
	out, stderr, code := runCLI(t, "tests", "--format", "junit", in)
	if code != ExitTestFail {
		t.Fatalf("exit %d, want %d: %s", code, ExitTestFail, stderr)
	}
	badXML := filepath.Join(dir, "testlogs", "tests", "pass_b", "test.xml")
	if want := "bes: tests: " + badXML + ": byte "; !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "invalid JUnit XML") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line starting %q", stderr, want)
	}
	doc := parseJUnitDoc(t, out)
	names := func(suite string) []string {
		var n []string
		for _, c := range doc.cases(suite) {
			n = append(n, c.Name)
		}
		return n
	}
	if got := names("//tests:junit_xml"); !slices.Equal(got, []string{"greeter.GreeterTest.testHello", "greeter.GreeterTest.testBye", "greeter.GreeterTest.testLater"}) {
		t.Errorf("//tests:junit_xml testcases %q", got)
	}
	for _, s := range doc.Suites {
		if s.Name == "//tests:junit_xml" && (s.Tests != 3 || s.Skipped != 1 || s.Failures != 0) {
			t.Errorf("//tests:junit_xml: tests=%d skipped=%d failures=%d", s.Tests, s.Skipped, s.Failures)
		}
	}
	jc := doc.cases("//tests:junit_xml")
	if jc[0].Classname != "//tests:junit_xml" || jc[0].Time != "0.012" || jc[1].Time != "1002.500" || jc[2].Skipped == nil || jc[2].Skipped.Message != "not yet" {
		t.Errorf("//tests:junit_xml cases %+v", jc)
	}
	if got := names("//tests:sharded"); !slices.Equal(got, []string{"Sharded.one", "Sharded.two"}) {
		t.Errorf("//tests:sharded testcases %q", got)
	}
	for _, label := range []string{"//tests:pass_a", "//tests:pass_b", "//tests:fail", "//tests:timeout", "//tests:flaky"} {
		if got := names(label); !slices.Equal(got, []string{label}) {
			t.Errorf("%s: testcases %q, want the label's own", label, got)
		}
	}
	if doc.Tests != 9-2+3+2 || doc.Failures != 2 {
		t.Errorf("tests=%d failures=%d; want 12, 2", doc.Tests, doc.Failures)
	}

	// The failure quotes the last 20 lines of each attempt's test.log,
	// colours removed.
	f := doc.cases("//tests:fail")[0].Failure
	if f == nil || strings.Count(f.Text, "expected 42, got 41") != 2 || strings.Contains(f.Text, "\x1b") || strings.Contains(f.Text, "\uFFFD") ||
		strings.Count(f.Text, "setup line") != 2*19 || strings.Count(f.Text, "…\n") != 2 {
		t.Errorf("//tests:fail failure:\n%+v", f)
	}
	if to := doc.cases("//tests:timeout")[0].Failure; to == nil || !strings.Contains(to.Text, "attempt 2 of 2: TIMEOUT: timed out after 2.086s\ntest.log: file://"+filepath.ToSlash(dir)+"/testlogs/tests/timeout/test.log\nsleeping 30s;") {
		t.Errorf("//tests:timeout failure:\n%+v", to)
	}
	if ff := doc.cases("//tests:flaky")[0].FlakyFailures; len(ff) != 1 || ff[0].SystemOut != "marker absent: failing (attempt 1)" {
		t.Errorf("//tests:flaky flakyFailure %+v", ff)
	}
	// --log-lines 3: three lines.
	doc = parseJUnitDoc(t, runOK(t, ExitTestFail, "tests", "--format", "junit", "--log-lines", "3", in))
	if f := doc.cases("//tests:fail")[0].Failure; f == nil || strings.Count(f.Text, "setup line") != 2*2 {
		t.Errorf("--log-lines 3:\n%+v", f)
	}
	validateJUnit(t, out)
	reporterRead(t, out)

	// The flaky test wrote its own JUnit in both attempts: its case that
	// failed first is the one with the flakyFailure, and the label's
	// testcase goes. A failing case shows //tests:fail's failure.
	caseXML := func(failure string) string {
		return `<testsuite name="t" tests="2" failures="0" errors="0"><testcase name="testMarker" classname="FlakyCheck" time="0.1">` + failure +
			`</testcase><testcase name="testOther" classname="FlakyCheck" time="0.1"/></testsuite>`
	}
	in = testlogsInput(t, dir, map[string]string{
		"tests/flaky/test_attempts/attempt_1.xml": caseXML(`<failure message="marker absent" type="AssertionError">at FlakyCheck.testMarker(FlakyCheck.java:7)</failure><system-out>attempt 1 output</system-out>`),
		"tests/flaky/test.xml":                    caseXML(""),
		"tests/fail/test.xml":                     caseXML(`<failure message="expected 42">got 41</failure>`),
	})
	out = runOK(t, ExitTestFail, "tests", "--format", "junit", in)
	doc = parseJUnitDoc(t, out)
	if got := names("//tests:flaky"); !slices.Equal(got, []string{"FlakyCheck.testMarker", "FlakyCheck.testOther"}) {
		t.Errorf("//tests:flaky testcases %q", got)
	}
	fc := doc.cases("//tests:flaky")
	if len(fc) != 2 || len(fc[0].FlakyFailures) != 1 || fc[0].FlakyFailures[0].Message != "attempt 1 of 2: marker absent" ||
		fc[0].FlakyFailures[0].Type != "AssertionError" || fc[0].FlakyFailures[0].StackTrace != "at FlakyCheck.testMarker(FlakyCheck.java:7)" ||
		fc[0].FlakyFailures[0].SystemOut != "attempt 1 output" || fc[0].Failure != nil || len(fc[1].FlakyFailures) != 0 {
		t.Errorf("//tests:flaky cases %+v", fc)
	}
	if got := names("//tests:fail"); !slices.Equal(got, []string{"FlakyCheck.testMarker", "FlakyCheck.testOther"}) {
		t.Errorf("//tests:fail testcases %q", got)
	}
	if fc := doc.cases("//tests:fail"); len(fc) != 2 || fc[0].Failure == nil || fc[0].Failure.Type != "failure" || fc[0].Failure.Text != "got 41" {
		t.Errorf("//tests:fail cases %+v", fc)
	}
	validateJUnit(t, out)
}

// needTool says whether a test may go on without the tool it needs: it
// skips when the tool is absent and $CI is unset, and fails on CI.
func needTool(t *testing.T, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skipf("%s is not installed (.ci/run installs it; CI fails without it)", what)
	}
	t.Fatalf("%s is not installed, and CI is set (.ci/run installs it)", what)
}

// validateJUnit checks a document with xmllint against the Jenkins xunit
// plugin's junit-10.xsd, and each of its suites, as a document of its
// own, against Maven Surefire's surefire-test-report-3.0.xsd.
func validateJUnit(t *testing.T, doc string) {
	t.Helper()
	xmllint, err := exec.LookPath("xmllint")
	needTool(t, err == nil, "xmllint (Debian's libxml2-utils)")
	dir := t.TempDir()
	whole := filepath.Join(dir, "junit.xml")
	if err := os.WriteFile(whole, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	lint := func(xsd string, files ...string) {
		t.Helper()
		args := append([]string{"--noout", "--schema", tdPath(filepath.Join("junit", xsd))}, files...)
		if out, err := exec.Command(xmllint, args...).CombinedOutput(); err != nil {
			t.Errorf("not valid against %s: %v\n%s", xsd, err, out)
		}
	}
	lint("junit-10.xsd", whole)

	// Cut out each <testsuite> child of the root, byte for byte.
	dec := xml.NewDecoder(strings.NewReader(doc))
	var suites []string
	depth, start := 0, int64(0)
	for {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 {
				start = off
			}
		case xml.EndElement:
			if depth == 2 {
				p := filepath.Join(dir, fmt.Sprintf("suite%04d.xml", len(suites)))
				if err := os.WriteFile(p, []byte(xml.Header+doc[start:dec.InputOffset()]+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				suites = append(suites, p)
			}
			depth--
		}
	}
	if len(suites) > 0 {
		lint("surefire-test-report-3.0.xsd", suites...)
	}
}

// reporterResult is what testdata/junit/reporter/reporter.js prints: a
// document as dorny/test-reporter's java-junit reporter reads it.
type reporterResult struct {
	Suites []struct {
		Name  string `json:"name"`
		Cases []struct {
			Name    string `json:"name"`
			Result  string `json:"result"`
			Message string `json:"message"`
		} `json:"cases"`
	} `json:"suites"`
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
}

// reporterRead reads a document with xml2js, as dorny/test-reporter does
// (testdata/junit/reporter, installed by .ci/run with npm ci), and checks
// that the reporter sees what the document says.
func reporterRead(t *testing.T, doc string) reporterResult {
	t.Helper()
	node, err := exec.LookPath("node")
	needTool(t, err == nil, "node")
	_, err = os.Stat(tdPath("junit/reporter/node_modules/xml2js"))
	needTool(t, err == nil, "xml2js (npm ci --prefix testdata/junit/reporter)")
	p := filepath.Join(t.TempDir(), "junit.xml")
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, tdPath("junit/reporter/reporter.js"), p).Output()
	if err != nil {
		t.Fatalf("reporter.js: %v", err)
	}
	var r reporterResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("reporter.js: %v\n%s", err, out)
	}
	// Its counts are the document's own.
	var d junitDoc
	if err := xml.Unmarshal([]byte(doc), &d); err != nil {
		t.Fatal(err)
	}
	skipped := 0
	for _, s := range d.Suites {
		skipped += s.Skipped
	}
	if r.Failed != d.Failures+d.Errors || r.Skipped != skipped || r.Passed+r.Failed+r.Skipped != d.Tests || len(r.Suites) != len(d.Suites) {
		t.Errorf("the reporter reads %d passed, %d failed, %d skipped in %d suites; the document says tests=%d failures=%d errors=%d skipped=%d in %d suites",
			r.Passed, r.Failed, r.Skipped, len(r.Suites), d.Tests, d.Failures, d.Errors, skipped, len(d.Suites))
	}
	return r
}

// TestJUnitSchemas validates the JUnit of every kind of input against both
// schemas, and reads it as a GitHub test reporter does.
func TestJUnitSchemas(t *testing.T) {
	killed := killedInputs(t, t.TempDir(), 70)
	inputs := map[string][]string{
		"test_mixed":              {tdPath("test_mixed.bep")},
		"test_cached":             {tdPath("test_cached.bep")},
		"both":                    {tdPath("test_mixed.bep"), tdPath("test_cached.bep")},
		"no tests":                {tdPath("build_keep_going_fail.bep")},
		"killed":                  {killed["binary cut inside an event"]},
		"truncated":               {tdPath("truncated-test_mixed.bep")},
		"BES capture and its bep": {tdPath("bes_test_mixed.obe"), tdPath("bes_test_mixed.bep")},
	}
	for name, args := range inputs {
		t.Run(name, func(t *testing.T) {
			out, stderr, _ := runCLI(t, append([]string{"tests", "--format", "junit"}, args...)...)
			if !strings.HasPrefix(out, xml.Header) {
				t.Fatalf("no document: %s", stderr)
			}
			validateJUnit(t, out)
			r := reporterRead(t, out)
			if name == "test_mixed" {
				var failed, passed []string
				for _, s := range r.Suites {
					for _, c := range s.Cases {
						switch c.Result {
						case "failed":
							failed = append(failed, c.Name)
						case "success":
							passed = append(passed, c.Name)
						}
					}
				}
				// Flaky passes: reporters ignore <flakyFailure>.
				if !slices.Equal(failed, []string{"//tests:fail", "//tests:timeout"}) || len(passed) != 7 || !slices.Contains(passed, "//tests:flaky") {
					t.Errorf("the reporter sees failed %q, passed %q", failed, passed)
				}
			}
		})
	}
}
