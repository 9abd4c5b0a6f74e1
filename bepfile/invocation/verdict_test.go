package invocation

//lint:file-ignore SA1019 The events are made as Bazel 4.2 writes them, with the *_millis times the current schema deprecates.

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/bep/failuredetails"
)

// The verdicts of issue 10, on streams written here event by event: each
// case is built twice, through the fast path and through a full decode of
// every event, and both must agree.

func started(command string) *bes.BuildEvent {
	return &bes.BuildEvent{
		Id:      &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}},
		Payload: &bes.BuildEvent_Started{Started: &bes.BuildStarted{Uuid: "inv-1", Command: command, StartTimeMillis: 1700000000000}},
	}
}

func finished(name string, code int32) *bes.BuildEvent {
	return &bes.BuildEvent{
		Id: &bes.BuildEventId{Id: &bes.BuildEventId_BuildFinished{BuildFinished: &bes.BuildEventId_BuildFinishedId{}}},
		Payload: &bes.BuildEvent_Finished{Finished: &bes.BuildFinished{
			ExitCode: &bes.BuildFinished_ExitCode{Name: name, Code: code}, FinishTimeMillis: 1700000001000,
		}},
	}
}

func lastMessage(e *bes.BuildEvent) *bes.BuildEvent { e.LastMessage = true; return e }

func progress(stderr string) *bes.BuildEvent {
	return &bes.BuildEvent{
		Id:      &bes.BuildEventId{Id: &bes.BuildEventId_Progress{Progress: &bes.BuildEventId_ProgressId{}}},
		Payload: &bes.BuildEvent_Progress{Progress: &bes.Progress{Stderr: stderr}},
	}
}

func configured(label, kind string) *bes.BuildEvent {
	return &bes.BuildEvent{
		Id:      &bes.BuildEventId{Id: &bes.BuildEventId_TargetConfigured{TargetConfigured: &bes.BuildEventId_TargetConfiguredId{Label: label}}},
		Payload: &bes.BuildEvent_Configured{Configured: &bes.TargetConfigured{TargetKind: kind}},
	}
}

func completedID(label string) *bes.BuildEventId {
	return &bes.BuildEventId{Id: &bes.BuildEventId_TargetCompleted{TargetCompleted: &bes.BuildEventId_TargetCompletedId{
		Label: label, Configuration: &bes.BuildEventId_ConfigurationId{Id: "cfg"},
	}}}
}

func completed(label string, ok bool) *bes.BuildEvent {
	return &bes.BuildEvent{Id: completedID(label), Payload: &bes.BuildEvent_Completed{Completed: &bes.TargetComplete{Success: ok}}}
}

func abortedEvent(id *bes.BuildEventId, reason bes.Aborted_AbortReason) *bes.BuildEvent {
	return &bes.BuildEvent{Id: id, Payload: &bes.BuildEvent_Aborted{Aborted: &bes.Aborted{Reason: reason, Description: "aborted here"}}}
}

func result(label string, run, shard, attempt int32, status bes.TestStatus) *bes.BuildEvent {
	return &bes.BuildEvent{
		Id: &bes.BuildEventId{Id: &bes.BuildEventId_TestResult{TestResult: &bes.BuildEventId_TestResultId{
			Label: label, Run: run, Shard: shard, Attempt: attempt, Configuration: &bes.BuildEventId_ConfigurationId{Id: "cfg"},
		}}},
		Payload: &bes.BuildEvent_TestResult{TestResult: &bes.TestResult{Status: status, TestAttemptDurationMillis: 10}},
	}
}

func summary(label string, status bes.TestStatus) *bes.BuildEvent {
	return &bes.BuildEvent{
		Id: &bes.BuildEventId{Id: &bes.BuildEventId_TestSummary{TestSummary: &bes.BuildEventId_TestSummaryId{
			Label: label, Configuration: &bes.BuildEventId_ConfigurationId{Id: "cfg"},
		}}},
		Payload: &bes.BuildEvent_TestSummary{TestSummary: &bes.TestSummary{OverallStatus: status}},
	}
}

// build folds events into an invocation, through the fast path (full
// false) or a full decode.
func build(t *testing.T, full bool, events ...*bes.BuildEvent) *Invocation {
	t.Helper()
	b := NewBuilder(nil)
	b.full = full
	for i, e := range events {
		payload, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Add(&bepfile.Event{Seq: int64(i + 1), Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	return b.Invocation()
}

func both(t *testing.T, check func(t *testing.T, inv *Invocation), events ...*bes.BuildEvent) {
	t.Helper()
	for _, full := range []bool{false, true} {
		name := "fast"
		if full {
			name = "full"
		}
		t.Run(name, func(t *testing.T) { check(t, build(t, full, events...)) })
	}
}

func wantVerdict(t *testing.T, inv *Invocation, want Verdict) {
	t.Helper()
	if got := inv.Verdict(); got != want {
		t.Errorf("verdict %s, want %s", got, want)
	}
}

func TestVerdictKilledMidBuild(t *testing.T) {
	// Bazel killed after a test passed and while another ran: no
	// BuildFinished, no last message.
	both(t, func(t *testing.T, inv *Invocation) {
		wantVerdict(t, inv, VerdictDidNotFinish)
		if inv.Finished || inv.Complete {
			t.Errorf("finished %v complete %v", inv.Finished, inv.Complete)
		}
		slow := findTest(t, inv, "//t:slow")
		if !slow.DidNotReport || !slow.Failing() || slow.Status != StatusNoStatus {
			t.Errorf("//t:slow: status %s, did not report %v, failing %v", slow.Status, slow.DidNotReport, slow.Failing())
		}
		if c := inv.TestCounts(); c.DidNotReport != 2 || c.Total != 2 {
			t.Errorf("counts %+v, want 2 tests, 2 that did not report", c)
		}
		last := inv.Failures[len(inv.Failures)-1]
		if last.Kind != KindDidNotFinish || !strings.Contains(last.Message, "2 test(s) never reported") {
			t.Errorf("last failure %+v", last)
		}
	},
		started("test"),
		configured("//t:fast", "sh_test rule"), configured("//t:slow", "sh_test rule"),
		completed("//t:fast", true),
		result("//t:fast", 1, 1, 1, bes.TestStatus_PASSED),
		completed("//t:slow", true),
	)
}

func TestVerdictRefusedCommand(t *testing.T) {
	// An unknown option: Bazel ends the stream properly, without
	// BuildFinished, and says why on its console.
	both(t, func(t *testing.T, inv *Invocation) {
		wantVerdict(t, inv, VerdictBuildFailed)
		if len(inv.Failures) != 1 {
			t.Fatalf("failures %+v", inv.Failures)
		}
		f := inv.Failures[0]
		if f.Kind != KindBuild || f.Reason != "NO_BUILD_FINISHED" || f.Message != "ERROR: Unrecognized option: --frobnicate" {
			t.Errorf("failure %+v", f)
		}
		if !slices.Equal(f.Console, []string{"ERROR: Unrecognized option: --frobnicate"}) {
			t.Errorf("console %q", f.Console)
		}
	},
		started("build"),
		progress("INFO: Invocation ID: inv-1\n\x1b[31m\x1b[1mERROR: \x1b[0mUnrecognized option: --frobnicate\n"),
		lastMessage(progress("")),
	)
}

func TestVerdictFollowsExitCode(t *testing.T) {
	// A stray aborted event after a successful build
	// (bazelbuild/bazel#13142) is listed but does not fail the gate.
	both(t, func(t *testing.T, inv *Invocation) {
		wantVerdict(t, inv, VerdictPassed)
		if len(inv.Failures) != 1 || inv.Failures[0].Kind != KindAborted {
			t.Errorf("failures %+v, want the stray abort", inv.Failures)
		}
	},
		started("build"),
		configured("//a:a", "genrule rule"),
		completed("//a:a", true),
		finished("SUCCESS", 0),
		lastMessage(abortedEvent(&bes.BuildEventId{Id: &bes.BuildEventId_BuildMetrics{BuildMetrics: &bes.BuildEventId_BuildMetricsId{}}}, bes.Aborted_INTERNAL)),
	)
	// A Bazel before exit_code: overall_success only.
	old := finished("", 0)
	old.GetFinished().ExitCode = nil
	both(t, func(t *testing.T, inv *Invocation) { wantVerdict(t, inv, VerdictBuildFailed) }, started("build"), lastMessage(old))
}

func TestTargetAbortedThenCompleted(t *testing.T) {
	// bazelbuild/bazel#21767: aborted, then completed; counted once, the
	// last state winning.
	both(t, func(t *testing.T, inv *Invocation) {
		if inv.Targets != (Targets{Configured: 1, Built: 1}) {
			t.Errorf("targets %+v, want 1 configured, 1 built", inv.Targets)
		}
		if len(inv.Failures) != 0 {
			t.Errorf("failures %+v, want none", inv.Failures)
		}
		wantVerdict(t, inv, VerdictPassed)
	},
		started("build"),
		configured("//a:a", "genrule rule"),
		abortedEvent(completedID("//a:a"), bes.Aborted_INTERNAL),
		completed("//a:a", true),
		lastMessage(finished("SUCCESS", 0)),
	)
}

func TestTestFailedToBuild(t *testing.T) {
	both(t, func(t *testing.T, inv *Invocation) {
		x := findTest(t, inv, "//t:broken")
		if x.Status != StatusFailedToBuild || !x.Failing() {
			t.Errorf("status %s failing %v, want FAILED_TO_BUILD", x.Status, x.Failing())
		}
		if c := inv.TestCounts(); c.FailedToBuild != 1 || c.NoStatus != 0 {
			t.Errorf("counts %+v", c)
		}
		// Bazel's exit code says BUILD_FAILURE: the build failed, not a test.
		wantVerdict(t, inv, VerdictBuildFailed)
	},
		started("test"),
		configured("//t:broken", "sh_test rule"),
		completed("//t:broken", false),
		lastMessage(finished("BUILD_FAILURE", 1)),
	)
}

func TestSummaryWithoutOverallStatus(t *testing.T) {
	// bazelbuild/bazel#10919: --runs_per_test gives summaries without
	// overall_status; the status follows from the runs.
	for _, c := range []struct {
		name string
		runs []*bes.BuildEvent
		want string
	}{
		{"all runs failed", []*bes.BuildEvent{
			result("//t:t", 1, 1, 1, bes.TestStatus_FAILED), result("//t:t", 2, 1, 1, bes.TestStatus_FAILED)}, StatusFailed},
		{"one run timed out", []*bes.BuildEvent{
			result("//t:t", 1, 1, 1, bes.TestStatus_PASSED), result("//t:t", 2, 1, 1, bes.TestStatus_TIMEOUT)}, StatusTimeout},
		{"passed on a retry", []*bes.BuildEvent{
			result("//t:t", 1, 1, 1, bes.TestStatus_FAILED), result("//t:t", 1, 1, 2, bes.TestStatus_PASSED)}, StatusFlaky},
		{"all passed", []*bes.BuildEvent{
			result("//t:t", 1, 1, 1, bes.TestStatus_PASSED), result("//t:t", 2, 1, 1, bes.TestStatus_PASSED)}, StatusPassed},
	} {
		t.Run(c.name, func(t *testing.T) {
			events := append([]*bes.BuildEvent{started("test"), configured("//t:t", "sh_test rule")}, c.runs...)
			events = append(events, summary("//t:t", bes.TestStatus_NO_STATUS), lastMessage(finished("TESTS_FAILED", 3)))
			both(t, func(t *testing.T, inv *Invocation) {
				if got := findTest(t, inv, "//t:t").Status; got != c.want {
					t.Errorf("status %s, want %s", got, c.want)
				}
			}, events...)
		})
	}
}

func TestUnknownTestStatusFails(t *testing.T) {
	// A status a newer Bazel added (99 here): not understood, so failing.
	both(t, func(t *testing.T, inv *Invocation) {
		x := findTest(t, inv, "//t:t")
		if x.Status != "99" || !x.Failing() {
			t.Errorf("status %q failing %v", x.Status, x.Failing())
		}
		if c := inv.TestCounts(); c.Unknown != 1 {
			t.Errorf("counts %+v, want 1 unknown", c)
		}
		var paths []string
		for _, u := range inv.Unknown {
			paths = append(paths, u.Path+"="+u.Value)
		}
		if !slices.Equal(paths, []string{"testResult.status=99", "testSummary.overallStatus=99"}) {
			t.Errorf("unknown values noted: %q", paths)
		}
		wantVerdict(t, inv, VerdictTestsFailed)
	},
		started("test"), configured("//t:t", "sh_test rule"),
		result("//t:t", 1, 1, 1, bes.TestStatus(99)), summary("//t:t", bes.TestStatus(99)),
		lastMessage(finished("TESTS_FAILED", 3)),
	)
}

func TestActionFailureInWords(t *testing.T) {
	action := &bes.BuildEvent{
		Id: &bes.BuildEventId{Id: &bes.BuildEventId_ActionCompleted{ActionCompleted: &bes.BuildEventId_ActionCompletedId{
			PrimaryOutput: "bazel-out/k8-fastbuild/bin/pkg/out.txt", Label: "//pkg:gen",
		}}},
		Payload: &bes.BuildEvent_Action{Action: &bes.ActionExecuted{
			Success: false, Type: "Genrule", ExitCode: 1,
			FailureDetail: &failuredetails.FailureDetail{
				Message:  "genrule failed",
				Category: &failuredetails.FailureDetail_Spawn{Spawn: &failuredetails.Spawn{Code: failuredetails.Spawn_NON_ZERO_EXIT, SpawnExitCode: 42}},
			},
		}},
	}
	both(t, func(t *testing.T, inv *Invocation) {
		wantVerdict(t, inv, VerdictBuildFailed)
		var f *Failure
		for _, x := range inv.Failures {
			if x.Kind == KindAction {
				f = x
			}
		}
		if f == nil || f.ExitCode == nil || *f.ExitCode != 42 {
			t.Fatalf("action failure %+v, want exit code 42 (spawn_exit_code)", f)
		}
		want := "ERROR: /ws/pkg/BUILD:3:8: Executing genrule //pkg:gen failed: (Exit 42)\nthe tool's own words"
		if !slices.Equal(f.Console, []string{want}) {
			t.Errorf("console %q, want %q", f.Console, want)
		}
		if len(inv.Errors) != 2 {
			t.Errorf("errors %q", inv.Errors)
		}
		// The other ERROR message names no failure: the build's.
		bf := inv.Failures[len(inv.Failures)-1]
		if bf.Kind != KindBuild || !slices.Equal(bf.Console, []string{"ERROR: Build did NOT complete successfully"}) {
			t.Errorf("build failure %+v", bf)
		}
	},
		started("build"),
		configured("//pkg:gen", "genrule rule"),
		// One line of the action's output is split across two events.
		progress("[1 / 2] Executing genrule //pkg:gen\nERROR: /ws/pkg/BUILD:3:8: Executing genrule //pkg:gen failed: (Exit 42)\n\nUse --sandbox_debug to see verbose messages from the sandbox\nthe tool's "),
		progress("own words\nINFO: Elapsed time: 0.7s\nERROR: Build did NOT complete successfully\n"),
		action,
		completed("//pkg:gen", false),
		lastMessage(&bes.BuildEvent{
			Id: &bes.BuildEventId{Id: &bes.BuildEventId_BuildFinished{BuildFinished: &bes.BuildEventId_BuildFinishedId{}}},
			Payload: &bes.BuildEvent_Finished{Finished: &bes.BuildFinished{
				ExitCode:      &bes.BuildFinished_ExitCode{Name: "BUILD_FAILURE", Code: 1},
				FailureDetail: &failuredetails.FailureDetail{Message: "Build did NOT complete successfully"},
			}},
		}),
	)
}

func TestSummaryFailedLogs(t *testing.T) {
	// test_cached: //tests:flaky is one cached FLAKY result; its summary
	// names the failed attempt's log.
	x := findTest(t, loadOne(t, "test_cached.bep"), "//tests:flaky")
	if len(x.FailedLogs) != 1 || !strings.HasSuffix(x.FailedLogs[0], "/testlogs/tests/flaky/test_attempts/attempt_1.log") {
		t.Errorf("failed logs %q", x.FailedLogs)
	}
}

// TestSummaryLogsWithoutResults: a test whose results name no test.log
// for it (a TestResult without an id, as in Bazel's CI files) gets its
// summary's failed, then passed URIs as its Logs; one whose results name
// logs keeps those.
func TestSummaryLogsWithoutResults(t *testing.T) {
	sum := summary("//t:bare", bes.TestStatus_FLAKY)
	sum.GetTestSummary().Failed = []*bes.File{{File: &bes.File_Uri{Uri: "file:///t/attempt_1.log"}}}
	sum.GetTestSummary().Passed = []*bes.File{{File: &bes.File_Uri{Uri: "file:///t/test.log"}}}
	withLog := result("//t:logged", 1, 1, 1, bes.TestStatus_FAILED)
	withLog.GetTestResult().TestActionOutput = []*bes.File{{Name: "test.log", File: &bes.File_Uri{Uri: "file:///logged/test.log"}}}
	logged := summary("//t:logged", bes.TestStatus_FAILED)
	logged.GetTestSummary().Failed = []*bes.File{{File: &bes.File_Uri{Uri: "file:///elsewhere.log"}}}
	both(t, func(t *testing.T, inv *Invocation) {
		if x := findTest(t, inv, "//t:bare"); !slices.Equal(x.Logs, []string{"file:///t/attempt_1.log", "file:///t/test.log"}) {
			t.Errorf("//t:bare: logs %q", x.Logs)
		}
		if x := findTest(t, inv, "//t:logged"); !slices.Equal(x.Logs, []string{"file:///logged/test.log"}) {
			t.Errorf("//t:logged: logs %q", x.Logs)
		}
	},
		started("test"), configured("//t:bare", "sh_test rule"), configured("//t:logged", "sh_test rule"),
		sum, withLog, logged, finished("TESTS_FAILED", 3),
	)
}

func TestKilledAfterAFailedAttempt(t *testing.T) {
	// Killed while //t:bad was being retried: its failed attempt shows,
	// and failures lists it, though it never reported.
	both(t, func(t *testing.T, inv *Invocation) {
		wantVerdict(t, inv, VerdictDidNotFinish)
		x := findTest(t, inv, "//t:bad")
		if x.Status != StatusFailed || !x.DidNotReport {
			t.Errorf("//t:bad: status %s, did not report %v; want FAILED, true", x.Status, x.DidNotReport)
		}
		if ok := findTest(t, inv, "//t:ok"); ok.Status != StatusNoStatus || !ok.DidNotReport {
			t.Errorf("//t:ok: status %s, did not report %v; want NO_STATUS, true", ok.Status, ok.DidNotReport)
		}
		var kinds []string
		for _, f := range inv.Failures {
			kinds = append(kinds, string(f.Kind)+" "+f.Label)
		}
		if !slices.Equal(kinds, []string{"test //t:bad", "did_not_finish "}) {
			t.Errorf("failures %q", kinds)
		}
	},
		started("test"),
		configured("//t:bad", "sh_test rule"), configured("//t:ok", "sh_test rule"),
		result("//t:bad", 1, 1, 1, bes.TestStatus_FAILED),
		result("//t:ok", 1, 1, 1, bes.TestStatus_PASSED),
	)
}
