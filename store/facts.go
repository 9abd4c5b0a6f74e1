package store

import (
	"context"
	"slices"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/invocation"
)

// Facts are what a stored stream says about its Bazel invocation, kept by
// a backend beside the stream's entry so that views and history queries
// need not read the stream: a summary of invocation.Invocation (FactsOf).
type Facts struct {
	Key          string // the stream's key
	InvocationID string // BuildStarted.uuid, or the stream id's
	Command      string // BuildStarted.command
	Patterns     []string
	Result       string // BuildFinished.exit_code.name
	ExitCode     int32
	HasExitCode  bool
	Verdict      string // invocation.Verdict: passed, build_failed, tests_failed, did_not_finish
	Start        time.Time
	Duration     time.Duration // BuildStarted to BuildFinished, 0 when either is missing
	// User, Host, Commit and Branch are invocation.Invocation's: the
	// workspace status and build metadata, "" when the stream does not say.
	User, Host, Commit, Branch string
	// ActionsCreated, ActionsExecuted and CriticalPath are the build's
	// metrics (invocation.Metrics: BuildMetrics.action_summary,
	// timing_metrics.critical_path_time), 0 when the stream has none
	// (issue 15).
	ActionsCreated, ActionsExecuted int64
	CriticalPath                    time.Duration
	// Failures is the number of failures bes failures lists
	// (invocation.Invocation.Failures).
	Failures int
	// Damaged is set when the events the facts were made of held what
	// bes could not decode or did not know (invocation.Invocation.Damaged,
	// .Unknown): a view that reports such things reads the stream instead.
	Damaged bool

	Targets []TargetFacts // in label order
	Tests   []TestFacts   // in label, then configuration order
}

// TargetFacts is one target (invocation.Target).
type TargetFacts struct {
	Label       string
	Kind        string // "genrule rule"
	Success     bool   // built
	AbortReason string // the Aborted.AbortReason name of an aborted or skipped target
}

// TestFacts is one test target (invocation.Test).
type TestFacts struct {
	Label, Configuration string
	Status               string // TestSummary.overall_status name
	Attempts             int    // TestSummary.attempt_count
	Shards               int    // TestSummary.shard_count
	Runs                 int    // TestSummary.run_count (--runs_per_test)
	TotalRuns            int    // TestSummary.total_run_count
	Cached               int    // TestSummary.total_num_cached
	Duration             time.Duration
	DidNotReport         bool // the invocation stopped before the test reported
	// Kind and Size are TargetConfigured's target_kind ("sh_test rule")
	// and test_size ("SMALL"…), "" when the stream does not say.
	Kind, Size string
	// AbortReason is the Aborted.AbortReason name of an event about the
	// test that was aborted, "" when none was.
	AbortReason string
	// Logs are the test.log URIs of the last attempt of each run and
	// shard, in run and shard order (invocation.Test.Logs).
	Logs []string
	// FailedLog is the test.log URI of a failed attempt: the first of
	// TestSummary.failed, "" when none failed (issue 15: bes flaky).
	FailedLog string
}

// FactsOf returns the facts of inv, which must have been built with
// invocation.Wants.Targets (else Targets is empty).
func FactsOf(inv *invocation.Invocation) *Facts {
	f := &Facts{
		Key: inv.StreamKey, InvocationID: inv.InvocationID, Command: inv.Command,
		Patterns: inv.Patterns, Result: inv.Result, ExitCode: inv.ExitCode, HasExitCode: inv.HasExitCode,
		Verdict: string(inv.Verdict()), Start: inv.Start, Duration: inv.Duration(),
		User: inv.User, Host: inv.Host, Commit: inv.Commit, Branch: inv.Branch,
		ActionsCreated: inv.Metrics.ActionsCreated, ActionsExecuted: inv.Metrics.ActionsExecuted,
		CriticalPath: inv.Metrics.CriticalPath,
		Failures:     len(inv.Failures), Damaged: len(inv.Damaged) > 0 || len(inv.Unknown) > 0,
		Targets: []TargetFacts{}, Tests: []TestFacts{},
	}
	if f.Patterns == nil {
		f.Patterns = []string{}
	}
	for _, t := range inv.TargetList {
		f.Targets = append(f.Targets, TargetFacts{Label: t.Label, Kind: t.Kind, Success: t.Success(), AbortReason: t.AbortReason})
	}
	for _, t := range inv.Tests {
		f.Tests = append(f.Tests, TestFacts{
			Label: t.Label, Configuration: t.Configuration, Status: t.Status,
			Attempts: t.Attempts, Shards: t.Shards, Runs: t.RunCount, TotalRuns: t.TotalRuns,
			Cached: t.Cached, Duration: t.Duration, DidNotReport: t.DidNotReport,
			FailedLog: firstOr(t.FailedLogs),
			Kind:      t.Kind, Size: t.Size, Logs: slices.Clone(t.Logs),
		})
		if t.Aborted != nil {
			f.Tests[len(f.Tests)-1].AbortReason = t.Aborted.Reason
		}
		if f.Tests[len(f.Tests)-1].Logs == nil {
			f.Tests[len(f.Tests)-1].Logs = []string{}
		}
	}
	return f
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// FactsReader is the optional interface of a Backend that keeps the facts
// of its streams (store/local, in its catalog).
type FactsReader interface {
	// Facts returns the facts of the stream with key: nil, nil for a
	// stream without Bazel events (a lifecycle stream); an error wrapping
	// ErrNotFound for a key that is not stored.
	Facts(ctx context.Context, key string) (*Facts, error)
}

// FactsLister is the optional interface of a FactsReader that reads the
// facts of many streams at once (store/local: three queries of the
// catalog for any number of streams, instead of a few for each).
type FactsLister interface {
	// ManyFacts returns what Facts returns for each of keys, in the order
	// of keys (nil for a stream without Bazel events), or the first error
	// Facts would give (one wrapping ErrNotFound for a key not stored).
	ManyFacts(ctx context.Context, keys []string) ([]*Facts, error)
}

// factsWants is what the facts need of the model.
var factsWants = invocation.Wants{Targets: true}

// FactsBuilder builds the facts of one stream from its events, as a
// backend's writers see them (store/local and store/postgres keep them
// beside the stream's entry). Not safe for concurrent use.
type FactsBuilder struct {
	b *invocation.Builder
}

// NewFactsBuilder returns a FactsBuilder for the stream st.
func NewFactsBuilder(st *bepfile.Stream) *FactsBuilder {
	return &FactsBuilder{b: invocation.NewBuilderFor(st, factsWants)}
}

// Add folds ev into the model, decoding only what the facts need; what it
// cannot decode the model records.
func (f *FactsBuilder) Add(ev *bepfile.Event) {
	keep, p, ok := invocation.ClassifyFor(ev, nil, factsWants)
	switch {
	case !keep:
		f.b.Skip(1)
	case ok:
		f.b.AddPeeked(ev, &p)
	default:
		f.b.Add(ev)
	}
}

// Facts returns the facts of the events added, nil for a stream without
// Bazel events (a lifecycle stream). Call it once.
func (f *FactsBuilder) Facts() *Facts {
	inv := f.b.Invocation()
	if inv.BazelEvents == 0 {
		return nil
	}
	return FactsOf(inv)
}
