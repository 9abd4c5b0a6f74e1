package invocation

//lint:file-ignore SA1019 Bazel 4.2 writes only ActionExecuted.label, which the current schema deprecates; it is read as a fallback.

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// Metrics are the build's own figures, as Bazel reports them at the end of
// an invocation: the BuildMetrics event (build_event_stream.BuildMetrics)
// and the BuildToolLogs event's logs ("process stats", "critical path",
// "command.profile.gz"). Zero values are figures the Bazel did not give
// (Bazel 4 has no action cache statistics or runner counts, for example).
type Metrics struct {
	// Has is set when the stream holds a BuildMetrics or BuildToolLogs
	// event.
	Has bool

	ActionsCreated  int64 // ActionSummary.actions_created
	ActionsExecuted int64 // ActionSummary.actions_executed
	// ActionCacheHits and ActionCacheMisses are the local action cache's,
	// ActionSummary.action_cache_statistics; HasActionCache says whether
	// Bazel gave them (Bazel 5 and later).
	ActionCacheHits, ActionCacheMisses int64
	HasActionCache                     bool
	// Runners counts the spawns by runner ("linux-sandbox", "remote cache
	// hit", "local", "worker"…), ActionSummary.runner_count, in Bazel's
	// order, without its "total" entry; Processes is the total.
	Runners   []Runner
	Processes int64
	// ProcessStats is Bazel's own line for the runners: the "process
	// stats" log ("47 processes: 37 internal, 10 linux-sandbox."), or one
	// made from Runners.
	ProcessStats string

	// CriticalPath is TimingMetrics.critical_path_time, else the time in
	// the first line of the "critical path" log ("Critical Path: 0.46s,
	// …"); CriticalPathLog is that log's text.
	CriticalPath    time.Duration
	CriticalPathLog string

	PackagesLoaded    int64 // PackageMetrics.packages_loaded
	TargetsLoaded     int64 // TargetMetrics.targets_loaded
	TargetsConfigured int64 // TargetMetrics.targets_configured

	WallTime      time.Duration // TimingMetrics.wall_time_in_ms
	CPUTime       time.Duration // TimingMetrics.cpu_time_in_ms
	AnalysisTime  time.Duration // TimingMetrics.analysis_phase_time_in_ms
	ExecutionTime time.Duration // TimingMetrics.execution_phase_time_in_ms

	// PeakHeap is MemoryMetrics.peak_post_gc_heap_size, in bytes: the
	// Bazel server's peak heap after a full GC (0 when not measured,
	// e.g. without --memory_profile or --bep_publish_used_heap_size_post_build).
	PeakHeap int64

	// ProfileURI is where the JSON trace profile is
	// (--profile, "command.profile.gz" by default).
	ProfileURI string
}

// Runner is one entry of ActionSummary.runner_count.
type Runner struct {
	Name     string // "linux-sandbox", "remote cache hit", "internal"…
	Count    int64
	ExecKind string // "Remote", "Local"… when Bazel gives it
}

// buildMetrics folds a BuildMetrics event.
func (b *Builder) buildMetrics(m *bes.BuildMetrics) {
	x := &b.inv.Metrics
	x.Has = true
	as := m.GetActionSummary()
	x.ActionsCreated, x.ActionsExecuted = as.GetActionsCreated(), as.GetActionsExecuted()
	if cs := as.GetActionCacheStatistics(); cs != nil {
		x.HasActionCache = true
		x.ActionCacheHits, x.ActionCacheMisses = int64(cs.GetHits()), int64(cs.GetMisses())
	}
	x.Runners = x.Runners[:0]
	for _, r := range as.GetRunnerCount() {
		if r.GetName() == "total" {
			x.Processes = int64(r.GetCount())
			continue
		}
		x.Runners = append(x.Runners, Runner{Name: r.GetName(), Count: int64(r.GetCount()), ExecKind: r.GetExecKind()})
	}
	if x.Processes == 0 {
		for _, r := range x.Runners {
			x.Processes += r.Count
		}
	}
	x.PackagesLoaded = m.GetPackageMetrics().GetPackagesLoaded()
	x.TargetsLoaded = m.GetTargetMetrics().GetTargetsLoaded()
	x.TargetsConfigured = m.GetTargetMetrics().GetTargetsConfigured()
	tm := m.GetTimingMetrics()
	x.WallTime = time.Duration(tm.GetWallTimeInMs()) * time.Millisecond
	x.CPUTime = time.Duration(tm.GetCpuTimeInMs()) * time.Millisecond
	x.AnalysisTime = time.Duration(tm.GetAnalysisPhaseTimeInMs()) * time.Millisecond
	x.ExecutionTime = time.Duration(tm.GetExecutionPhaseTimeInMs()) * time.Millisecond
	if d := tm.GetCriticalPathTime(); d != nil {
		x.CriticalPath = d.AsDuration()
	}
	x.PeakHeap = m.GetMemoryMetrics().GetPeakPostGcHeapSize()
}

// criticalPathTime reads the time off the first line of Bazel's "critical
// path" log: "Critical Path: 0.46s, Remote (0.00% of the time): …".
var criticalPathTime = regexp.MustCompile(`^Critical Path: ([0-9.]+)s`)

// buildToolLogs folds a BuildToolLogs event.
func (b *Builder) buildToolLogs(l *bes.BuildToolLogs) {
	x := &b.inv.Metrics
	x.Has = true
	for _, f := range l.GetLog() {
		text := strings.TrimSpace(strings.ToValidUTF8(string(f.GetContents()), "\uFFFD"))
		switch name := f.GetName(); {
		case name == "process stats":
			x.ProcessStats = text
		case name == "critical path":
			x.CriticalPathLog = text
			if m := criticalPathTime.FindStringSubmatch(text); m != nil && x.CriticalPath == 0 {
				if s, err := strconv.ParseFloat(m[1], 64); err == nil {
					x.CriticalPath = time.Duration(s * float64(time.Second))
				}
			}
		case strings.HasSuffix(name, ".profile.gz") || strings.HasSuffix(name, ".profile") || name == "command.profile.json":
			if x.ProfileURI == "" {
				x.ProfileURI = f.GetUri()
			}
		}
	}
}

// finishMetrics derives what needs both events.
func (inv *Invocation) finishMetrics() {
	x := &inv.Metrics
	if x.ProcessStats == "" && len(x.Runners) > 0 {
		parts := make([]string, len(x.Runners))
		for i, r := range x.Runners {
			parts[i] = fmt.Sprintf("%d %s", r.Count, r.Name)
		}
		x.ProcessStats = fmt.Sprintf("%d processes: %s.", x.Processes, strings.Join(parts, ", "))
	}
	if x.Processes == 0 && x.ProcessStats != "" {
		if n, err := strconv.ParseInt(strings.Fields(x.ProcessStats)[0], 10, 64); err == nil {
			x.Processes = n
		}
	}
}

// Action is one ActionExecuted event (build_event_stream.ActionExecuted):
// a failed action always, every action with
// --build_event_publish_all_actions.
type Action struct {
	Seq           int64
	Label         string // the action's owner: ActionCompletedId.label, or the deprecated ActionExecuted.label
	Configuration string
	PrimaryOutput string // ActionCompletedId.primary_output
	Mnemonic      string // ActionExecuted.type, e.g. "Genrule", "CppCompile"
	Success       bool
	// ExitCode is the process's: failure_detail.spawn.spawn_exit_code
	// when Bazel gives one, else ActionExecuted.exit_code.
	ExitCode int32
	// Start and End are ActionExecuted.start_time and end_time (Bazel 5
	// and later); zero when absent.
	Start, End time.Time
	// Strategy is the runner Bazel reports in strategy_details or
	// execution info when it gives one ("remote cache hit", "linux-sandbox").
	Strategy       string
	Stdout, Stderr string // URIs
	FailureCode    string // the failure detail's code, e.g. NON_ZERO_EXIT
	FailureMessage string
}

// Duration is End - Start, 0 when either is missing.
func (a *Action) Duration() time.Duration {
	if a.Start.IsZero() || a.End.IsZero() {
		return 0
	}
	return a.End.Sub(a.Start)
}

// actionOf makes the Action of an ActionExecuted event.
func actionOf(seq int64, id *bes.BuildEventId, a *bes.ActionExecuted) *Action {
	ac := id.GetActionCompleted()
	act := &Action{
		Seq: seq, Label: ac.GetLabel(), Configuration: ac.GetConfiguration().GetId(),
		PrimaryOutput: ac.GetPrimaryOutput(), Mnemonic: a.GetType(), Success: a.GetSuccess(),
		ExitCode: a.GetExitCode(),
		Start:    timeOf(a.GetStartTime(), 0), End: timeOf(a.GetEndTime(), 0),
		Stdout: a.GetStdout().GetUri(), Stderr: a.GetStderr().GetUri(),
		FailureCode: failureCode(a.GetFailureDetail()), FailureMessage: a.GetFailureDetail().GetMessage(),
	}
	if act.Label == "" {
		act.Label = a.GetLabel()
	}
	if sp := a.GetFailureDetail().GetSpawn(); sp != nil && sp.GetSpawnExitCode() != 0 {
		act.ExitCode = sp.GetSpawnExitCode()
	}
	return act
}

// sortActions orders actions slowest first, then in stream order.
func sortActions(as []*Action) {
	slices.SortStableFunc(as, func(x, y *Action) int {
		if dx, dy := x.Duration(), y.Duration(); dx != dy {
			if dx > dy {
				return -1
			}
			return 1
		}
		return int(x.Seq - y.Seq)
	})
}
