package store

import (
	"context"
	"time"
)

// HistoryReader is the optional interface of a Backend that answers
// questions across invocations from the facts it keeps of each stream
// (Facts; issue 15): a label's history, the flaky tests, durations over
// time. store/local answers them with SQL on the indexes of its catalog,
// never reading a stream.
//
// Every method takes a window: since, the zero time for all; a stream
// whose start time is unknown (no BuildStarted) is only in a window
// without since. Times are UTC. An invocation is one run however many
// streams hold it (a run's .bep and its BES capture: two keys, one
// invocation id): its rows are those of one of its streams with facts,
// the complete one, else the one ingested last, else the greatest key;
// the other streams' rows are left out of every answer. A test's result
// served from a cache passed (CachedPass). Methods are safe for
// concurrent use; a store without any stream answers with no rows and no
// error.
type HistoryReader interface {
	// LabelHistory returns the runs of label in the streams started at or
	// after q.Since, newest first (start time, then key): its test rows
	// (TestFacts, one per configuration) when it is a test in any stream
	// of the window, else its target rows (TargetFacts). Runs holds at
	// most q.Limit (0: all) runs of the streams q.Match keeps (nil: all);
	// the summary counts every run kept in the window.
	LabelHistory(ctx context.Context, label string, q HistoryQuery) (*LabelHistory, error)

	// FlakyTests returns the tests that flaked in the window, ranked by
	// their flakes (flake rate × runs: the retries they cost), most
	// first, then by flake rate and label. A run flaked when its overall
	// status is FLAKY (it passed on a retry) and none of its results came
	// from a cache (a FLAKY result replayed from the cache is an earlier
	// run's flake: bazel reports it again, total_num_cached > 0), or when
	// it failed (one of FailingStatuses) in a stream whose commit
	// (Facts.Commit, not "") is one at which the same test passed or was
	// flaky in some stream.
	// A test with fewer than minRuns runs in the window is left out. A
	// test that always passed never flaked.
	FlakyTests(ctx context.Context, since time.Time, minRuns int) ([]FlakyTest, error)

	// InvocationTimings returns every invocation of the window, oldest
	// first: its wall time and the build's own metrics.
	InvocationTimings(ctx context.Context, since time.Time) ([]InvocationTiming, error)

	// TestTimings returns the runs of the test label in the window,
	// oldest first, with their durations.
	TestTimings(ctx context.Context, label string, since time.Time) ([]TestTiming, error)

	// DurationGrowth compares, for every test that ran (not from a
	// cache) both before split and at or after it within the window, its
	// mean duration before and after, and returns those whose mean grew,
	// most growth (after − before) first, at most limit (0: all).
	DurationGrowth(ctx context.Context, since, split time.Time, limit int) ([]TestGrowth, error)
}

// FailingStatuses are the TestSummary.overall_status names of a test run
// that failed: FAILED, TIMEOUT, INCOMPLETE and REMOTE_FAILURE.
// FAILED_TO_BUILD and TOOL_HALTED_BEFORE_TESTING are not the test's
// doing, NO_STATUS is no verdict.
var FailingStatuses = []string{"FAILED", "TIMEOUT", "INCOMPLETE", "REMOTE_FAILURE"}

// HistoryQuery selects the runs of LabelHistory.
type HistoryQuery struct {
	Since time.Time // the window's start; zero: all
	Limit int       // runs returned at most; 0: all
	// Match, if not nil, keeps the streams whose key it accepts (bes
	// history --match).
	Match func(key string) bool
}

// LabelRun is one run of a label: a test's row of TestFacts, or a
// target's of TargetFacts, with its stream's facts.
type LabelRun struct {
	Key, InvocationID string
	Start             time.Time // the stream's start, zero when unknown
	Commit, Branch    string    // Facts.Commit and Facts.Branch
	Label             string
	// Test says whether the run is a test's (TestFacts) or a target's.
	Test          bool
	Configuration string // tests: the configuration id
	// Status is the test's TestSummary.overall_status name; for a
	// target, "BUILT", "FAILED" or "ABORTED".
	Status                            string
	AbortReason                       string // targets: Aborted.AbortReason of an aborted target
	Attempts, Shards, TotalRuns, Runs int
	Cached                            int           // results from a cache (TestSummary.total_num_cached)
	Duration                          time.Duration // the sum of the attempts' durations
	FailedLog                         string        // tests: TestFacts.FailedLog
}

// CachedPass reports whether r is a test's run whose result a cache
// served (CachedPass).
func (r LabelRun) CachedPass() bool {
	return r.Test && CachedPass(r.Status, r.Cached)
}

// CachedPass reports whether a test's run of overall status status, with
// cached results from a cache (TestSummary.total_num_cached), passed from
// the cache: a result served from a cache is no new run of the test. Bazel
// caches only passing results (a FLAKY one passed on a retry), so a run
// with status PASSED or FLAKY and cached > 0 counts as passed, neither a
// flake nor a failure; a failing status with some results cached (other
// shards) is still a failure.
func CachedPass(status string, cached int) bool {
	return cached > 0 && (status == "PASSED" || status == "FLAKY")
}

// LabelHistory is what LabelHistory returns.
type LabelHistory struct {
	Label string
	Test  bool       // the label's runs are a test's
	Runs  []LabelRun // newest first, at most HistoryQuery.Limit
	// Summary of every run in the window (not only those in Runs), one
	// per invocation.
	Total  int // runs
	Passed int // PASSED or passed from a cache (CachedPass) (tests), built (targets)
	Flaky  int // FLAKY, not from a cache
	Failed int // one of FailingStatuses (tests), failed or aborted (targets)
	Cached int // runs passed from a cache (CachedPass), counted in Passed
	// FirstFailure and LastFailure are the start times of the oldest and
	// newest failed runs, zero when none failed.
	FirstFailure, LastFailure time.Time
}

// FlakyTest is one test of FlakyTests.
type FlakyTest struct {
	Label string
	Runs  int // runs in the window, one per invocation, passes from a cache (CachedPass) among them
	// Flakes are the runs that flaked (FLAKY, or failed at a commit at
	// which it also passed); FlakyStatus those whose status was FLAKY.
	Flakes, FlakyStatus int
	Failed              int // runs that failed (FailingStatuses)
	// The newest flake: its stream, start, and the test.log URI of a
	// failed attempt ("" when the stream's facts lack it).
	LastKey, LastInvocationID string
	Last                      time.Time
	LastLog                   string
}

// Rate is Flakes / Runs.
func (f FlakyTest) Rate() float64 {
	if f.Runs == 0 {
		return 0
	}
	return float64(f.Flakes) / float64(f.Runs)
}

// InvocationTiming is one invocation of InvocationTimings.
type InvocationTiming struct {
	Key, InvocationID string
	Command, Verdict  string
	Start             time.Time
	Duration          time.Duration // Facts.Duration: 0 when unknown
	// The build's metrics (BuildMetrics), 0 when it has none:
	// Facts.ActionsCreated, ActionsExecuted and CriticalPath.
	ActionsCreated, ActionsExecuted int64
	CriticalPath                    time.Duration
	Tests                           int // test rows of the invocation
}

// TestTiming is one run of a test in TestTimings.
type TestTiming struct {
	Key      string
	Start    time.Time
	Status   string
	Cached   bool // every result came from a cache
	Duration time.Duration
}

// TestGrowth is one test of DurationGrowth: the mean duration of its runs
// before and after the split, and how many there were.
type TestGrowth struct {
	Label                 string
	Before, After         time.Duration
	RunsBefore, RunsAfter int
}
