package commands

//lint:file-ignore SA1019 The counts are made from the fields the older Bazels of the public files write (ActionExecuted.label, BuildFinished.overall_success), which the current schema deprecates.

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protojson"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// The public BEP files of ../shared/public-bep (Bazel 3.4 to 9.1, and a few
// files other tools or people wrote; see its SOURCES.md) are run through
// `bes summary`, `tests`, `failures` and `artifacts`, and the figures of
// their JSON are checked against counts this test makes itself from the
// events, by simple rules taken from Bazel's build_event_stream.proto
// (issue 10), without bepfile/invocation. The files are read where they are,
// never copied into the project; without the directory the test is skipped.

const publicBEPDir = "../../shared/public-bep"

// publicBEPKnownFaults are the files whose check is skipped because bes is
// known to get them wrong and the fix is not in yet: file name → the fault.
// Empty when bes agrees on every file.
var publicBEPKnownFaults = map[string]string{}

func TestPublicBEPViews(t *testing.T) {
	ents, err := os.ReadDir(publicBEPDir)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s does not exist", publicBEPDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || name == "SOURCES.md" {
			continue
		}
		files++
		t.Run(name, func(t *testing.T) {
			if fault, ok := publicBEPKnownFaults[name]; ok {
				t.Skipf("known fault, not yet fixed: %s", fault)
			}
			checkPublicBEP(t, filepath.Join(publicBEPDir, name))
		})
	}
	if files < 30 {
		t.Errorf("%d files in %s; its SOURCES.md lists 34", files, publicBEPDir)
	}
}

// pubStream is one stream of a public file: its key ("" for Bazel's own
// files, which hold one stream) and its Bazel events in order.
type pubStream struct {
	key    string
	events []*bes.BuildEvent
}

// pubFile is what the test decoded of a file. Damaged is set when a frame
// or a line did not decode.
type pubFile struct {
	streams []*pubStream
	damaged bool
}

// decodePublicBEP decodes a file by itself, with the protobuf library:
//   - JSON (the first byte that is not white space is '{'): Bazel's
//     --build_event_json_file, one BuildEvent per line, read with protojson
//     and DiscardUnknown. A line is its own frame, so a line that is no
//     BuildEvent (or one without an id, which every Bazel event has) is
//     skipped and the next lines are read. A file whose first line is not
//     a whole JSON value (trunk-io's pretty-printed fixture) is read as a
//     sequence of JSON values (encoding/json's Decoder), as bes reads it.
//   - binary: varint-delimited messages (protodelim). When the first frame
//     is an OrderedBuildEvent of a BES capture (a stream id with a build id,
//     a sequence number, an event), every frame is one and its Bazel
//     payload is unpacked; else every frame is a BuildEvent (Bazel's
//     --build_event_binary_file). Decoding stops at the first frame that
//     does not decode: after it, frame boundaries are not known.
func decodePublicBEP(t *testing.T, path string) *pubFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := &pubFile{}
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		s := &pubStream{}
		lines := slices.Collect(bytes.Lines(data))
		if first, _, _ := bytes.Cut(trimmed, []byte("\n")); !json.Valid(first) {
			lines = nil
			for dec := json.NewDecoder(bytes.NewReader(data)); ; {
				var v json.RawMessage
				if err := dec.Decode(&v); err != nil {
					out.damaged = err != io.EOF
					break
				}
				lines = append(lines, v)
			}
		}
		for _, line := range lines {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			ev := &bes.BuildEvent{}
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(line, ev); err != nil || ev.GetId() == nil {
				out.damaged = true
				continue
			}
			s.events = append(s.events, ev)
		}
		if len(s.events) > 0 {
			out.streams = append(out.streams, s)
		}
		return out
	}
	opts := protodelim.UnmarshalOptions{MaxSize: 64 << 20}
	if isOBE(data) {
		byKey := map[string]*pubStream{}
		r := bufio.NewReader(bytes.NewReader(data))
		for {
			obe := &buildpb.OrderedBuildEvent{}
			if err := opts.UnmarshalFrom(r, obe); err != nil {
				out.damaged = err != io.EOF
				break
			}
			id := obe.GetStreamId()
			key := fmt.Sprintf("%s.%d.%s", id.GetBuildId(), id.GetComponent(), id.GetInvocationId())
			s := byKey[key]
			if s == nil {
				s = &pubStream{key: key}
				byKey[key] = s
				out.streams = append(out.streams, s)
			}
			anyEv := obe.GetEvent().GetBazelEvent()
			if anyEv == nil {
				continue // a lifecycle event, or the end of the stream
			}
			ev := &bes.BuildEvent{}
			if err := anyEv.UnmarshalTo(ev); err != nil {
				out.damaged = true
				continue
			}
			s.events = append(s.events, ev)
		}
		return out
	}
	s := &pubStream{}
	r := bufio.NewReader(bytes.NewReader(data))
	for {
		ev := &bes.BuildEvent{}
		if err := opts.UnmarshalFrom(r, ev); err != nil {
			out.damaged = err != io.EOF
			break
		}
		s.events = append(s.events, ev)
	}
	if len(s.events) > 0 {
		out.streams = append(out.streams, s)
	}
	return out
}

// isOBE reports whether the first frame of data is an OrderedBuildEvent
// of a BES capture. A BuildEvent read as one has no sequence number: its
// field 2 (children) is length-delimited, OrderedBuildEvent's a varint.
func isOBE(data []byte) bool {
	obe := &buildpb.OrderedBuildEvent{}
	if err := (protodelim.UnmarshalOptions{MaxSize: 64 << 20}).UnmarshalFrom(bufio.NewReader(bytes.NewReader(data)), obe); err != nil {
		return false
	}
	return obe.GetStreamId().GetBuildId() != "" && obe.GetSequenceNumber() > 0 && obe.GetEvent().GetEvent() != nil
}

// pubTestKey is a test target: label and configuration id.
type pubTestKey struct{ label, config string }

// pubExpect is what the test expects bes to report on one stream.
type pubExpect struct {
	command string

	// tests: the labels with a TestSummary or TestResult event (its
	// payload or an abort), and, in a `test` or `coverage` command, those
	// configured as a *_test rule.
	tests map[string]bool
	// explicitStatus: TestSummary.overall_status of the last summary of a
	// test, when it has one.
	explicitStatus map[pubTestKey]string
	// testFailures: "label STATUS" of each test whose status (the
	// summary's overall_status, or from its runs when the summary has
	// none) is a failing one.
	testFailures []string
	// failedOrTimedOut counts the tests whose last summary says FAILED or
	// TIMEOUT.
	failedOrTimedOut int
	ranAndFailed     bool

	configured    int // distinct labels of TargetConfigured events, aspects left out
	built, failed int // by the last TargetComplete of each label, aspects left out

	failedActions []string // "label exit-code" of ActionExecuted without success

	finished    bool // a BuildFinished event
	result      string
	exitCode    int32
	lastMessage bool
	status      int // the exit status for this stream alone

	// artifacts: the output files of the completed targets (with or
	// without success, aspects included), each once per target and output
	// group; the value is "" for a file of an output group, "important"
	// for an important output that no group lists, "directory" for a
	// directory output (those two under group "").
	artifacts map[pubArtifactKey]string
	// important: the files of output groups that TargetComplete also
	// lists as important outputs, by target and name (group "").
	important map[pubArtifactKey]bool
}

// pubArtifactKey is an output file of a target.
type pubArtifactKey struct{ label, config, aspect, group, name string }

// failingTestStatus: every TestStatus but NO_STATUS, PASSED and FLAKY,
// and a number without a name, means the test did not pass.
func failingTestStatus(s bes.TestStatus) bool {
	return s != bes.TestStatus_NO_STATUS && s != bes.TestStatus_PASSED && s != bes.TestStatus_FLAKY
}

// statusName is a TestStatus as bes prints it: its name, or its number.
func statusName(s bes.TestStatus) string {
	if n, ok := bes.TestStatus_name[int32(s)]; ok {
		return n
	}
	return fmt.Sprint(int32(s))
}

// countPublicStream counts one stream's events by the rules of Bazel's
// build_event_stream.proto.
func countPublicStream(events []*bes.BuildEvent) *pubExpect {
	x := &pubExpect{tests: map[string]bool{}, explicitStatus: map[pubTestKey]string{},
		artifacts: map[pubArtifactKey]string{}, important: map[pubArtifactKey]bool{}}
	type attempt struct {
		run, shard, attempt int32
		status              bes.TestStatus
	}
	var (
		summaries  = map[pubTestKey]*bes.TestSummary{}
		testOrder  []pubTestKey
		results    = map[pubTestKey][]attempt{}
		configured = map[string]bool{}
		testKinds  = map[string]bool{} // labels configured as *_test rules
		lastDone   = map[string]*bes.BuildEvent{}
		aborts     = map[string][]bes.Aborted_AbortReason{} // by label: aborted events about it
		namedSets  = map[string]*bes.NamedSetOfFiles{}
		completes  []*bes.BuildEvent
		finished   *bes.BuildFinished
	)
	seenTest := func(k pubTestKey) {
		if _, ok := results[k]; !ok {
			if _, ok := summaries[k]; !ok {
				testOrder = append(testOrder, k)
			}
		}
	}
	for _, ev := range events {
		id := ev.GetId()
		if ev.GetLastMessage() {
			x.lastMessage = true
		}
		if ab := ev.GetAborted(); ab != nil {
			for _, label := range []string{
				id.GetTestSummary().GetLabel(), id.GetTestResult().GetLabel(),
				id.GetTargetCompleted().GetLabel(), id.GetTargetConfigured().GetLabel(),
			} {
				if label != "" {
					aborts[label] = append(aborts[label], ab.GetReason())
				}
			}
		}
		switch {
		case ev.GetStarted() != nil:
			x.command = ev.GetStarted().GetCommand()
		case id.GetTestSummary() != nil:
			k := pubTestKey{id.GetTestSummary().GetLabel(), id.GetTestSummary().GetConfiguration().GetId()}
			x.tests[k.label] = true
			if s := ev.GetTestSummary(); s != nil {
				seenTest(k)
				summaries[k] = s
			}
		case id.GetTestResult() != nil && id.GetTestResult().GetLabel() == "":
			// An id without a label (an edited excerpt) names no test.
		case id.GetTestResult() != nil:
			rid := id.GetTestResult()
			k := pubTestKey{rid.GetLabel(), rid.GetConfiguration().GetId()}
			x.tests[k.label] = true
			if r := ev.GetTestResult(); r != nil {
				seenTest(k)
				results[k] = append(results[k], attempt{rid.GetRun(), rid.GetShard(), rid.GetAttempt(), r.GetStatus()})
			}
		case ev.GetConfigured() != nil && id.GetTargetConfigured().GetAspect() == "":
			label := id.GetTargetConfigured().GetLabel()
			configured[label] = true
			if kind := strings.TrimSuffix(ev.GetConfigured().GetTargetKind(), " rule"); strings.HasSuffix(kind, "_test") {
				testKinds[label] = true
			}
		case id.GetTargetCompleted() != nil:
			if ev.GetCompleted() != nil {
				completes = append(completes, ev)
			}
			if id.GetTargetCompleted().GetAspect() == "" {
				lastDone[id.GetTargetCompleted().GetLabel()] = ev
			}
		case ev.GetAction() != nil && !ev.GetAction().GetSuccess():
			a := ev.GetAction()
			label := id.GetActionCompleted().GetLabel()
			if label == "" {
				label = a.GetLabel()
			}
			code := a.GetExitCode()
			if sp := a.GetFailureDetail().GetSpawn().GetSpawnExitCode(); sp != 0 {
				code = sp
			}
			x.failedActions = append(x.failedActions, fmt.Sprintf("%s %d", label, code))
		case ev.GetNamedSetOfFiles() != nil:
			namedSets[id.GetNamedSet().GetId()] = ev.GetNamedSetOfFiles()
		case ev.GetFinished() != nil:
			finished = ev.GetFinished()
		}
	}
	if x.command == "test" || x.command == "coverage" {
		for label := range testKinds {
			x.tests[label] = true
		}
	}

	// Tests. The status of a run and shard is that of its last attempt,
	// FLAKY when an earlier attempt failed; the test's is the gravest, by
	// TestStatus number (Bazel's TestSummary; bazelbuild/bazel#10919 for
	// summaries without overall_status).
	fromRuns := func(as []attempt) (bes.TestStatus, bool) {
		as = slices.Clone(as)
		slices.SortStableFunc(as, func(p, q attempt) int {
			return cmp.Or(cmp.Compare(p.run, q.run), cmp.Compare(p.shard, q.shard), cmp.Compare(p.attempt, q.attempt))
		})
		worst, failedBefore := bes.TestStatus(-1), false
		for i, a := range as {
			if i+1 < len(as) && as[i+1].run == a.run && as[i+1].shard == a.shard {
				failedBefore = failedBefore || failingTestStatus(a.status)
				continue
			}
			s := a.status // the last attempt of its run and shard
			if s == bes.TestStatus_PASSED && failedBefore {
				s = bes.TestStatus_FLAKY
			}
			worst, failedBefore = max(worst, s), false
		}
		return worst, len(as) > 0
	}
	for _, k := range testOrder {
		s, hasSummary := summaries[k]
		status, known := bes.TestStatus_NO_STATUS, false
		if hasSummary && s.GetOverallStatus() != bes.TestStatus_NO_STATUS {
			status, known = s.GetOverallStatus(), true
			x.explicitStatus[k] = statusName(status)
			if status == bes.TestStatus_FAILED || status == bes.TestStatus_TIMEOUT {
				x.failedOrTimedOut++
			}
		} else if len(results[k]) > 0 {
			status, known = fromRuns(results[k])
		}
		if hasSummary && known && failingTestStatus(status) {
			x.testFailures = append(x.testFailures, k.label+" "+statusName(status))
		}
		switch status {
		case bes.TestStatus_FAILED_TO_BUILD, bes.TestStatus_TOOL_HALTED_BEFORE_TESTING:
		default:
			if known && failingTestStatus(status) {
				x.ranAndFailed = true
			}
		}
	}
	// A test with no status at all that was stopped while it could run.
	for label := range x.tests {
		stopped := slices.ContainsFunc(aborts[label], func(r bes.Aborted_AbortReason) bool {
			switch r {
			case bes.Aborted_USER_INTERRUPTED, bes.Aborted_TIME_OUT, bes.Aborted_OUT_OF_MEMORY,
				bes.Aborted_INTERNAL, bes.Aborted_REMOTE_ENVIRONMENT_FAILURE:
				return true
			}
			return false
		})
		if !stopped {
			continue
		}
		hasStatus := false
		for _, k := range testOrder {
			if k.label != label {
				continue
			}
			if s, ok := summaries[k]; ok && s.GetOverallStatus() != bes.TestStatus_NO_STATUS {
				hasStatus = true
			}
			if len(results[k]) > 0 {
				hasStatus = true
			}
		}
		if !hasStatus {
			x.ranAndFailed = true
		}
	}
	sort.Strings(x.testFailures)

	// Targets.
	x.configured = len(configured)
	for _, ev := range lastDone {
		if c := ev.GetCompleted(); c != nil {
			if c.GetSuccess() {
				x.built++
			} else {
				x.failed++
			}
		}
	}
	sort.Strings(x.failedActions)

	// Artifacts: the files of each output group, through the named sets
	// and the sets they include; the important outputs (a deprecated copy
	// of the default group) that no group lists, and the directory
	// outputs, apart.
	for _, ev := range completes {
		tid := ev.GetId().GetTargetCompleted()
		tc := ev.GetCompleted()
		key := func(group, name string) pubArtifactKey {
			return pubArtifactKey{tid.GetLabel(), tid.GetConfiguration().GetId(), tid.GetAspect(), group, name}
		}
		inGroups := map[[2]string]bool{} // name and URI
		for _, g := range tc.GetOutputGroup() {
			add := func(f *bes.File) {
				x.artifacts[key(g.GetName(), f.GetName())] = ""
				inGroups[[2]string{f.GetName(), f.GetUri()}] = true
			}
			for _, f := range g.GetInlineFiles() {
				add(f)
			}
			seen := map[string]bool{}
			var walk func(id string)
			walk = func(id string) {
				if seen[id] {
					return
				}
				seen[id] = true
				set := namedSets[id]
				for _, f := range set.GetFiles() {
					add(f)
				}
				for _, sub := range set.GetFileSets() {
					walk(sub.GetId())
				}
			}
			for _, fs := range g.GetFileSets() {
				walk(fs.GetId())
			}
		}
		//lint:ignore SA1019 Bazel writes important_output, a deprecated copy of the default group, up to 7.x.
		for _, f := range tc.GetImportantOutput() {
			if inGroups[[2]string{f.GetName(), f.GetUri()}] {
				x.important[key("", f.GetName())] = true
			} else {
				x.artifacts[key("", f.GetName())] = "important"
			}
		}
		for _, f := range tc.GetDirectoryOutput() {
			x.artifacts[key("", f.GetName())] = "directory"
		}
	}

	// The result and the verdict.
	if finished != nil {
		x.finished = true
		if ec := finished.GetExitCode(); ec != nil {
			x.result, x.exitCode = ec.GetName(), ec.GetCode()
		} else if finished.GetOverallSuccess() {
			x.result, x.exitCode = "SUCCESS", 0
		} else {
			x.result, x.exitCode = "FAILURE", 1
		}
	}
	switch {
	case !x.finished && !x.lastMessage:
		x.status = ExitIncomplete
	case !x.finished && x.ranAndFailed:
		x.status = ExitTestFail // an excerpt whose tests failed
	case !x.finished:
		x.status = ExitBuildFail
	case x.exitCode == 0:
		x.status = ExitOK
	case x.result == "TESTS_FAILED" || x.ranAndFailed:
		x.status = ExitTestFail
	default:
		x.status = ExitBuildFail
	}
	return x
}

// verdictName is the summary's verdict for an exit status.
var verdictName = map[int]string{
	ExitOK: "passed", ExitBuildFail: "build_failed", ExitTestFail: "tests_failed", ExitIncomplete: "did_not_finish",
}

// gravest folds exit statuses as bes does across streams.
func gravest(codes ...int) int {
	out := ExitOK
	for _, c := range codes {
		if exitRank[c] > exitRank[out] {
			out = c
		}
	}
	return out
}

// runPublicView runs `bes VIEW --format json path` and decodes its array.
func runPublicView[T any](t *testing.T, view, path string) ([]T, int, string) {
	t.Helper()
	stdout, stderr, code := runCLI(t, view, "--format", "json", path)
	var rows []T
	if strings.TrimSpace(stdout) != "" {
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
			t.Fatalf("%s: output is no JSON array: %v\n%s", view, err, stdout)
		}
	}
	return rows, code, stderr
}

func checkPublicBEP(t *testing.T, path string) {
	file := decodePublicBEP(t, path)
	summaries, sumCode, sumErr := runPublicView[summaryRow](t, "summary", path)
	tests, testsCode, testsErr := runPublicView[testRow](t, "tests", path)
	failures, failCode, failErr := runPublicView[failureRow](t, "failures", path)
	artifacts, artCode, artErr := runPublicView[artifactRow](t, "artifacts", path)

	if len(file.streams) == 0 {
		// Nothing decodes (a binary file mangled from its first byte):
		// nothing to report, and not a success.
		if len(summaries)+len(tests)+len(failures)+len(artifacts) != 0 {
			t.Errorf("no event decodes, yet bes reports %d invocations, %d tests, %d failures, %d artifacts",
				len(summaries), len(tests), len(failures), len(artifacts))
		}
		for view, code := range map[string]int{"summary": sumCode, "tests": testsCode, "failures": failCode, "artifacts": artCode} {
			if code == ExitOK {
				t.Errorf("%s: exit 0 on a file of which nothing decodes", view)
			}
		}
		return
	}

	var verdicts []int
	anyTest, anyArtifact := false, false
	withEvents := 0
	for _, s := range file.streams {
		if len(s.events) == 0 {
			continue // a lifecycle stream: the views leave it out
		}
		withEvents++
		x := countPublicStream(s.events)
		verdicts = append(verdicts, x.status)
		anyTest = anyTest || len(x.tests) > 0
		anyArtifact = anyArtifact || len(x.artifacts) > 0
		name := s.key
		if name == "" {
			name = "the stream"
		}
		t.Run(name, func(t *testing.T) {
			t.Logf("%d events: command %q, exit status %d (BuildFinished %v %q %d, last_message %v); %d tests (%d with overall_status, %d FAILED or TIMEOUT, %d failing); targets %d configured, %d built, %d failed; %d failed actions; %d artifacts",
				len(s.events), x.command, x.status, x.finished, x.result, x.exitCode, x.lastMessage, len(x.tests), len(x.explicitStatus), x.failedOrTimedOut, len(x.testFailures),
				x.configured, x.built, x.failed, len(x.failedActions), len(x.artifacts))
			mine := func(key string) bool { return s.key == "" || key == s.key }
			checkPublicSummary(t, x, filterRows(summaries, func(r summaryRow) bool { return mine(r.Stream) }))
			checkPublicTests(t, x, filterRows(tests, func(r testRow) bool { return mine(r.Stream) }))
			checkPublicFailures(t, x, filterRows(failures, func(r failureRow) bool { return mine(r.Stream) }))
			checkPublicArtifacts(t, x, filterRows(artifacts, func(r artifactRow) bool { return mine(r.Stream) }))
		})
	}
	if len(summaries) != withEvents {
		t.Errorf("summary: %d rows, want one per stream with Bazel events: %d", len(summaries), withEvents)
	}

	// Exit statuses. A damaged file must not pass; a sound one exits as
	// its verdicts say.
	views := []struct {
		name   string
		code   int
		stderr string
		want   int
	}{
		{"summary", sumCode, sumErr, gravest(verdicts...)},
		{"failures", failCode, failErr, gravest(verdicts...)},
		{"tests", testsCode, testsErr, gravest(append(verdicts, map[bool]int{false: ExitNoData, true: ExitOK}[anyTest])...)},
		{"artifacts", artCode, artErr, map[bool]int{false: ExitNoData, true: ExitOK}[anyArtifact]},
	}
	for _, v := range views {
		switch {
		case file.damaged && v.code == ExitOK:
			t.Errorf("%s: exit 0 on a damaged file", v.name)
		case !file.damaged && v.code != v.want:
			t.Errorf("%s: exit %d, want %d\nstderr: %s", v.name, v.code, v.want, v.stderr)
		}
	}
}

func filterRows[T any](rows []T, keep func(T) bool) []T {
	var out []T
	for _, r := range rows {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

func checkPublicSummary(t *testing.T, x *pubExpect, rows []summaryRow) {
	if len(rows) != 1 {
		t.Errorf("summary: %d rows for the stream, want 1", len(rows))
		return
	}
	r := rows[0]
	if r.Command != x.command {
		t.Errorf("summary: command %q, want %q", r.Command, x.command)
	}
	if r.Finished != x.finished || r.Complete != x.lastMessage {
		t.Errorf("summary: finished %v, complete %v; want %v (BuildFinished), %v (last_message)", r.Finished, r.Complete, x.finished, x.lastMessage)
	}
	switch {
	case x.finished && (r.ExitCode == nil || *r.ExitCode != x.exitCode || r.Result != x.result):
		t.Errorf("summary: result %q, exit code %v; want %q, %d (BuildFinished.exit_code)", r.Result, ptrText(r.ExitCode), x.result, x.exitCode)
	case !x.finished && (r.ExitCode != nil || r.Result != ""):
		t.Errorf("summary: result %q, exit code %v without BuildFinished", r.Result, ptrText(r.ExitCode))
	}
	if r.ExitStatus != x.status || r.Verdict != verdictName[x.status] {
		t.Errorf("summary: verdict %s, exit_status %d; want %s, %d", r.Verdict, r.ExitStatus, verdictName[x.status], x.status)
	}
	if r.Targets.Configured != x.configured || r.Targets.Built != x.built || r.Targets.Failed != x.failed {
		t.Errorf("summary: targets configured %d, built %d, failed %d; want %d, %d, %d",
			r.Targets.Configured, r.Targets.Built, r.Targets.Failed, x.configured, x.built, x.failed)
	}
	c := r.Tests
	if c.Total != len(x.tests) {
		t.Errorf("summary: %d tests, want %d (%s)", c.Total, len(x.tests), strings.Join(sortedKeys(x.tests), " "))
	}
	if sum := c.Passed + c.Flaky + c.Failed + c.TimedOut + c.Incomplete + c.RemoteFailure + c.FailedToBuild + c.ToolHalted + c.Unknown + c.NoStatus; sum != c.Total {
		t.Errorf("summary: the tests by status add up to %d, not %d: %+v", sum, c.Total, c)
	}
	// Tests whose summary gives overall_status: at least these many of
	// each status (the others get theirs from their runs, or have none).
	want := map[string]int{}
	for _, s := range x.explicitStatus {
		want[s]++
	}
	got := map[string]int{
		"PASSED": c.Passed, "FLAKY": c.Flaky, "FAILED": c.Failed, "TIMEOUT": c.TimedOut, "INCOMPLETE": c.Incomplete,
		"REMOTE_FAILURE": c.RemoteFailure, "FAILED_TO_BUILD": c.FailedToBuild, "TOOL_HALTED_BEFORE_TESTING": c.ToolHalted,
	}
	for s, n := range want {
		g, ok := got[s]
		if !ok {
			g = c.Unknown
		}
		if g < n || (len(x.explicitStatus) == c.Total && g != n) {
			t.Errorf("summary: %d tests %s, want %d from the summaries' overall_status (%+v)", g, s, n, c)
		}
	}
}

func checkPublicTests(t *testing.T, x *pubExpect, rows []testRow) {
	labels := map[string]bool{}
	for _, r := range rows {
		labels[r.Label] = true
		if want, ok := x.explicitStatus[pubTestKey{r.Label, r.Configuration}]; ok && r.Status != want {
			t.Errorf("tests: %s (configuration %q) is %s, its summary's overall_status %s", r.Label, r.Configuration, r.Status, want)
		}
	}
	if got, want := sortedKeys(labels), sortedKeys(x.tests); !slices.Equal(got, want) {
		t.Errorf("tests: %d test labels, want %d\n got: %v\nwant: %v", len(got), len(want), got, want)
	}
}

func checkPublicFailures(t *testing.T, x *pubExpect, rows []failureRow) {
	var tests, actions []string
	failedOrTimedOut := 0
	for _, r := range rows {
		switch r.Kind {
		case "test":
			tests = append(tests, r.Label+" "+r.Reason)
			if r.Reason == "FAILED" || r.Reason == "TIMEOUT" {
				failedOrTimedOut++
			}
		case "action":
			actions = append(actions, fmt.Sprintf("%s %s", r.Label, ptrText(r.ExitCode)))
		}
	}
	sort.Strings(tests)
	sort.Strings(actions)
	if failedOrTimedOut != x.failedOrTimedOut {
		t.Errorf("failures: %d tests failed or timed out, want %d (summaries saying FAILED or TIMEOUT)", failedOrTimedOut, x.failedOrTimedOut)
	}
	if !slices.Equal(tests, x.testFailures) {
		t.Errorf("failures of kind test:\n got: %q\nwant: %q", tests, x.testFailures)
	}
	if !slices.Equal(actions, x.failedActions) {
		t.Errorf("failures of kind action (label, exit code):\n got: %q\nwant: %q", actions, x.failedActions)
	}
}

func checkPublicArtifacts(t *testing.T, x *pubExpect, rows []artifactRow) {
	got := map[pubArtifactKey]string{}
	groups := map[[3]string]bool{} // distinct (label, output group, name) of the rows
	errs := 0
	report := func(format string, args ...any) {
		if errs++; errs <= 5 {
			t.Errorf(format, args...)
		}
	}
	for _, r := range rows {
		k := pubArtifactKey{r.Label, r.Configuration, r.Aspect, r.Group, r.Name}
		kind := ""
		switch {
		case r.Directory:
			kind = "directory"
		case r.Important && r.Group == "":
			kind = "important"
		}
		if _, dup := got[k]; dup {
			report("artifacts: %+v listed twice", k)
		}
		got[k] = kind
		if r.Group != "" {
			groups[[3]string{r.Label, r.Group, r.Name}] = true
			if want := x.important[pubArtifactKey{r.Label, r.Configuration, r.Aspect, "", r.Name}]; r.Important != want {
				report("artifacts: %+v important %v, want %v (TargetComplete.important_output)", k, r.Important, want)
			}
		}
	}
	wantGroups := map[[3]string]bool{}
	for k, kind := range x.artifacts {
		if kind == "" {
			wantGroups[[3]string{k.label, k.group, k.name}] = true
		}
	}
	if len(groups) != len(wantGroups) || len(got) != len(x.artifacts) {
		t.Errorf("artifacts: %d rows, %d distinct (label, output group, name); want %d rows, %d distinct",
			len(got), len(groups), len(x.artifacts), len(wantGroups))
	}
	for k, kind := range x.artifacts {
		if g, ok := got[k]; !ok {
			report("artifacts: missing %+v (%s)", k, kind)
		} else if g != kind {
			report("artifacts: %+v is %q, want %q", k, g, kind)
		}
	}
	for k := range got {
		if _, ok := x.artifacts[k]; !ok {
			report("artifacts: %+v is in no output group of its target", k)
		}
	}
}

func ptrText(p *int32) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
