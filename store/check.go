package store

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// What `bes store check` reports, shared by the backends that check
// themselves (store/local, a directory; store/postgres, a catalog and a
// bucket), so that both report, and repair, by the same rules.

// ProblemKind names what a backend's Check found wrong with a store.
type ProblemKind string

// The problems Check reports. Repair fixes them, moving aside, never
// deleting, what it cannot index: a stream body that cannot be read at all
// (store/local: NAME.corrupt) and one whose content disagrees with its
// committed entry (store/local: NAME.quarantine; store/postgres: its blobs
// copied under quarantine/ in the bucket).
const (
	// ProblemIndex: the catalog cannot be read (Repair moves it aside and
	// rebuilds it from the stream files).
	ProblemIndex ProblemKind = "bad catalog"
	// ProblemBadName: an entry names a file that is not its stream file.
	ProblemBadName ProblemKind = "bad file name"
	// ProblemMissing: an entry's stream file (a blob of its chunks) does
	// not exist. Repair drops the entry.
	ProblemMissing ProblemKind = "missing file"
	// ProblemMismatch: the stream body is not what the entry describes:
	// shorter, another digest, another stream, records whose checksums
	// fail. Its content is not what was committed: Repair quarantines it
	// (moves it aside and drops the entry), never indexes it as it is.
	ProblemMismatch ProblemKind = "content mismatch"
	// ProblemMetadata: the entry's event count, completeness or outcome
	// differ from the stream body's (Repair writes the entry anew from
	// the body, whose digest it has).
	ProblemMetadata ProblemKind = "metadata mismatch"
	// ProblemCorrupt: the stream file cannot be read.
	ProblemCorrupt ProblemKind = "corrupt file"
	// ProblemBehind: the stream file holds more than its entry says and no
	// writer has it open: a server was killed before it updated the catalog
	// (Repair reconciles the entry, cutting off a torn last record).
	ProblemBehind ProblemKind = "entry behind file"
	// ProblemUnindexed: no entry names a stream file (a writer died between
	// the rename of a commit and the catalog's commit, or the catalog was
	// lost). Repair indexes it from its content.
	ProblemUnindexed ProblemKind = "not indexed"
	// ProblemTemp: a temporary file that no live writer holds, left by a
	// writer that was killed (Repair removes it).
	ProblemTemp ProblemKind = "stale temporary file"
	// ProblemNotRegular: a file of the store directory that is not a
	// regular file: a symbolic link (which bes never follows: issue 13, a
	// planted link made bes write through it), a directory, a named pipe.
	// Repair removes it (a link itself, never its target; a directory only
	// if empty) and drops the entry of a stream whose file it stands for.
	ProblemNotRegular ProblemKind = "not a regular file"
	// ProblemFacts: the facts the catalog holds of a stream no live
	// writer holds (Facts: its invocation, targets and tests) are not
	// FactsOf its events: missing, or different (Repair writes them anew
	// from the stream body).
	ProblemFacts ProblemKind = "facts mismatch"
	// ProblemFactsOrphan: the catalog holds facts of a key it lists no
	// stream of (Repair drops them).
	ProblemFactsOrphan ProblemKind = "facts without stream"
	// ProblemOrphanBlob: a blob of the bucket that no catalog row names,
	// older than the grace period uploads get (store/postgres): the body
	// of an upload killed before the transaction that would have listed
	// it. Nothing reads it; `bes store gc` deletes it. Repair leaves it.
	ProblemOrphanBlob ProblemKind = "blob not in the catalog"
)

// Problem is one inconsistency Check found.
type Problem struct {
	Kind ProblemKind `json:"problem"`
	// File is the file concerned, relative to the store directory, or
	// the blob, relative to the bucket (and its prefix).
	File string `json:"file"`
	// Key is the stream's key, when it is known.
	Key    string `json:"key,omitempty"`
	Detail string `json:"detail"`
}

// CheckResult is what Check found.
type CheckResult struct {
	// Entries is the number of catalog entries, Files the number of stream
	// files (store/postgres: of blobs of stream bodies).
	Entries, Files int
	// Open lists the keys of the streams that a live writer (bes serve) is
	// appending to: their files may hold more than their entries say.
	Open []string
	// Problems is empty for a consistent store, sorted by File.
	Problems []Problem
}

// OK reports whether the store is consistent.
func (r *CheckResult) OK() bool { return len(r.Problems) == 0 }

// RepairResult is what Repair did.
type RepairResult struct {
	// Before is what Check found first, After what it found once Repair
	// was done.
	Before, After *CheckResult
	// Actions describes each change, one line each.
	Actions []string
}

// EntryDiff describes how the entry e differs from body, the entry made
// from its stream body (NewEntry of its events), in the fields taken from
// the stream: ids, events, completeness, outcome, times; "" if it does
// not. The text starts "the catalog says".
func EntryDiff(e, body *Entry) string {
	var d []string
	add := func(name string, got, want any) {
		d = append(d, fmt.Sprintf("%s %v, the file's %v", name, got, want))
	}
	if e.BuildID != body.BuildID || e.InvocationID != body.InvocationID || e.Component != body.Component {
		add("ids", []any{e.BuildID, e.InvocationID, e.Component}, []any{body.BuildID, body.InvocationID, body.Component})
	}
	if e.Events != body.Events {
		add("events", e.Events, body.Events)
	}
	if e.Complete != body.Complete {
		add("complete", e.Complete, body.Complete)
	}
	if e.Command != body.Command || e.Result != body.Result || e.ExitCode != body.ExitCode || e.HasExitCode != body.HasExitCode {
		add("outcome", []any{e.Command, e.Result, e.ExitCode}, []any{body.Command, body.Result, body.ExitCode})
	}
	if !e.Start.Equal(body.Start) || !e.Finish.Equal(body.Finish) {
		add("times", []any{e.Start, e.Finish}, []any{body.Start, body.Finish})
	}
	if len(d) == 0 {
		return ""
	}
	return "the catalog says " + strings.Join(d, "; ")
}

// FactsDiff describes how the facts a catalog holds of a stream (got, nil
// for none) differ from those of its events (want, nil for a stream
// without Bazel events); "" if they do not.
func FactsDiff(got, want *Facts) string {
	switch {
	case got == nil && want == nil:
		return ""
	case got == nil:
		return "the catalog has no facts of the stream"
	case want == nil:
		return "the catalog has facts of a stream without Bazel events"
	}
	if EqualFacts(got, want) {
		return ""
	}
	var d []string
	field := func(name string, g, w any) {
		if g != w {
			d = append(d, fmt.Sprintf("%s %v, the stream's %v", name, g, w))
		}
	}
	field("invocation id", got.InvocationID, want.InvocationID)
	field("command", got.Command, want.Command)
	if !slices.Equal(got.Patterns, want.Patterns) {
		d = append(d, fmt.Sprintf("patterns %q, the stream's %q", got.Patterns, want.Patterns))
	}
	field("result", got.Result, want.Result)
	field("exit code", [2]any{got.ExitCode, got.HasExitCode}, [2]any{want.ExitCode, want.HasExitCode})
	field("verdict", got.Verdict, want.Verdict)
	if !got.Start.Equal(want.Start) {
		d = append(d, fmt.Sprintf("start %v, the stream's %v", got.Start, want.Start))
	}
	field("duration", got.Duration, want.Duration)
	field("failures", got.Failures, want.Failures)
	field("damaged", got.Damaged, want.Damaged)
	field("user, host, commit, branch", [4]string{got.User, got.Host, got.Commit, got.Branch}, [4]string{want.User, want.Host, want.Commit, want.Branch})
	if !slices.Equal(got.Targets, want.Targets) {
		d = append(d, fmt.Sprintf("targets %s, the stream's %s", firstOf(got.Targets, want.Targets, func(t TargetFacts) string { return t.Label }),
			firstOf(want.Targets, got.Targets, func(t TargetFacts) string { return t.Label })))
	}
	if !reflect.DeepEqual(got.Tests, want.Tests) {
		d = append(d, fmt.Sprintf("tests %s, the stream's %s", firstOf(got.Tests, want.Tests, func(t TestFacts) string { return t.Label }),
			firstOf(want.Tests, got.Tests, func(t TestFacts) string { return t.Label })))
	}
	if len(d) == 0 {
		return fmt.Sprintf("the catalog's facts are %+v, the stream's %+v", *got, *want)
	}
	return "the catalog's facts say " + strings.Join(d, "; ")
}

// EqualFacts reports whether a and b are equal, times by Equal and a nil
// list as an empty one.
func EqualFacts(a, b *Facts) bool {
	x, y := *a, *b
	if !x.Start.Equal(y.Start) {
		return false
	}
	x.Start, y.Start = time.Time{}, time.Time{}
	for _, f := range []*Facts{&x, &y} {
		if f.Patterns == nil {
			f.Patterns = []string{}
		}
		if f.Targets == nil {
			f.Targets = []TargetFacts{}
		}
		if f.Tests == nil {
			f.Tests = []TestFacts{}
		}
	}
	return reflect.DeepEqual(x, y)
}

// firstOf describes a, which differs from b: its length and the label of
// its first element unlike b's.
func firstOf[T any](a, b []T, label func(T) string) string {
	for i := range a {
		if i >= len(b) || !reflect.DeepEqual(a[i], b[i]) {
			return fmt.Sprintf("%d (first unlike: %d, %s)", len(a), i, label(a[i]))
		}
	}
	return fmt.Sprintf("%d", len(a))
}
