// Package invocation builds, from the events of one stream, a model of the
// Bazel invocation they describe: its command and result, the targets that
// were configured, built, failed or aborted, the tests with every run, shard
// and attempt, the failures with their reasons, and the output files of each
// target. It holds data only; rendering is the caller's business.
package invocation

import (
	"slices"
	"time"

	"github.com/bes-cli/bes/bepfile"
)

// Invocation is what one stream says about one Bazel invocation.
type Invocation struct {
	StreamKey    string // the stream's key, "<build_id>.<component>.<invocation_id>"
	BuildID      string
	InvocationID string // BuildStarted.uuid, or the stream id's invocation id

	// BazelEvents counts the Bazel build events of the stream. A stream
	// without any (a lifecycle stream) has nothing to report.
	BazelEvents int
	// Complete is set when the stream holds Bazel's last message
	// (BuildEvent.last_message): Bazel ended the stream itself.
	Complete bool
	// Finished is set when the stream holds a BuildFinished event. Without
	// it, Bazel either refused the command before building (Complete: an
	// unknown option, a crash) or was stopped before the end (not
	// Complete: killed, out of memory, a CI timeout, a file cut short).
	Finished bool

	// Damaged lists the events the Builder could not fully decode (one
	// line each: sequence number and cause), by bepfile.DecodeBuildEvent's
	// rule; every other event, and what could be decoded of these, was
	// used.
	Damaged []string
	// Unknown lists, once per field, the fields and enum values of the
	// events the model read that bes's schema does not know (a newer
	// Bazel's). A TestStatus without a name counts as failing.
	Unknown []bepfile.Unknown

	Command  string   // BuildStarted.command: "build", "test", …
	Patterns []string // the target patterns of the PatternExpanded events
	Start    time.Time
	Finish   time.Time

	// User and Host are the workspace status items BUILD_USER and
	// BUILD_HOST that Bazel always writes (WorkspaceStatus.item, from
	// --workspace_status_command's defaults): who ran Bazel, on which
	// machine ("root", "vm"); "" when the stream has no WorkspaceStatus.
	User, Host string
	// Commit and Branch are the source revision and branch the build says
	// it built, "" when it does not say: the BuildMetadata entries
	// COMMIT_SHA and BRANCH_NAME (Bazel's --build_metadata, the keys CI
	// integrations set), else the workspace status items of a
	// --workspace_status_command: STABLE_GIT_COMMIT or BUILD_SCM_REVISION,
	// and STABLE_GIT_BRANCH or BUILD_SCM_BRANCH.
	Commit, Branch string

	// WorkspaceDirectory is BuildStarted.workspace_directory and ExecRoot
	// WorkspaceConfig.local_exec_root: absolute paths on the machine that
	// ran Bazel ("/src/ws", "<output_base>/execroot/<name>"), "" when the
	// stream does not say. Markdown shows file:// URIs relative to them.
	WorkspaceDirectory, ExecRoot string

	// Result is BuildFinished.exit_code.name ("SUCCESS", "TESTS_FAILED",
	// …) and ExitCode its code; HasExitCode says whether the stream has a
	// BuildFinished event with an exit code or, from Bazels before
	// exit_code, overall_success (then Result is "SUCCESS" or "FAILURE"
	// and ExitCode 0 or 1).
	Result      string
	ExitCode    int32
	HasExitCode bool

	// Interrupted is set when Bazel's exit code is INTERRUPTED or an event
	// was aborted with reason USER_INTERRUPTED.
	Interrupted bool

	Targets Targets

	// TargetList holds every target of the stream (aspects left out) in
	// label order, with what its last event said (see Targets); nil unless
	// the Builder was asked for it (Wants.Targets).
	TargetList []*Target

	// Tests holds one entry per test target (label and configuration),
	// sorted by label then configuration.
	Tests []*Test

	// Failures lists what went wrong, in the order the stream reported it:
	// aborted events, failed targets, failed actions, failed tests, and
	// last, when Bazel gave one, the failure detail of the build itself.
	Failures []*Failure

	// Artifacts lists the output files of each completed target, by
	// target (sorted by label, configuration and aspect) and output group
	// (in Bazel's order).
	Artifacts []*Artifact
	// ArtifactsLeft counts the output files past Wants.MaxArtifacts, not
	// in Artifacts; 0 without that bound.
	ArtifactsLeft int

	// Metrics are the build's own figures (BuildMetrics, BuildToolLogs).
	Metrics Metrics

	// Configurations names the configurations of the stream by id: the
	// Configuration events' mnemonic ("k8-fastbuild"), or, for a tool
	// configuration, the mnemonic and " (exec)".
	Configurations map[string]string

	// Actions holds the ActionExecuted events, slowest first (see
	// Builder.WithActions; Wants.TimedActions keeps the timed and the
	// failed ones); nil unless asked for.
	Actions []*Action

	// Errors holds the ERROR messages Bazel printed on its console (the
	// stderr of Progress events), in order, each with the lines that
	// follow it up to Bazel's next message (an action's own output):
	// "ERROR: /ws/pkg/BUILD:2:8: Executing genrule //pkg:x failed: …\n
	// genrule about to fail". At most maxErrors are kept.
	Errors []string
}

// Verdict is what an invocation means to a CI gate.
type Verdict string

// The verdicts, gravest last.
const (
	VerdictPassed      Verdict = "passed"
	VerdictBuildFailed Verdict = "build_failed"
	VerdictTestsFailed Verdict = "tests_failed"
	// VerdictDidNotFinish: the stream has neither BuildFinished nor
	// Bazel's last message. What Bazel would have said is unknown, so it
	// never passes.
	VerdictDidNotFinish Verdict = "did_not_finish"
)

// Verdict decides an invocation the way Bazel does, BuildFinished.exit_code
// first (issue 10):
//   - no BuildFinished and no last message: VerdictDidNotFinish;
//   - no BuildFinished but a last message (Bazel refused the command: an
//     unknown option, a crash before the build): VerdictBuildFailed, or
//     VerdictTestsFailed when tests ran and failed (an excerpt);
//   - exit code 0 (SUCCESS): VerdictPassed, whatever else the stream holds
//     (a stray aborted event after a successful build,
//     bazelbuild/bazel#13142, is listed among the failures but does not
//     fail the gate);
//   - otherwise VerdictTestsFailed when the exit code is TESTS_FAILED or a
//     test failed, timed out or did not finish (see Test.Failing), else
//     VerdictBuildFailed.
func (inv *Invocation) Verdict() Verdict {
	switch {
	case !inv.HasExitCode && !inv.Complete:
		return VerdictDidNotFinish
	case !inv.HasExitCode && inv.TestsFailed():
		// Ended without BuildFinished, yet tests ran and failed: not a
		// refused command but a stream cut short on purpose (an excerpt).
		return VerdictTestsFailed
	case !inv.HasExitCode:
		return VerdictBuildFailed
	case inv.ExitCode == 0:
		return VerdictPassed
	case inv.Result == "TESTS_FAILED" || inv.TestsFailed():
		return VerdictTestsFailed
	}
	return VerdictBuildFailed
}

// Duration is the time from BuildStarted to BuildFinished, zero when either
// is missing.
func (inv *Invocation) Duration() time.Duration {
	if inv.Start.IsZero() || inv.Finish.IsZero() {
		return 0
	}
	return inv.Finish.Sub(inv.Start)
}

// Targets counts the targets of an invocation. Aspects are not counted.
type Targets struct {
	Configured int // TargetConfigured events
	Built      int // TargetComplete events with success
	Failed     int // TargetComplete events without success
	// Aborted counts the targets whose TargetConfigured or TargetComplete
	// event was aborted for a reason that is a failure (see AbortIsFailure).
	Aborted int
	// Skipped counts the targets aborted for a reason that is not a
	// failure: SKIPPED (e.g. an incompatible target), NO_ANALYZE or
	// NO_BUILD (--nobuild and the like).
	Skipped int
}

// Target is one target of an invocation (Invocation.TargetList): the last
// of its TargetConfigured, TargetComplete and Aborted events wins, as
// Targets counts them.
type Target struct {
	Label string
	// Kind is TargetConfigured.target_kind ("genrule rule", "sh_test
	// rule"), "" when the target was not configured in this stream.
	Kind string
	// Outcome is "built" (TargetComplete.success), "failed" (TargetComplete
	// without success), "aborted" (an abort that is a failure, see
	// AbortIsFailure), "skipped" (SKIPPED, NO_ANALYZE, NO_BUILD) or
	// "pending" (configured, never completed).
	Outcome string
	// AbortReason is the Aborted.AbortReason name when Outcome is
	// "aborted" or "skipped", else "".
	AbortReason string
}

// Success reports whether the target was built.
func (t *Target) Success() bool { return t.Outcome == TargetBuilt }

// The outcomes of a Target.
const (
	TargetBuilt   = "built"
	TargetFailed  = "failed"
	TargetAborted = "aborted"
	TargetSkipped = "skipped"
	TargetPending = "pending"
)

// BuildFailed reports whether the build failed: the verdict is not
// VerdictPassed.
func (inv *Invocation) BuildFailed() bool { return inv.Verdict() != VerdictPassed }

// TestsFailed reports whether a test ran and failed, timed out or did not
// finish (see Test.RanAndFailed). A flaky test passed; a test that failed
// to build, or was not run because the build failed, is the build's
// failure, as Bazel's exit code BUILD_FAILURE says.
func (inv *Invocation) TestsFailed() bool {
	return slices.ContainsFunc(inv.Tests, (*Test).RanAndFailed)
}

// FirstFailure returns the first failure the stream reported, nil if none.
func (inv *Invocation) FirstFailure() *Failure {
	if len(inv.Failures) == 0 {
		return nil
	}
	return inv.Failures[0]
}

// TestCounts counts the tests of an invocation by overall status.
type TestCounts struct {
	Total         int
	Passed        int // PASSED
	Flaky         int // FLAKY: failed, then passed on a later attempt
	Failed        int // FAILED
	TimedOut      int // TIMEOUT
	Incomplete    int // INCOMPLETE
	RemoteFailure int // REMOTE_FAILURE
	FailedToBuild int // FAILED_TO_BUILD
	ToolHalted    int // TOOL_HALTED_BEFORE_TESTING
	Unknown       int // a TestStatus value unknown to bes (a newer Bazel): counted as failing
	NoStatus      int // NO_STATUS: no summary (not run, or interrupted), but for DidNotReport
	// DidNotReport counts the tests without a status that never reported
	// because the invocation did not finish (a test that did not report
	// after a failed attempt counts under that attempt's status).
	DidNotReport int
	Aborted      int // tests whose events were aborted (any status)
	Cached       int // tests with at least one cached result
}

// TestCounts counts inv's tests.
func (inv *Invocation) TestCounts() TestCounts {
	var c TestCounts
	for _, t := range inv.Tests {
		c.Total++
		switch t.Status {
		case StatusPassed:
			c.Passed++
		case StatusFlaky:
			c.Flaky++
		case StatusFailed:
			c.Failed++
		case StatusTimeout:
			c.TimedOut++
		case StatusIncomplete:
			c.Incomplete++
		case StatusRemoteFailure:
			c.RemoteFailure++
		case StatusFailedToBuild:
			c.FailedToBuild++
		case StatusToolHalted:
			c.ToolHalted++
		case StatusNoStatus, "":
			if t.DidNotReport {
				c.DidNotReport++
			} else {
				c.NoStatus++
			}
		default:
			c.Unknown++
		}
		if t.Aborted != nil {
			c.Aborted++
		}
		if t.Cached > 0 {
			c.Cached++
		}
	}
	return c
}

// Bazel's TestStatus names, as Test.Status and TestRun.Status hold them.
const (
	StatusNoStatus      = "NO_STATUS"
	StatusPassed        = "PASSED"
	StatusFlaky         = "FLAKY"
	StatusTimeout       = "TIMEOUT"
	StatusFailed        = "FAILED"
	StatusIncomplete    = "INCOMPLETE"
	StatusRemoteFailure = "REMOTE_FAILURE"
	StatusFailedToBuild = "FAILED_TO_BUILD"
	StatusToolHalted    = "TOOL_HALTED_BEFORE_TESTING"
)

// FailingStatus reports whether a TestStatus name means the test failed:
// every status but NO_STATUS, PASSED and FLAKY. A value unknown to bes (a
// newer Bazel's, which the binary file gives as a number such as "99") is
// failing: a gate must not pass what it does not understand.
func FailingStatus(status string) bool {
	switch status {
	case StatusNoStatus, StatusPassed, StatusFlaky, "":
		return false
	}
	return true
}

// Test is one test target: its summary and its runs.
type Test struct {
	Label         string
	Configuration string // configuration id; "" when unknown
	// Kind is the rule's kind, TargetConfigured.target_kind ("sh_test
	// rule"), and Size its TestSize ("SMALL"…), "" when unknown.
	Kind, Size string

	// Status is TestSummary.overall_status as a TestStatus name; NO_STATUS
	// when the stream has no summary for the test.
	Status     string
	HasSummary bool

	// TotalRuns is TestSummary.total_run_count (runs × shards × attempts),
	// or the number of TestResult events without a summary.
	TotalRuns int
	// RunCount is TestSummary.run_count (--runs_per_test), at least the
	// highest run number seen.
	RunCount int
	// Shards is TestSummary.shard_count, at least the highest shard number
	// seen (1 for an unsharded test that ran).
	Shards int
	// Attempts is TestSummary.attempt_count, at least the highest attempt
	// number seen.
	Attempts int
	// Cached is TestSummary.total_num_cached, at least the number of
	// results cached locally or remotely.
	Cached int

	// Duration is the sum of the attempts' durations; without any
	// TestResult, TestSummary.total_run_duration.
	Duration time.Duration
	Start    time.Time // first start: TestSummary.first_start_time, or the earliest attempt

	// Logs are the test.log URIs of the last attempt of each run and
	// shard, in run and shard order; when no TestResult of the test gives
	// one (results without an id, as in some of Bazel's CI files), the
	// summary's FailedLogs then PassedLogs.
	Logs []string
	// FailedLogs are the URIs of TestSummary.failed: the logs of the
	// failed attempts as the summary lists them (a cached FLAKY result
	// has them though its failed attempt reported no TestResult here).
	FailedLogs []string
	// PassedLogs are the URIs of TestSummary.passed.
	PassedLogs []string

	// Runs holds one entry per TestResult (run, shard, attempt), sorted
	// by run, shard and attempt.
	Runs []*TestRun

	// Aborted is set when an event about the test (its summary, a result,
	// or the target) was aborted.
	Aborted *Abort

	// DidNotReport is set for a test without a summary in an invocation
	// that did not finish: Bazel was stopped before the test reported, so
	// it counts as failing. Its Status is NO_STATUS, or the failing status
	// of an attempt that failed before the stop.
	DidNotReport bool

	summarySeq int64 // sequence number of the summary, if HasSummary
	next       *Test // the Builder's next test of the same label (another configuration)
}

// Failing reports whether the test did not pass: its status is a failing
// one (FAILED, TIMEOUT, INCOMPLETE, REMOTE_FAILURE, FAILED_TO_BUILD,
// TOOL_HALTED_BEFORE_TESTING, or a value unknown to bes), or RanAndFailed
// holds. JUnit gives such a test a failure or an error.
func (t *Test) Failing() bool {
	return FailingStatus(t.Status) || t.RanAndFailed()
}

// RanAndFailed reports whether the test ran, or was due to run, and did not
// pass: a status of a test that ran (FAILED, TIMEOUT, INCOMPLETE,
// REMOTE_FAILURE, or a value unknown to bes), no report because the
// invocation did not finish, or no status because it was stopped while it
// could run (aborted USER_INTERRUPTED, TIME_OUT, OUT_OF_MEMORY, INTERNAL,
// REMOTE_ENVIRONMENT_FAILURE). FAILED_TO_BUILD, TOOL_HALTED_BEFORE_TESTING
// and the aborts that follow a build failure (UNKNOWN, INCOMPLETE,
// LOADING_FAILURE, ANALYSIS_FAILURE) are the build's failure, not the
// test's.
func (t *Test) RanAndFailed() bool {
	switch t.Status {
	case StatusFailedToBuild, StatusToolHalted:
		return false
	case StatusNoStatus, "":
		if t.DidNotReport {
			return true
		}
		if t.Aborted == nil {
			return false
		}
		switch t.Aborted.Reason {
		case "USER_INTERRUPTED", "TIME_OUT", "OUT_OF_MEMORY", "INTERNAL", "REMOTE_ENVIRONMENT_FAILURE":
			return true
		}
		return false
	}
	return FailingStatus(t.Status)
}

// TestRun is one TestResult: one attempt of one shard of one run.
type TestRun struct {
	Run, Shard, Attempt int
	Status              string // TestStatus name
	StatusDetails       string
	CachedLocally       bool
	CachedRemotely      bool // execution_info.cached_remotely
	Start               time.Time
	Duration            time.Duration
	Strategy            string // execution_info.strategy
	Hostname            string
	Log                 string // URI of the test_action_output named "test.log"
	XML                 string // URI of the test_action_output named "test.xml"
}

// Cached reports whether the result came from a cache.
func (r *TestRun) Cached() bool { return r.CachedLocally || r.CachedRemotely }

// Abort is the payload of an Aborted event.
type Abort struct {
	Reason      string // Aborted.AbortReason name
	Description string
}

// AbortIsFailure reports whether an abort reason means something failed:
// every reason but SKIPPED, NO_ANALYZE and NO_BUILD, which Bazel gives for
// targets it skipped on purpose.
func AbortIsFailure(reason string) bool {
	switch reason {
	case "SKIPPED", "NO_ANALYZE", "NO_BUILD":
		return false
	}
	return true
}

// FailureKind says what failed.
type FailureKind string

// The kinds of failures.
const (
	KindAborted FailureKind = "aborted" // an Aborted event: an announced event that will never come
	KindTarget  FailureKind = "target"  // a TargetComplete without success
	KindAction  FailureKind = "action"  // an ActionExecuted without success
	KindTest    FailureKind = "test"    // a TestSummary with a failing status
	KindBuild   FailureKind = "build"   // BuildFinished with an exit code other than SUCCESS, or a stream Bazel ended without BuildFinished
	// KindDidNotFinish: the stream ends without BuildFinished and without
	// Bazel's last message (Bazel killed, the file cut).
	KindDidNotFinish FailureKind = "did_not_finish"
)

// Failure is one thing that went wrong.
type Failure struct {
	Seq  int64 // sequence number of the event that reported it
	Kind FailureKind
	// Event is the kind of the event's id, Bazel's JSON name:
	// "targetCompleted", "configuredLabel", "unconfiguredLabel",
	// "actionCompleted", "testSummary", "pattern", "buildFinished"…
	Event         string
	Label         string // the id's label; for a pattern, the patterns
	Configuration string
	// Reason is, for an aborted event, the abort reason; for a target or
	// an action, the code of its failure detail (e.g. NON_ZERO_EXIT,
	// SOURCE_INPUT_MISSING) when it has one; for a test, its status; for
	// the build, Bazel's exit code name.
	Reason string
	// Message is the aborted event's description or the failure detail's
	// message.
	Message string
	// Console holds the ERROR messages of Bazel's console that name this
	// failure's label or repeat its message (see Invocation.Errors), with
	// the action output printed after them.
	Console []string

	// Actions only.
	ActionType string // mnemonic, e.g. "Genrule"
	// ExitCode is the action's exit code as the process gave it:
	// failure_detail.spawn.spawn_exit_code when Bazel gives one (Bazel
	// puts 1 in ActionExecuted.exit_code for any failure), else exit_code.
	ExitCode *int32
	Stdout   string // URI
	Stderr   string // URI

	// Tests only: the test.log URIs of the failed attempts, in run,
	// shard and attempt order.
	Logs []string

	// Targets only: the labels of the root causes Bazel named (the
	// event's children).
	RootCauses []string
}

// Artifact is one output file of a target.
type Artifact struct {
	Label         string
	Configuration string
	Aspect        string
	// Group is the output group ("default", …). Files Bazel lists only as
	// important outputs are in group "" with Important set; directory
	// outputs have Directory set.
	Group      string
	Incomplete bool // the output group is incomplete
	Name       string
	URI        string // empty for a file given by its contents or a symlink
	PathPrefix []string
	Length     int64 // 0 when absent
	Digest     string
	Important  bool // also listed in TargetComplete.important_output
	Directory  bool // from TargetComplete.directory_output
}
