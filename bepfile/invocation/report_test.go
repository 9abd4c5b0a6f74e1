package invocation

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// load reads a file of testdata/ and builds the model of each of its
// streams, in key order.
func load(t *testing.T, name string) []*Invocation {
	t.Helper()
	r, err := bepfile.Open(filepath.Join("..", "..", "testdata", name), bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mem := memStreams{}
	for {
		s, ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		mem.GetStreamFor(s).Append(*ev)
	}
	var invs []*Invocation
	for _, st := range mem.Streams() {
		inv, err := Build(st.Info(), st.Query(context.Background(), nil), Wants{Artifacts: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		invs = append(invs, inv)
	}
	return invs
}

func loadOne(t *testing.T, name string) *Invocation {
	t.Helper()
	invs := load(t, name)
	if len(invs) != 1 {
		t.Fatalf("%s: %d streams, want 1", name, len(invs))
	}
	return invs[0]
}

func findTest(t *testing.T, inv *Invocation, label string) *Test {
	t.Helper()
	for _, x := range inv.Tests {
		if x.Label == label {
			return x
		}
	}
	t.Fatalf("no test %s", label)
	return nil
}

// testFigures is what the tests of test_mixed and test_cached assert for
// each test target.
type testFigures struct {
	status                              string
	totalRuns, shards, attempts, cached int
	duration                            time.Duration
	runs                                []string // "run/shard/attempt STATUS [cached]"
}

func figuresOf(x *Test) testFigures {
	f := testFigures{x.Status, x.TotalRuns, x.Shards, x.Attempts, x.Cached, x.Duration, nil}
	for _, r := range x.Runs {
		s := strings.Join([]string{itoa(r.Run), itoa(r.Shard), itoa(r.Attempt)}, "/") + " " + r.Status
		if r.Cached() {
			s += " cached"
		}
		f.runs = append(f.runs, s)
	}
	return f
}

func itoa(i int) string { return string(rune('0' + i)) }

func checkTests(t *testing.T, inv *Invocation, want map[string]testFigures) {
	t.Helper()
	var labels []string
	for _, x := range inv.Tests {
		labels = append(labels, x.Label)
	}
	if len(labels) != len(want) {
		t.Errorf("tests %v, want %d", labels, len(want))
	}
	for label, w := range want {
		got := figuresOf(findTest(t, inv, label))
		if got.status != w.status || got.totalRuns != w.totalRuns || got.shards != w.shards ||
			got.attempts != w.attempts || got.cached != w.cached || got.duration != w.duration || !slices.Equal(got.runs, w.runs) {
			t.Errorf("%s:\n got %+v\nwant %+v", label, got, w)
		}
	}
}

const ms = time.Millisecond

func TestTestMixed(t *testing.T) {
	inv := loadOne(t, "test_mixed.bep")
	if inv.Command != "test" || !slices.Equal(inv.Patterns, []string{"//...", "-//broken/..."}) {
		t.Errorf("command %q patterns %q", inv.Command, inv.Patterns)
	}
	if !inv.HasExitCode || inv.Result != "TESTS_FAILED" || inv.ExitCode != 3 || !inv.Complete || inv.Interrupted {
		t.Errorf("result %q %d complete %v interrupted %v", inv.Result, inv.ExitCode, inv.Complete, inv.Interrupted)
	}
	if inv.InvocationID != "657fb236-551f-4f88-ab84-e114caf29e48" || inv.BazelEvents != 105 {
		t.Errorf("invocation %s, %d events", inv.InvocationID, inv.BazelEvents)
	}
	if want := time.UnixMilli(1795464878972).UTC(); !inv.Start.Equal(want) || inv.Duration() != 5094*ms {
		t.Errorf("start %v duration %v", inv.Start, inv.Duration())
	}
	if inv.Targets != (Targets{Configured: 16, Built: 16}) {
		t.Errorf("targets %+v", inv.Targets)
	}
	if c := inv.TestCounts(); c != (TestCounts{Total: 9, Passed: 6, Flaky: 1, Failed: 1, TimedOut: 1}) {
		t.Errorf("test counts %+v", c)
	}
	checkTests(t, inv, map[string]testFigures{
		"//cc:greet_test":        {"PASSED", 1, 1, 1, 0, 124 * ms, []string{"1/1/1 PASSED"}},
		"//tests:junit_xml":      {"PASSED", 1, 1, 1, 0, 250 * ms, []string{"1/1/1 PASSED"}},
		"//tests:pass_a":         {"PASSED", 1, 1, 1, 0, 131 * ms, []string{"1/1/1 PASSED"}},
		"//tests:pass_b":         {"PASSED", 1, 1, 1, 0, 155 * ms, []string{"1/1/1 PASSED"}},
		"//tests:pass_with_data": {"PASSED", 1, 1, 1, 0, 163 * ms, []string{"1/1/1 PASSED"}},
		"//tests:sharded":        {"PASSED", 3, 3, 1, 0, 607 * ms, []string{"1/1/1 PASSED", "1/2/1 PASSED", "1/3/1 PASSED"}},
		"//tests:flaky":          {"FLAKY", 2, 1, 2, 0, 240 * ms, []string{"1/1/1 FAILED", "1/1/2 PASSED"}},
		"//tests:fail":           {"FAILED", 2, 1, 2, 0, 329 * ms, []string{"1/1/1 FAILED", "1/1/2 FAILED"}},
		"//tests:timeout":        {"TIMEOUT", 2, 1, 2, 0, 4221 * ms, []string{"1/1/1 TIMEOUT", "1/1/2 TIMEOUT"}},
	})
	const logs = "file:///var/cache/bazel-out/1aa29ad37f9221d087614c667b81dbd7/execroot/bep_corpus/bazel-out/k8-fastbuild/testlogs/"
	flaky := findTest(t, inv, "//tests:flaky")
	if r := flaky.Runs[0]; r.Strategy != "local" || r.Hostname != "vm" || r.Log != logs+"tests/flaky/test_attempts/attempt_1.log" || r.XML != logs+"tests/flaky/test_attempts/attempt_1.xml" {
		t.Errorf("flaky attempt 1: %+v", r)
	}
	if flaky.Failing() {
		t.Error("a flaky test counts as failing")
	}
	if got := findTest(t, inv, "//tests:sharded").Logs; !slices.Equal(got, []string{
		logs + "tests/sharded/shard_1_of_3/test.log", logs + "tests/sharded/shard_2_of_3/test.log", logs + "tests/sharded/shard_3_of_3/test.log",
	}) {
		t.Errorf("sharded logs %q", got)
	}
	if got := findTest(t, inv, "//tests:fail").Logs; !slices.Equal(got, []string{logs + "tests/fail/test.log"}) {
		t.Errorf("fail logs %q", got)
	}
	if !inv.TestsFailed() || !inv.BuildFailed() {
		t.Errorf("tests failed %v, build failed %v", inv.TestsFailed(), inv.BuildFailed())
	}
	checkFailures(t, inv, []string{
		"test testSummary //tests:fail FAILED 2 of 2 test attempts failed",
		"test testSummary //tests:timeout TIMEOUT 2 of 2 test attempts timed out",
	})
	if got := inv.Failures[0].Logs; !slices.Equal(got, []string{logs + "tests/fail/test_attempts/attempt_1.log", logs + "tests/fail/test.log"}) {
		t.Errorf("fail failure logs %q", got)
	}
	if got := inv.Failures[1].Logs; !slices.Equal(got, []string{logs + "tests/timeout/test_attempts/attempt_1.log", logs + "tests/timeout/test.log"}) {
		t.Errorf("timeout failure logs %q", got)
	}
	if f := inv.FirstFailure(); f == nil || f.Label != "//tests:fail" {
		t.Errorf("first failure %+v", f)
	}
}

func TestTestCached(t *testing.T) {
	inv := loadOne(t, "test_cached.bep")
	if inv.Result != "TESTS_FAILED" || inv.ExitCode != 3 {
		t.Errorf("result %q %d", inv.Result, inv.ExitCode)
	}
	if c := inv.TestCounts(); c != (TestCounts{Total: 9, Passed: 6, Flaky: 1, Failed: 1, TimedOut: 1, Cached: 7}) {
		t.Errorf("test counts %+v", c)
	}
	checkTests(t, inv, map[string]testFigures{
		"//cc:greet_test":        {"PASSED", 1, 1, 1, 1, 124 * ms, []string{"1/1/1 PASSED cached"}},
		"//tests:junit_xml":      {"PASSED", 1, 1, 1, 1, 250 * ms, []string{"1/1/1 PASSED cached"}},
		"//tests:pass_a":         {"PASSED", 1, 1, 1, 1, 131 * ms, []string{"1/1/1 PASSED cached"}},
		"//tests:pass_b":         {"PASSED", 1, 1, 1, 1, 155 * ms, []string{"1/1/1 PASSED cached"}},
		"//tests:pass_with_data": {"PASSED", 1, 1, 1, 1, 163 * ms, []string{"1/1/1 PASSED cached"}},
		"//tests:sharded":        {"PASSED", 3, 3, 1, 3, 607 * ms, []string{"1/1/1 PASSED cached", "1/2/1 PASSED cached", "1/3/1 PASSED cached"}},
		// One cached result with status FLAKY; the summary counts 2 runs, 1 cached.
		"//tests:flaky":   {"FLAKY", 2, 1, 1, 1, 117 * ms, []string{"1/1/1 FLAKY cached"}},
		"//tests:fail":    {"FAILED", 2, 1, 2, 0, 350 * ms, []string{"1/1/1 FAILED", "1/1/2 FAILED"}},
		"//tests:timeout": {"TIMEOUT", 2, 1, 2, 0, 4135 * ms, []string{"1/1/1 TIMEOUT", "1/1/2 TIMEOUT"}},
	})
	for _, r := range findTest(t, inv, "//tests:sharded").Runs {
		if !r.CachedLocally || r.CachedRemotely {
			t.Errorf("sharded %d: cached locally %v remotely %v", r.Shard, r.CachedLocally, r.CachedRemotely)
		}
	}
}

// checkFailures compares the failures, each as "kind event label reason
// message" (the message's first line).
func checkFailures(t *testing.T, inv *Invocation, want []string) {
	t.Helper()
	var got []string
	for _, f := range inv.Failures {
		msg, _, _ := strings.Cut(f.Message, "\n")
		got = append(got, strings.TrimSpace(strings.Join([]string{string(f.Kind), f.Event, f.Label, f.Reason, msg}, " ")))
	}
	if !slices.Equal(got, want) {
		t.Errorf("failures:\n got %q\nwant %q", got, want)
	}
}

func TestBuildKeepGoingFail(t *testing.T) {
	inv := loadOne(t, "build_keep_going_fail.bep")
	if inv.Command != "build" || inv.Result != "BUILD_FAILURE" || inv.ExitCode != 1 || inv.Interrupted {
		t.Errorf("command %q result %q %d", inv.Command, inv.Result, inv.ExitCode)
	}
	if inv.Targets != (Targets{Configured: 21, Built: 17, Failed: 3, Aborted: 1}) {
		t.Errorf("targets %+v", inv.Targets)
	}
	if len(inv.Tests) != 0 {
		t.Errorf("a build command has %d tests", len(inv.Tests))
	}
	const bashFailed = "bash failed: error executing command /bin/bash -c 'source external/bazel_tools/tools/genrule/genrule-setup.sh; echo '\\''genrule about to fail'\\'' >&2; exit 1'"
	checkFailures(t, inv, []string{
		"aborted configuredLabel //no/such/package:file.txt ANALYSIS_FAILURE no such package 'no/such/package': BUILD file not found in any of the following directories. Add a BUILD file to a directory to mark it as a package.",
		"aborted targetCompleted //broken:bad_dep ANALYSIS_FAILURE",
		"action actionCompleted //broken:fails_to_build NON_ZERO_EXIT " + bashFailed,
		"target targetCompleted //broken:fails_to_build NON_ZERO_EXIT " + bashFailed,
		"target targetCompleted //broken:depends_on_failure NON_ZERO_EXIT " + bashFailed,
		"aborted unconfiguredLabel //broken:does_not_exist.txt UNKNOWN",
		"target targetCompleted //broken:missing_input SOURCE_INPUT_MISSING missing input file '//broken:does_not_exist.txt'",
	})
	act := inv.Failures[2]
	if act.ActionType != "Genrule" || act.ExitCode == nil || *act.ExitCode != 1 || act.Stdout != "" ||
		act.Stderr != "file:///var/cache/bazel-out/1aa29ad37f9221d087614c667b81dbd7/execroot/bep_corpus/bazel-out/_tmp/actions/stderr-3" {
		t.Errorf("failed action %+v", act)
	}
	if got := inv.Failures[4].RootCauses; !slices.Equal(got, []string{"//broken:fails_to_build"}) {
		t.Errorf("depends_on_failure root causes %q", got)
	}
	if got := inv.Failures[6].RootCauses; !slices.Equal(got, []string{"//broken:does_not_exist.txt"}) {
		t.Errorf("missing_input root causes %q", got)
	}
	if !strings.HasSuffix(inv.Failures[0].Message, "\n - /src/ws_small/no/such/package") {
		t.Errorf("description %q", inv.Failures[0].Message)
	}
	if !inv.BuildFailed() || inv.TestsFailed() {
		t.Errorf("build failed %v, tests failed %v", inv.BuildFailed(), inv.TestsFailed())
	}
	var fine []string
	for _, a := range inv.Artifacts {
		if strings.HasPrefix(a.Label, "//broken:") {
			fine = append(fine, a.Label+" "+a.Name)
		}
	}
	if !slices.Equal(fine, []string{"//broken:builds_fine broken/fine.txt"}) {
		t.Errorf("artifacts of //broken: %q", fine)
	}
	if len(inv.Artifacts) != 33 {
		t.Errorf("%d artifacts, want 33", len(inv.Artifacts))
	}
}

func TestArtifacts(t *testing.T) {
	inv := loadOne(t, "build_ok.bep")
	important := 0
	for _, a := range inv.Artifacts {
		if a.Important {
			important++
		}
		if a.Group != "default" || a.Length != 0 || a.Digest != "" {
			t.Errorf("artifact %+v", a)
		}
	}
	if len(inv.Artifacts) != 32 || important != 23 {
		t.Errorf("%d artifacts, %d important; want 32 and 23", len(inv.Artifacts), important)
	}
	const bin = "file:///var/cache/bazel-out/1aa29ad37f9221d087614c667b81dbd7/execroot/bep_corpus/bazel-out/k8-fastbuild/bin/"
	var got []string
	for _, a := range inv.Artifacts {
		if a.Label == "//gen:all_generated" || a.Label == "//tests:fail" {
			s := a.Label + " " + a.Name + " " + strings.TrimPrefix(a.URI, bin)
			if a.Important {
				s += " important"
			}
			if a.Label == "//tests:fail" && a.Name == "tests/fail" && !slices.Equal(a.PathPrefix, []string{"bazel-out", "k8-fastbuild", "bin"}) {
				t.Errorf("path prefix %q", a.PathPrefix)
			}
			got = append(got, s)
		}
	}
	// //gen:all_generated is named set 3 (two files) including set 4
	// (three more).
	want := []string{
		"//gen:all_generated gen/hello.txt gen/hello.txt important",
		"//gen:all_generated gen/hello_upper.txt gen/hello_upper.txt important",
		"//gen:all_generated gen/multi_a.txt gen/multi_a.txt important",
		"//gen:all_generated gen/multi_b.txt gen/multi_b.txt important",
		"//gen:all_generated gen/sub/multi_c.txt gen/sub/multi_c.txt important",
		"//tests:fail tests/fail.sh file:///src/ws_small/tests/fail.sh",
		"//tests:fail tests/fail tests/fail important",
	}
	if !slices.Equal(got, want) {
		t.Errorf("artifacts:\n got %q\nwant %q", got, want)
	}
	if inv.BuildFailed() || inv.TestsFailed() || len(inv.Failures) != 0 || inv.Targets != (Targets{Configured: 16, Built: 16}) {
		t.Errorf("build_ok: failures %v targets %+v", inv.Failures, inv.Targets)
	}
}

// TestBESCapture checks that a stream received over BES (OrderedBuildEvents)
// gives the same figures as Bazel's own file, and that its lifecycle
// stream carries no Bazel event.
func TestBESCapture(t *testing.T) {
	inv := loadOne(t, "bes_test_mixed.obe")
	if inv.BuildID == inv.InvocationID || inv.InvocationID != "8b58a6b7-1857-43e5-b701-ebbabc33fc5c" || inv.BazelEvents != 105 || !inv.Complete {
		t.Errorf("build %s invocation %s events %d complete %v", inv.BuildID, inv.InvocationID, inv.BazelEvents, inv.Complete)
	}
	if c := inv.TestCounts(); c != (TestCounts{Total: 9, Passed: 6, Flaky: 1, Failed: 1, TimedOut: 1}) {
		t.Errorf("test counts %+v", c)
	}
	if s := findTest(t, inv, "//tests:sharded"); s.Shards != 3 || s.TotalRuns != 3 {
		t.Errorf("sharded: %d shards, %d runs", s.Shards, s.TotalRuns)
	}
	for _, lc := range load(t, "bes_test_mixed.lifecycle.obe") {
		if lc.BazelEvents != 0 || len(lc.Tests) != 0 {
			t.Errorf("lifecycle stream %s: %d Bazel events", lc.StreamKey, lc.BazelEvents)
		}
	}
}

func TestQueryHasNoTargets(t *testing.T) {
	inv := loadOne(t, "query.bep")
	if inv.Command != "query" || inv.Result != "SUCCESS" || inv.ExitCode != 0 || inv.Targets != (Targets{}) ||
		len(inv.Tests) != 0 || len(inv.Artifacts) != 0 || len(inv.Failures) != 0 || inv.BuildFailed() {
		t.Errorf("query: %+v", inv)
	}
}

func TestTruncated(t *testing.T) {
	r, err := bepfile.Open(filepath.Join("..", "..", "testdata", "truncated-test_mixed.bep"), bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var b *Builder
	for {
		s, ev, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("want a truncation, got %v", err)
			}
			break
		}
		if b == nil {
			b = NewBuilder(s)
		}
		if err := b.Add(ev); err != nil {
			t.Fatal(err)
		}
	}
	inv := b.Invocation()
	if inv.Complete || inv.HasExitCode || inv.BazelEvents != 62 || inv.Command != "test" {
		t.Errorf("complete %v, exit code %v, %d events, command %q", inv.Complete, inv.HasExitCode, inv.BazelEvents, inv.Command)
	}
	if v := inv.Verdict(); v != VerdictDidNotFinish {
		t.Errorf("verdict of a stream cut before BuildFinished: %s, want %s (issue 10: it never passes)", v, VerdictDidNotFinish)
	}
}

// synthetic builds a stream from Bazel events made here. The corpus has no
// interrupted run (its manifest lists test_interrupted in the order of
// commands, but no such file was kept), so this one is made by hand, in the
// shape Bazel gives one: the announced test summary is aborted with
// USER_INTERRUPTED and the build finishes INTERRUPTED.
func synthetic(t *testing.T, events ...*bes.BuildEvent) *memStream {
	t.Helper()
	id := &buildpb.StreamId{BuildId: "b", InvocationId: "inv", Component: buildpb.StreamId_TOOL}
	st := newMemStream(bepfile.NewStream(id))
	for i, be := range events {
		b, err := proto.Marshal(be)
		if err != nil {
			t.Fatal(err)
		}
		st.Append(bepfile.Event{Seq: int64(i + 1), Payload: b})
	}
	return st
}

func TestInterrupted(t *testing.T) {
	const label = "//slow:long"
	cfg := &bes.BuildEventId_ConfigurationId{Id: "k8"}
	summaryID := &bes.BuildEventId{Id: &bes.BuildEventId_TestSummary{TestSummary: &bes.BuildEventId_TestSummaryId{Label: label, Configuration: cfg}}}
	st := synthetic(t,
		&bes.BuildEvent{
			Id:      &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}},
			Payload: &bes.BuildEvent_Started{Started: &bes.BuildStarted{Uuid: "inv", Command: "test", StartTime: timestamppb.New(time.UnixMilli(1000))}},
		},
		&bes.BuildEvent{
			Id:      &bes.BuildEventId{Id: &bes.BuildEventId_TargetConfigured{TargetConfigured: &bes.BuildEventId_TargetConfiguredId{Label: label}}},
			Payload: &bes.BuildEvent_Configured{Configured: &bes.TargetConfigured{TargetKind: "sh_test rule", TestSize: bes.TestSize_LARGE}},
		},
		&bes.BuildEvent{
			Id:       &bes.BuildEventId{Id: &bes.BuildEventId_TargetCompleted{TargetCompleted: &bes.BuildEventId_TargetCompletedId{Label: label, Configuration: cfg}}},
			Children: []*bes.BuildEventId{summaryID},
			Payload:  &bes.BuildEvent_Completed{Completed: &bes.TargetComplete{Success: true}},
		},
		&bes.BuildEvent{
			Id:      summaryID,
			Payload: &bes.BuildEvent_Aborted{Aborted: &bes.Aborted{Reason: bes.Aborted_USER_INTERRUPTED, Description: "build interrupted"}},
		},
		&bes.BuildEvent{
			Id:          &bes.BuildEventId{Id: &bes.BuildEventId_BuildFinished{BuildFinished: &bes.BuildEventId_BuildFinishedId{}}},
			Payload:     &bes.BuildEvent_Finished{Finished: &bes.BuildFinished{ExitCode: &bes.BuildFinished_ExitCode{Name: "INTERRUPTED", Code: 8}, FinishTime: timestamppb.New(time.UnixMilli(3500))}},
			LastMessage: true,
		},
	)
	inv, err := Build(st.Info(), st.Query(context.Background(), nil), Wants{Artifacts: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !inv.Interrupted || inv.Result != "INTERRUPTED" || inv.ExitCode != 8 || inv.Duration() != 2500*ms || !inv.Complete {
		t.Errorf("interrupted %v result %q %d duration %v", inv.Interrupted, inv.Result, inv.ExitCode, inv.Duration())
	}
	x := findTest(t, inv, label)
	if x.Status != StatusNoStatus || x.Aborted == nil || x.Aborted.Reason != "USER_INTERRUPTED" || x.Aborted.Description != "build interrupted" || !x.Failing() {
		t.Errorf("aborted test %+v, aborted %+v", x, x.Aborted)
	}
	if c := inv.TestCounts(); c != (TestCounts{Total: 1, NoStatus: 1, Aborted: 1}) {
		t.Errorf("test counts %+v", c)
	}
	if !inv.TestsFailed() || !inv.BuildFailed() {
		t.Errorf("tests failed %v build failed %v", inv.TestsFailed(), inv.BuildFailed())
	}
	checkFailures(t, inv, []string{"aborted testSummary //slow:long USER_INTERRUPTED build interrupted"})
}

// TestAbortedTargetMarksTest: a test target whose completion was aborted
// (never built) is a test with no status, marked aborted.
func TestAbortedTargetMarksTest(t *testing.T) {
	const label = "//t:never"
	st := synthetic(t,
		&bes.BuildEvent{
			Id:      &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}},
			Payload: &bes.BuildEvent_Started{Started: &bes.BuildStarted{Command: "test"}},
		},
		&bes.BuildEvent{
			Id:      &bes.BuildEventId{Id: &bes.BuildEventId_TargetConfigured{TargetConfigured: &bes.BuildEventId_TargetConfiguredId{Label: label}}},
			Payload: &bes.BuildEvent_Configured{Configured: &bes.TargetConfigured{TargetKind: "sh_test rule", TestSize: bes.TestSize_SMALL}},
		},
		&bes.BuildEvent{
			Id:      &bes.BuildEventId{Id: &bes.BuildEventId_TargetCompleted{TargetCompleted: &bes.BuildEventId_TargetCompletedId{Label: label}}},
			Payload: &bes.BuildEvent_Aborted{Aborted: &bes.Aborted{Reason: bes.Aborted_USER_INTERRUPTED}},
		},
	)
	inv, err := Build(st.Info(), st.Query(context.Background(), nil), Wants{Artifacts: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	x := findTest(t, inv, label)
	if x.Aborted == nil || x.Aborted.Reason != "USER_INTERRUPTED" || !x.Failing() || inv.Targets.Aborted != 1 || !inv.Interrupted {
		t.Errorf("test %+v, targets %+v", x, inv.Targets)
	}
	if inv.Complete {
		t.Error("complete without a last message")
	}
}

// TestRawEvent: an event kept whole (an OrderedBuildEvent bes would not
// re-encode identically) is read through its bazel_event Any, and events
// without one are skipped.
func TestRawEvent(t *testing.T) {
	be := &bes.BuildEvent{
		Id:      &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}},
		Payload: &bes.BuildEvent_Started{Started: &bes.BuildStarted{Uuid: "u", Command: "build"}},
	}
	a, err := anypb.New(be)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := proto.Marshal(&buildpb.OrderedBuildEvent{SequenceNumber: 1, Event: &buildpb.BuildEvent{Event: &buildpb.BuildEvent_BazelEvent{BazelEvent: a}}})
	if err != nil {
		t.Fatal(err)
	}
	finished, err := proto.Marshal(&buildpb.OrderedBuildEvent{SequenceNumber: 2, Event: &buildpb.BuildEvent{Event: &buildpb.BuildEvent_ComponentStreamFinished{
		ComponentStreamFinished: &buildpb.BuildEvent_BuildComponentStreamFinished{Type: buildpb.BuildEvent_BuildComponentStreamFinished_FINISHED}}}})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBuilder(nil)
	for _, ev := range []bepfile.Event{{Seq: 1, Raw: raw}, {Seq: 2, Raw: finished}} {
		if err := b.Add(&ev); err != nil {
			t.Fatal(err)
		}
	}
	inv := b.Invocation()
	if inv.BazelEvents != 1 || inv.Command != "build" || inv.InvocationID != "u" {
		t.Errorf("%d Bazel events, command %q, invocation %q", inv.BazelEvents, inv.Command, inv.InvocationID)
	}
}

func TestMalformedEvent(t *testing.T) {
	b := NewBuilder(nil)
	// A started payload (field 5) holding a truncated string field.
	err := b.Add(&bepfile.Event{Seq: 7, Payload: []byte{0x2a, 0x02, 0x0a, 0x05}})
	if err == nil || !strings.Contains(err.Error(), "event 7") {
		t.Errorf("err = %v, want an error naming event 7", err)
	}
}
