package commands

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bes-cli/bes/bepfile/invocation"
)

// `bes tests --format junit`: one JUnit XML document in the shape CI test
// reporters read (Jenkins, GitLab, GitHub's JUnit actions, Buildkite,
// Maven Surefire's report readers), valid against the Jenkins xunit
// plugin's junit-10.xsd, each <testsuite> also against Maven Surefire's
// surefire-test-report-3.0.xsd (both in testdata/junit/).
//
// The unit is the test target, as Bazel counts it ("Executed 9 out of 9
// tests" counts a sharded test once): a <testsuite> per target (per
// invocation), named by its label, holding one <testcase> named by the
// label. Its runs, shards and attempts never become testcases of their
// own, so the name a reporter keys test history on does not change with
// --flaky_test_attempts, --runs_per_test or shard_count. A sharded
// test's shards are properties (bazel.shard) and lines of the testcase's
// <system-out>; a failure says which shard and attempt failed.
//
// When the test wrote its own JUnit (Bazel's test.xml, whose URI the BEP
// gives) and the file exists on this machine, its testcases are the
// target's instead (classname the label, name the case's own classname
// and name), so a test that runs 300 cases shows 300 cases; the label's
// own testcase is kept beside them only to show what they cannot: a
// failure none of the cases shows (a timeout, a crash), a test that did
// not report, or failed attempts of a flaky test that match no case.

// junitLogLines is the default number of test.log lines a failure quotes.
const junitLogLines = 20

// junitMaxText bounds the text bes copies from one element of a test.xml
// (a case's output, a failure's stack trace): its last 64 KiB are kept.
const junitMaxText = 64 << 10

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// junitCase is a <testcase>, its elements in the order Surefire's schema
// requires.
type junitCase struct {
	Name          string         `xml:"name,attr"`
	Classname     string         `xml:"classname,attr"`
	Time          string         `xml:"time,attr"`
	Failures      []junitOutcome `xml:"failure"`
	FlakyFailures []junitRerun   `xml:"flakyFailure"`
	Skipped       *junitSkipped  `xml:"skipped"`
	Error         *junitOutcome  `xml:"error"`
	FlakyErrors   []junitRerun   `xml:"flakyError"`
	SystemOut     *junitText     `xml:"system-out"`
	SystemErr     *junitText     `xml:"system-err"`
}

// junitText is an element's text, written as CDATA so that its lines stay
// lines (as Surefire writes them), with what XML 1.0 cannot hold (control
// characters, invalid UTF-8) as U+FFFD. Make it with cdata.
type junitText struct {
	Text string `xml:",cdata"`
}

// cdata is the element text s, nil when s is empty (no element).
func cdata(s string) *junitText {
	if s == "" {
		return nil
	}
	return &junitText{xmlSafe(s)}
}

// xmlSafe replaces what XML 1.0 cannot hold (control characters other
// than tab, newline and carriage return; U+FFFE, U+FFFF; surrogates;
// invalid UTF-8) with U+FFFD.
func xmlSafe(s string) string {
	ok := func(r rune) bool {
		return r == '\t' || r == '\n' || r == '\r' ||
			(r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
	}
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !ok(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if !ok(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

// junitOutcome is a <failure> or an <error>: type is required by
// Surefire's schema.
type junitOutcome struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"` // made safe by xmlSafe
}

// junitSkipped is a <skipped>: Surefire's schema allows no type.
type junitSkipped struct {
	Message string `xml:"message,attr,omitempty"`
	Text    string `xml:",cdata"` // made safe by xmlSafe
}

// junitRerun is Surefire's <flakyFailure> (or <flakyError>): a failure of
// an attempt of a test that passed on a later attempt. Surefire's schema
// requires the stackTrace element; system-out holds the attempt's output.
type junitRerun struct {
	Message    string     `xml:"message,attr,omitempty"`
	Type       string     `xml:"type,attr"`
	StackTrace junitText  `xml:"stackTrace"`
	SystemOut  *junitText `xml:"system-out"`
	SystemErr  *junitText `xml:"system-err"`
}

func (c *junitCase) failing() bool { return len(c.Failures) > 0 || c.Error != nil }

// junitTimeFormat is how times are written: RFC 3339 in UTC, milliseconds
// (the BEP's precision).
const junitTimeFormat = "2006-01-02T15:04:05.000Z07:00"

// junitSeconds is a duration as JUnit's time attribute: seconds with three
// decimals (Surefire's SUREFIRE_TIME allows no more).
func junitSeconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// junitOptions say how to write the document.
type junitOptions struct {
	// LogLines is how many of the last lines of a failed attempt's
	// test.log a failure quotes, when the file exists here.
	LogLines int
	// Warn receives one line per test.xml that exists but cannot be read
	// as JUnit XML.
	Warn func(string)
}

// writeJUnit writes the tests of invs whose status keep accepts as one
// JUnit XML document: a <testsuite> per test target, its testcases those
// of the test's own test.xml when the file is here, else one named by the
// label (see the comment at the top of this file).
func writeJUnit(w io.Writer, invs []*invocation.Invocation, keep func(string) bool, opts junitOptions) error {
	if opts.Warn == nil {
		opts.Warn = func(string) {}
	}
	doc := junitSuites{Name: "bes", Suites: []junitSuite{}}
	var total time.Duration
	for _, inv := range invs {
		labels := map[string]int{}
		for _, t := range inv.Tests {
			labels[t.Label]++
		}
		for _, t := range inv.Tests {
			if !keep(t.Status) {
				continue
			}
			name := t.Label
			if labels[t.Label] > 1 && t.Configuration != "" {
				// The same label in two configurations: tell them apart.
				name += " [" + shortConfig(t.Configuration) + "]"
			}
			s := junitSuiteFor(inv, t, name, opts)
			doc.Tests += s.Tests
			doc.Failures += s.Failures
			doc.Errors += s.Errors
			total += t.Duration
			doc.Suites = append(doc.Suites, s)
		}
	}
	doc.Time = junitSeconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func shortConfig(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// junitUnit is one run of one shard of a test: its attempts, in order.
type junitUnit struct {
	run, shard int
	attempts   []*invocation.TestRun
}

func (u *junitUnit) last() *invocation.TestRun { return u.attempts[len(u.attempts)-1] }

// junitUnits groups a test's results by run and shard (t.Runs is sorted
// by run, shard and attempt).
func junitUnits(t *invocation.Test) []*junitUnit {
	var units []*junitUnit
	for _, r := range t.Runs {
		if n := len(units); n > 0 && units[n-1].run == r.Run && units[n-1].shard == r.Shard {
			units[n-1].attempts = append(units[n-1].attempts, r)
			continue
		}
		units = append(units, &junitUnit{run: r.Run, shard: r.Shard, attempts: []*invocation.TestRun{r}})
	}
	return units
}

// where names an attempt of a unit: "shard 2 of 3, attempt 1 of 2", or ""
// for the only attempt of an unsharded test run once.
func (u *junitUnit) where(t *invocation.Test, i int) string {
	var parts []string
	if t.RunCount > 1 {
		parts = append(parts, fmt.Sprintf("run %d of %d", u.run, t.RunCount))
	}
	if t.Shards > 1 {
		parts = append(parts, fmt.Sprintf("shard %d of %d", u.shard, t.Shards))
	}
	if len(u.attempts) > 1 {
		parts = append(parts, fmt.Sprintf("attempt %d of %d", u.attempts[i].Attempt, len(u.attempts)))
	}
	return strings.Join(parts, ", ")
}

// attemptLine says what one attempt did: "attempt 1 of 2: FAILED in
// 207ms", "TIMEOUT: timed out after 2.135s", "PASSED in 124ms, cached
// locally (the result of the run started 2026-…Z)".
func attemptLine(where string, r *invocation.TestRun) string {
	var b strings.Builder
	if where != "" {
		b.WriteString(where + ": ")
	}
	d := r.Duration.Round(time.Millisecond)
	if r.Status == invocation.StatusTimeout {
		fmt.Fprintf(&b, "TIMEOUT: timed out after %s", d)
	} else {
		fmt.Fprintf(&b, "%s in %s", r.Status, d)
	}
	if r.StatusDetails != "" {
		b.WriteString(" (" + r.StatusDetails + ")")
	}
	if r.Cached() {
		b.WriteString(", " + cachedWhere(r) + ": the result of an earlier run")
		if !r.Start.IsZero() {
			b.WriteString(" started " + r.Start.UTC().Format(junitTimeFormat))
		}
		b.WriteString(", not run in this invocation")
	}
	return b.String()
}

func cachedWhere(r *invocation.TestRun) string {
	if r.CachedRemotely {
		return "cached remotely"
	}
	return "cached locally"
}

// logText is an attempt's test.log: its URI, and its last n lines when
// the file:// URI exists on this machine (escape sequences removed).
func logText(r *invocation.TestRun, n int) (uri string, tail string) {
	if r.Log == "" {
		return "", ""
	}
	path, ok := localPath(r.Log)
	if !ok || n <= 0 {
		return r.Log, ""
	}
	lines, truncated, err := tailLines(path, n)
	if err != nil {
		return r.Log, ""
	}
	for i, l := range lines {
		lines[i] = string(stripEscapes([]byte(l)))
	}
	tail = strings.Join(lines, "\n")
	if truncated {
		tail = "…\n" + tail
	}
	return r.Log, tail
}

// attemptText is an attempt's line, its test.log URI and the log's last
// lines.
func attemptText(where string, r *invocation.TestRun, n int) string {
	text := attemptLine(where, r)
	uri, tail := logText(r, n)
	if uri != "" {
		text += "\ntest.log: " + uri
	}
	if tail != "" {
		text += "\n" + tail
	}
	return text
}

func junitSuiteFor(inv *invocation.Invocation, t *invocation.Test, name string, opts junitOptions) junitSuite {
	units := junitUnits(t)
	s := junitSuite{
		Name: name,
		Time: junitSeconds(t.Duration),
		Properties: []junitProperty{
			{"bazel.status", t.Status},
			{"bazel.invocation_id", inv.InvocationID},
		},
	}
	if t.Configuration != "" {
		s.Properties = append(s.Properties, junitProperty{"bazel.configuration", t.Configuration})
	}
	cached := 0
	for _, u := range units {
		if u.last().Cached() {
			cached++
		}
	}
	switch {
	case len(units) > 0 && cached == len(units):
		s.Properties = append(s.Properties, junitProperty{"bazel.cached", "true"})
	case cached > 0:
		s.Properties = append(s.Properties, junitProperty{"bazel.cached", "partial"})
	default:
		s.Properties = append(s.Properties, junitProperty{"bazel.cached", "false"})
	}
	if !t.Start.IsZero() {
		s.Properties = append(s.Properties, junitProperty{"bazel.start", t.Start.UTC().Format(junitTimeFormat)})
	}
	if t.Shards > 1 {
		for _, u := range units {
			s.Properties = append(s.Properties, junitProperty{"bazel.shard", attemptLine(u.where(t, len(u.attempts)-1), u.last())})
		}
	}
	if t.Aborted != nil {
		s.Properties = append(s.Properties, junitProperty{"bazel.aborted", t.Aborted.Reason})
	}
	if t.DidNotReport {
		s.Properties = append(s.Properties, junitProperty{"bazel.did_not_report", "true"})
	}

	var cases []junitCase
	shown := targetShown{}
	if !t.DidNotReport {
		cases, shown = xmlCasesFor(t, units, opts)
	}
	if c, ok := targetCase(t, units, shown, len(cases) > 0, opts); ok {
		cases = append(cases, c)
	}
	for _, c := range cases {
		s.Tests++
		switch {
		case len(c.Failures) > 0:
			s.Failures++
		case c.Error != nil:
			s.Errors++
		case c.Skipped != nil:
			s.Skipped++
		}
	}
	s.Cases = cases
	return s
}

// targetShown says what the cases of a test's test.xml files show of the
// target: which units' failures a failing case shows, and which failed
// attempts of a flaky test became a case's flakyFailure.
type targetShown struct {
	failedUnits map[*junitUnit]bool
	attempts    map[*invocation.TestRun]bool
}

// targetCase is the testcase named by the target's label: the whole
// target when its test.xml cases are not here (withCases false), or what
// they do not show. ok is false when the cases show everything.
func targetCase(t *invocation.Test, units []*junitUnit, shown targetShown, withCases bool, opts junitOptions) (junitCase, bool) {
	c := junitCase{Name: t.Label, Classname: t.Label, Time: junitSeconds(t.Duration)}
	var out []string
	for _, u := range units {
		for i, r := range u.attempts {
			out = append(out, attemptText(u.where(t, i), r, 0))
		}
	}
	if len(out) > 0 {
		c.SystemOut = cdata(strings.Join(out, "\n") + "\n")
	}

	// failed lists the failing attempts as the failure's text.
	failed := func(onlyUnshown bool) (text string, n, of int) {
		var parts []string
		for _, u := range units {
			if onlyUnshown && shown.failedUnits[u] {
				continue
			}
			for i, r := range u.attempts {
				of++
				if invocation.FailingStatus(r.Status) {
					n++
					parts = append(parts, attemptText(u.where(t, i), r, opts.LogLines))
				}
			}
		}
		return strings.Join(parts, "\n\n"), n, of
	}
	switch {
	case t.DidNotReport:
		text, _, _ := failed(false)
		c.Error = &junitOutcome{
			Type:    "DID_NOT_REPORT",
			Message: "did not report: the invocation did not finish (Bazel stopped before the test's summary)",
			Text:    xmlSafe(text),
		}
		if t.Aborted != nil {
			c.Error.Message += "; aborted: " + t.Aborted.Reason
		}
		return c, true

	case t.Status == invocation.StatusFlaky:
		unmatched := false
		for _, u := range units {
			for i, r := range u.attempts {
				switch {
				case shown.attempts[r]:
				case invocation.FailingStatus(r.Status):
					unmatched = true
					uri, tail := logText(r, opts.LogLines)
					stack := attemptLine(u.where(t, i), r)
					if uri != "" {
						stack += "\ntest.log: " + uri
					}
					c.FlakyFailures = append(c.FlakyFailures, junitRerun{
						Type:       r.Status,
						Message:    attemptLine(u.where(t, i), r) + " (passed on a later attempt)",
						StackTrace: junitText{xmlSafe(stack)},
						SystemOut:  cdata(tail),
					})
				case r.Status == invocation.StatusFlaky:
					// A cached result of a flaky test: Bazel gives only
					// the result, not the failed attempts of its run.
					unmatched = true
					stack := attemptLine(u.where(t, i), r)
					if r.Log != "" {
						stack += "\ntest.log: " + r.Log
					}
					// TestSummary.failed names the failed attempts' logs.
					for _, f := range t.FailedLogs {
						stack += "\nfailed attempt's test.log: " + f
					}
					c.FlakyFailures = append(c.FlakyFailures, junitRerun{
						Type:       r.Status,
						Message:    "FLAKY: failed on an attempt before it passed, in the run this result comes from (the BEP gives only the passing result)",
						StackTrace: junitText{xmlSafe(stack)},
					})
				}
			}
		}
		return c, unmatched || !withCases

	case t.Failing():
		text, n, of := failed(withCases)
		if withCases && n == 0 && len(shown.failedUnits) > 0 {
			return c, false // every failure is shown by a case
		}
		if t.Aborted != nil {
			if text != "" {
				text += "\n\n"
			}
			text += "aborted: " + t.Aborted.Reason
			if t.Aborted.Description != "" {
				text += ": " + t.Aborted.Description
			}
		}
		o := &junitOutcome{Type: t.Status, Text: xmlSafe(text), Message: failureMessage(t, units, n, of)}
		if t.Status == invocation.StatusFailed || t.Status == invocation.StatusTimeout {
			c.Failures = []junitOutcome{*o}
		} else {
			c.Error = o
		}
		return c, true

	case t.Status == invocation.StatusNoStatus || t.Status == "":
		msg := "NO_STATUS: not run"
		if t.Aborted != nil {
			msg += " (aborted: " + t.Aborted.Reason + ")"
		}
		c.Skipped = &junitSkipped{Message: msg}
		if t.Aborted != nil {
			c.Skipped.Text = t.Aborted.Description
		}
		return c, !withCases
	}
	return c, !withCases
}

// failureMessage is the message of a failing target's <failure> or
// <error>: Bazel's words ("FAILED in 2 out of 2 attempts"; "timed out
// after 2.086s") or what the status means.
func failureMessage(t *invocation.Test, units []*junitUnit, n, of int) string {
	switch t.Status {
	case invocation.StatusTimeout:
		// The last attempt that timed out says how long it ran.
		var last *invocation.TestRun
		for _, u := range units {
			for _, r := range u.attempts {
				if r.Status == invocation.StatusTimeout {
					last = r
				}
			}
		}
		if last != nil {
			msg := "timed out after " + last.Duration.Round(time.Millisecond).String()
			if of > 1 {
				msg += fmt.Sprintf(" (TIMEOUT in %d out of %d attempts)", n, of)
			}
			return msg
		}
	case invocation.StatusFailedToBuild:
		return "FAILED_TO_BUILD: the test's target did not build, so it did not run"
	case invocation.StatusToolHalted:
		return "TOOL_HALTED_BEFORE_TESTING: Bazel stopped before running the test"
	case invocation.StatusNoStatus, "":
		if t.Aborted != nil {
			return "NO_STATUS: stopped (aborted: " + t.Aborted.Reason + ")"
		}
	}
	if of > 0 {
		return fmt.Sprintf("%s in %d out of %d attempts", t.Status, n, of)
	}
	return t.Status
}

// xmlCasesFor reads the test.xml of the last attempt of each run and
// shard, when it exists here and is the test's own (not the one-case file
// Bazel writes for a test that wrote none), and returns its cases with
// what they show of the target. The failed attempts' test.xml of a flaky
// test give the flakyFailures of the cases that failed in them.
func xmlCasesFor(t *invocation.Test, units []*junitUnit, opts junitOptions) ([]junitCase, targetShown) {
	shown := targetShown{failedUnits: map[*junitUnit]bool{}, attempts: map[*invocation.TestRun]bool{}}
	var cases []junitCase
	for _, u := range units {
		final := u.last()
		got, ok := readTestXML(final.XML, opts.Warn)
		if !ok {
			continue
		}
		first := len(cases)
		index := map[[2]string]int{}
		for _, xc := range got {
			c := xc.junit(t.Label)
			if t.RunCount > 1 {
				c.Name += fmt.Sprintf(" (run %d of %d)", u.run, t.RunCount)
			}
			index[[2]string{xc.Classname, xc.Name}] = len(cases)
			if c.failing() {
				shown.failedUnits[u] = true
			}
			cases = append(cases, c)
		}
		// Earlier failed attempts: a case that failed there and passed
		// in the end is flaky.
		for i, r := range u.attempts[:len(u.attempts)-1] {
			if !invocation.FailingStatus(r.Status) {
				continue
			}
			earlier, ok := readTestXML(r.XML, opts.Warn)
			if !ok {
				continue
			}
			for _, xc := range earlier {
				j, ok := index[[2]string{xc.Classname, xc.Name}]
				if !ok || j < first {
					continue
				}
				ec := xc.junit(t.Label)
				c := &cases[j]
				if !ec.failing() || c.failing() || c.Skipped != nil {
					continue
				}
				o := ec.Error
				if len(ec.Failures) > 0 {
					o = &ec.Failures[0]
				}
				rerun := junitRerun{
					Type:       o.Type,
					Message:    strings.TrimSpace(u.where(t, i) + ": " + o.Message),
					StackTrace: junitText{o.Text},
					SystemOut:  ec.SystemOut,
					SystemErr:  ec.SystemErr,
				}
				if len(ec.Failures) > 0 {
					c.FlakyFailures = append(c.FlakyFailures, rerun)
				} else {
					c.FlakyErrors = append(c.FlakyErrors, rerun)
				}
				shown.attempts[r] = true
			}
		}
	}
	return cases, shown
}

// xmlCase is a <testcase> of a test's own JUnit XML.
type xmlCase struct {
	Name          string      `xml:"name,attr"`
	Classname     string      `xml:"classname,attr"`
	Time          string      `xml:"time,attr"`
	Status        string      `xml:"status,attr"` // "run" in the file Bazel writes itself
	Failures      []xmlResult `xml:"failure"`
	Errors        []xmlResult `xml:"error"`
	Skipped       *xmlResult  `xml:"skipped"`
	FlakyFailures []xmlRerun  `xml:"flakyFailure"`
	FlakyErrors   []xmlRerun  `xml:"flakyError"`
	SystemOut     string      `xml:"system-out"`
	SystemErr     string      `xml:"system-err"`
}

type xmlResult struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type xmlRerun struct {
	Message    string `xml:"message,attr"`
	Type       string `xml:"type,attr"`
	Text       string `xml:",chardata"`
	StackTrace string `xml:"stackTrace"`
	SystemOut  string `xml:"system-out"`
	SystemErr  string `xml:"system-err"`
}

// junit turns a case of a test's own XML into a case of the target's
// suite: classname the label, name the case's own classname and name.
func (x xmlCase) junit(label string) junitCase {
	name := x.Name
	if x.Classname != "" && !strings.HasPrefix(name, x.Classname+".") {
		name = x.Classname + "." + name
	}
	c := junitCase{Name: name, Classname: label, Time: junitSeconds(parseJUnitTime(x.Time))}
	outcome := func(r xmlResult, kind string) junitOutcome {
		return junitOutcome{Message: r.Message, Type: cmpOr(r.Type, kind), Text: xmlSafe(lastBytes(r.Text))}
	}
	for _, f := range x.Failures {
		c.Failures = append(c.Failures, outcome(f, "failure"))
	}
	switch {
	case len(c.Failures) > 0:
	case len(x.Errors) > 0:
		o := outcome(x.Errors[0], "error")
		c.Error = &o
	case x.Skipped != nil:
		c.Skipped = &junitSkipped{Message: x.Skipped.Message, Text: xmlSafe(lastBytes(x.Skipped.Text))}
	}
	rerun := func(r xmlRerun, kind string) junitRerun {
		return junitRerun{
			Message:    r.Message,
			Type:       cmpOr(r.Type, kind),
			StackTrace: junitText{xmlSafe(lastBytes(cmpOr(r.StackTrace, strings.TrimSpace(r.Text))))},
			SystemOut:  cdata(lastBytes(r.SystemOut)),
			SystemErr:  cdata(lastBytes(r.SystemErr)),
		}
	}
	for _, f := range x.FlakyFailures {
		c.FlakyFailures = append(c.FlakyFailures, rerun(f, "flakyFailure"))
	}
	for _, f := range x.FlakyErrors {
		c.FlakyErrors = append(c.FlakyErrors, rerun(f, "flakyError"))
	}
	c.SystemOut = cdata(lastBytes(x.SystemOut))
	c.SystemErr = cdata(lastBytes(x.SystemErr))
	return c
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// lastBytes keeps the last junitMaxText bytes of s.
func lastBytes(s string) string {
	if len(s) <= junitMaxText {
		return s
	}
	s = s[len(s)-junitMaxText:]
	for i := 0; i < 4 && i < len(s); i++ { // start on a whole character
		if c := s[i]; c < 0x80 || c >= 0xc0 {
			return "…" + s[i:]
		}
	}
	return "…" + s
}

// parseJUnitTime reads a time attribute: seconds, perhaps with thousands
// separators as Surefire writes them ("1,234.5"); 0 when it is not a
// number.
func parseJUnitTime(s string) time.Duration {
	f, err := strconv.ParseFloat(strings.ReplaceAll(strings.TrimSpace(s), ",", ""), 64)
	if err != nil || f < 0 || f > 1e9 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

// readTestXML reads the testcases of a test.xml whose file:// URI exists
// on this machine. ok is false when there is no such file, when the file
// is the one Bazel writes for a test that wrote no JUnit of its own (one
// testsuite holding one testcase of its name, status="run"), or when it is
// not JUnit XML (then warn gets one line naming the file and the byte
// offset).
func readTestXML(uri string, warn func(string)) ([]xmlCase, bool) {
	if uri == "" {
		return nil, false
	}
	path, ok := localPath(uri)
	if !ok {
		return nil, false
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, false
	}
	cases, suites, err := parseJUnitXML(f)
	if err != nil {
		warn(fmt.Sprintf("%s: %v (the target's own testcase is used instead)", path, err))
		return nil, false
	}
	if len(suites) == 1 && len(cases) == 1 && cases[0].Name == suites[0] && cases[0].Status == "run" {
		return nil, false // Bazel's own test.xml: it adds nothing
	}
	return cases, true
}

// parseJUnitXML reads the testcases of a JUnit XML document (<testsuites>
// or <testsuite> at its root, suites nested in any depth) and the names
// of its suites. An error names the byte offset where the document stops
// being what is expected.
func parseJUnitXML(r io.Reader) (cases []xmlCase, suites []string, err error) {
	dec := xml.NewDecoder(r)
	depth, root := 0, false
	for {
		off := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			if !root {
				return nil, nil, fmt.Errorf("byte %d: invalid JUnit XML: want <testsuites> or <testsuite>, got no element", off)
			}
			return cases, suites, nil
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, nil, fmt.Errorf("byte %d: invalid JUnit XML: line %d: %s", dec.InputOffset(), se.Line, se.Msg)
			}
			return nil, nil, fmt.Errorf("byte %d: invalid JUnit XML: %v", dec.InputOffset(), err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			switch {
			case depth == 0 && root:
				return nil, nil, fmt.Errorf("byte %d: invalid JUnit XML: a second root element <%s>", off, el.Name.Local)
			case depth == 0 && el.Name.Local != "testsuites" && el.Name.Local != "testsuite":
				return nil, nil, fmt.Errorf("byte %d: invalid JUnit XML: want <testsuites> or <testsuite>, got <%s>", off, el.Name.Local)
			case el.Name.Local == "testcase":
				var c xmlCase
				if err := dec.DecodeElement(&c, &el); err != nil {
					return nil, nil, fmt.Errorf("byte %d: invalid JUnit XML: <testcase>: %v", off, err)
				}
				cases = append(cases, c)
				continue
			case el.Name.Local == "testsuite":
				name := ""
				for _, a := range el.Attr {
					if a.Name.Local == "name" {
						name = a.Value
					}
				}
				suites = append(suites, name)
			}
			root = true
			depth++
		case xml.EndElement:
			depth--
		}
	}
}
