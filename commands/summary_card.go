package commands

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/bes-cli/bes/bepfile/invocation"
)

// metricsRow is the build's own figures as `bes summary` gives them
// (invocation.Metrics; BuildMetrics and BuildToolLogs). Figures the Bazel did
// not give are left out of the JSON.
type metricsRow struct {
	ActionsCreated    int64       `json:"actions_created,omitempty"`
	ActionsExecuted   int64       `json:"actions_executed,omitempty"`
	ActionCacheHits   *int64      `json:"action_cache_hits,omitempty"`
	ActionCacheMisses *int64      `json:"action_cache_misses,omitempty"`
	Processes         int64       `json:"processes,omitempty"`
	Runners           []runnerRow `json:"runners,omitempty"`
	ProcessStats      string      `json:"process_stats,omitempty"`
	CriticalPath      *float64    `json:"critical_path_seconds,omitempty"`
	PackagesLoaded    int64       `json:"packages_loaded,omitempty"`
	TargetsLoaded     int64       `json:"targets_loaded,omitempty"`
	TargetsConfigured int64       `json:"targets_configured,omitempty"`
	WallTime          *float64    `json:"wall_time_seconds,omitempty"`
	CPUTime           *float64    `json:"cpu_time_seconds,omitempty"`
	AnalysisTime      *float64    `json:"analysis_time_seconds,omitempty"`
	ExecutionTime     *float64    `json:"execution_time_seconds,omitempty"`
	PeakHeapBytes     int64       `json:"peak_heap_bytes,omitempty"`
	ProfileURI        string      `json:"profile_uri,omitempty"`
}

type runnerRow struct {
	Name     string `json:"name"`
	Count    int64  `json:"count"`
	ExecKind string `json:"exec_kind,omitempty"`
}

// metricsFor returns an invocation's metrics row, nil without any.
func metricsFor(m invocation.Metrics) *metricsRow {
	if !m.Has {
		return nil
	}
	secs := func(d time.Duration) *float64 {
		if d == 0 {
			return nil
		}
		s := d.Seconds()
		return &s
	}
	r := &metricsRow{
		ActionsCreated: m.ActionsCreated, ActionsExecuted: m.ActionsExecuted,
		Processes: m.Processes, ProcessStats: m.ProcessStats,
		CriticalPath:   secs(m.CriticalPath),
		PackagesLoaded: m.PackagesLoaded, TargetsLoaded: m.TargetsLoaded, TargetsConfigured: m.TargetsConfigured,
		WallTime: secs(m.WallTime), CPUTime: secs(m.CPUTime),
		AnalysisTime: secs(m.AnalysisTime), ExecutionTime: secs(m.ExecutionTime),
		PeakHeapBytes: m.PeakHeap, ProfileURI: m.ProfileURI,
	}
	if m.HasActionCache {
		h, x := m.ActionCacheHits, m.ActionCacheMisses
		r.ActionCacheHits, r.ActionCacheMisses = &h, &x
	}
	for _, x := range m.Runners {
		r.Runners = append(r.Runners, runnerRow{x.Name, x.Count, x.ExecKind})
	}
	return r
}

// configurationNames lists an invocation's configurations by mnemonic
// ("k8-fastbuild"), sorted, each once.
func configurationNames(inv *invocation.Invocation) []string {
	var names []string
	for _, n := range inv.Configurations {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// configurationName is a configuration as tables show it: its mnemonic
// when the stream named it, else its id shortened to 12 hex digits.
func configurationName(inv *invocation.Invocation, id string) string {
	if n, ok := inv.Configurations[id]; ok {
		return n
	}
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// cardWidth is what the one-invocation summary fits in.
const cardWidth = 80

// writeSummaryCard writes one invocation as "key: value" lines that fit
// cardWidth columns: a long value wraps at spaces (a URI at any byte), its
// continuation lines indented under the value.
func writeSummaryCard(w io.Writer, r summaryRow, names invNames) error {
	type kv struct{ k, v string }
	var lines []kv
	add := func(k, v string) {
		if v != "" {
			lines = append(lines, kv{k, v})
		}
	}
	add("invocation", names.cell(r.InvocationID, r.Stream))
	if names.shared[r.InvocationID] || r.InvocationID == "" {
		add("stream", r.Stream)
	}
	add("command", strings.TrimSpace("bazel "+r.Command+" "+strings.Join(r.Patterns, " ")))
	result := summaryColumns(names)[2].cell(r)
	add("result", result)
	add("verdict", fmt.Sprintf("%s (exit %d)", strings.ReplaceAll(r.Verdict, "_", " "), r.ExitStatus))
	add("started", formatTime(r.Start))
	if r.Duration != nil {
		add("duration", formatSeconds(*r.Duration))
	}
	add("targets", r.Targets.String())
	add("tests", r.Tests.String())
	add("configurations", strings.Join(r.Configurations, ", "))
	if m := r.Metrics; m != nil {
		if m.ActionsExecuted != 0 || m.ActionsCreated != 0 {
			add("actions", fmt.Sprintf("%d executed, %d created", m.ActionsExecuted, m.ActionsCreated))
		}
		if m.ActionCacheHits != nil {
			add("action cache", fmt.Sprintf("%d hits, %d misses", *m.ActionCacheHits, *m.ActionCacheMisses))
		}
		add("processes", m.ProcessStats)
		if m.CriticalPath != nil {
			add("critical path", formatSeconds(*m.CriticalPath))
		}
		if m.PackagesLoaded != 0 || m.TargetsLoaded != 0 {
			add("loaded", fmt.Sprintf("%d packages, %d targets", m.PackagesLoaded, m.TargetsLoaded))
		}
		var times []string
		for _, t := range []struct {
			s    *float64
			name string
		}{{m.WallTime, "wall"}, {m.CPUTime, "CPU"}, {m.AnalysisTime, "analysis"}, {m.ExecutionTime, "execution"}} {
			if t.s != nil {
				times = append(times, formatSeconds(*t.s)+" "+t.name)
			}
		}
		add("time", strings.Join(times, ", "))
		if m.PeakHeapBytes > 0 {
			add("peak heap", fmt.Sprintf("%.1f MiB", float64(m.PeakHeapBytes)/(1<<20)))
		}
		profile := m.ProfileURI
		if path, ok := localPath(profile); ok {
			profile = path // the card shows paths; JSON keeps the URI
		}
		add("profile", profile)
	}
	if r.FirstFailure != nil {
		add("first failure", r.FirstFailure.String())
	}
	keyWidth := 0
	for _, l := range lines {
		keyWidth = max(keyWidth, len(l.k)+1)
	}
	bw := bufio.NewWriter(w)
	for _, l := range lines {
		head := fmt.Sprintf("%-*s ", keyWidth, l.k+":")
		for i, part := range wrapText(safeCell(l.v), cardWidth-len(head)) {
			if i > 0 {
				head = strings.Repeat(" ", len(head))
			}
			fmt.Fprintf(bw, "%s%s\n", head, part)
		}
	}
	return bw.Flush()
}

// wrapText breaks s into lines of at most width runes, at spaces when it
// can, else (a path, a label) after a '/' or ':', else anywhere.
func wrapText(s string, width int) []string {
	var out []string
	for {
		r := []rune(s)
		if len(r) <= width {
			return append(out, s)
		}
		cut := width
		found := false
		for i := width; i > width/2; i-- {
			if r[i] == ' ' {
				cut, found = i, true
				break
			}
		}
		for i := width - 1; !found && i > width/4; i-- {
			if r[i] == '/' || r[i] == ':' {
				cut, found = i+1, true
			}
		}
		out = append(out, strings.TrimRight(string(r[:cut]), " "))
		s = strings.TrimLeft(string(r[cut:]), " ")
	}
}
