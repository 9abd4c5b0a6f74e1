package invocation

//lint:file-ignore SA1019 Bazel 4.2 writes only the fields the current schema deprecates (the *_millis times, ActionExecuted.label, important_output); they are read as fallbacks.

import (
	"bytes"
	"cmp"
	"fmt"
	"iter"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/bep/failuredetails"
	"github.com/bes-cli/bes/bepfile/wire"
)

// Build reads every event of the stream s from events, in order, and returns
// the invocation they describe. It stops at the first error events yields
// (for a stored stream, store.Stream.Query's: its context's error) and
// returns it: an event whose Bazel payload cannot be decoded is listed in
// Invocation.Damaged and passed to damaged, if not nil, as "stream KEY:
// cause", and the other events are used (issue 10).
func Build(s *bepfile.Stream, events iter.Seq2[*bepfile.Event, error], w Wants, damaged func(error)) (*Invocation, error) {
	b := NewBuilderFor(s, w)
	for ev, err := range events {
		if err != nil {
			return nil, err
		}
		if err := b.Add(ev); err != nil && damaged != nil {
			damaged(fmt.Errorf("stream %s: %w", s.Key, err))
		}
	}
	return b.Invocation(), nil
}

// Builder folds the events of one stream, one at a time and in order, into
// an Invocation. Only the events the model needs are decoded (started,
// expanded, configured, aborted, action, completed, testResult,
// testSummary, finished, namedSetOfFiles); the others (progress, command
// lines, options…) are skipped on the wire. A Builder is not safe for
// concurrent use.
type Builder struct {
	inv Invocation
	// tests holds the tests by label: the first of each label, and its
	// other configurations (rare) chained by Test.next. A label keys the
	// map alone so that the fast path looks a test up by the label's bytes
	// without allocating.
	tests     map[string]*Test
	nTests    int
	testRules map[string]bool // labels configured as test rules
	namedSets map[string]*bes.NamedSetOfFiles
	completed []completion
	// targets holds the state of each target by label (aspects left
	// out): the last event about it wins, so that a target aborted and
	// then completed (bazelbuild/bazel#21767) counts once, as completed.
	targets      map[string]*targetState
	targetSlab   []targetState // where new targetStates are taken from
	buildFailure *Failure      // from BuildFinished.failure_detail

	// console is the unfinished last line of Bazel's stderr (Progress
	// events may split a line), and errBlock the ERROR message being
	// gathered, with the lines that followed it.
	console  []byte
	errBlock []string

	// artifactsWanted keeps what Invocation.Artifacts needs (every
	// completed target and named set, decoded); see WithoutArtifacts.
	artifactsWanted bool
	// actionsWanted keeps every action (Invocation.Actions); see
	// WithActions.
	actionsWanted bool
	// timedActionsWanted keeps the timed and the failed actions; see
	// Wants.TimedActions.
	timedActionsWanted bool
	// maxArtifacts bounds Invocation.Artifacts; see Wants.MaxArtifacts.
	maxArtifacts int
	// kinds holds the target kind and test size of test rules, by label.
	kinds     map[string][2]string
	kindNames map[string]string // the kinds, interned
	// targetsWanted fills Invocation.TargetList; see Wants.Targets.
	targetsWanted bool
	// workspace holds the workspace status items and metadata holds the
	// BuildMetadata entries that User, Host, Commit and Branch come from
	// (statusKeys), whatever order the events came in.
	workspace, metadata map[string]string
	// full decodes every event the model needs with protobuf-go, never
	// taking the fast path (for tests that compare the two).
	full bool
}

// targetState is what the events said of one target, the last event
// winning.
type targetState struct {
	label      string // the key of Builder.targets, shared by the other maps of the label
	configured bool
	kind       string // TargetConfigured.target_kind, interned
	state      targetOutcome
	abort      *Abort // the abort, when state is targetAborted or targetSkipped
}

type targetOutcome uint8

const (
	targetPending targetOutcome = iota // configured, not completed
	targetBuilt
	targetFailed
	targetAborted // aborted for a reason that is a failure
	targetSkipped // aborted for SKIPPED, NO_ANALYZE or NO_BUILD
)

func (b *Builder) target(label string) *targetState {
	t := b.targets[label]
	if t == nil {
		// From a slab: a large build has thousands of targets.
		if len(b.targetSlab) == 0 {
			b.targetSlab = make([]targetState, 256)
		}
		t, b.targetSlab = &b.targetSlab[0], b.targetSlab[1:]
		t.label = label
		b.targets[label] = t
	}
	return t
}

// targetBytes is target for a label read off the wire: it allocates the
// label's string only for a new target.
func (b *Builder) targetBytes(label []byte) *targetState {
	if t := b.targets[string(label)]; t != nil {
		return t
	}
	return b.target(string(label))
}

// completion is a TargetComplete event kept until the named sets it refers
// to are known.
type completion struct {
	label, config, aspect string
	tc                    *bes.TargetComplete
}

// NewBuilder returns a Builder for the stream s.
func NewBuilder(s *bepfile.Stream) *Builder {
	b := &Builder{
		tests:           map[string]*Test{},
		testRules:       map[string]bool{},
		namedSets:       map[string]*bes.NamedSetOfFiles{},
		targets:         map[string]*targetState{},
		kinds:           map[string][2]string{},
		artifactsWanted: true,
	}
	if s != nil {
		b.inv.StreamKey = s.Key
		b.inv.BuildID = s.ID.GetBuildId()
		b.inv.InvocationID = s.ID.GetInvocationId()
	}
	return b
}

// NewBuilderFor returns a Builder for the stream s that builds the parts
// of the model w says (WithoutArtifacts, WithActions).
func NewBuilderFor(s *bepfile.Stream, w Wants) *Builder {
	b := NewBuilder(s)
	b.artifactsWanted, b.actionsWanted, b.targetsWanted = w.Artifacts, w.Actions, w.Targets
	b.timedActionsWanted = w.TimedActions
	b.maxArtifacts = w.MaxArtifacts
	return b
}

// WithoutArtifacts tells the Builder that Invocation.Artifacts is not
// wanted: it then skips named sets of files, and reads the completed
// targets that succeeded without decoding them, so that views of tests,
// failures and outcomes do not pay for the outputs of every target.
// Invocation.Artifacts is then empty. It returns b.
func (b *Builder) WithoutArtifacts() *Builder {
	b.artifactsWanted = false
	return b
}

// WithActions tells the Builder to keep every action the stream reports
// (Invocation.Actions, slowest first), not only the failed ones: all of
// them when Bazel ran with --build_event_publish_all_actions. It returns b.
func (b *Builder) WithActions() *Builder {
	b.actionsWanted = true
	return b
}

// Wants says which of the costlier parts of the model a reader wants, so
// that Classify keeps the events they need.
type Wants struct {
	Artifacts bool // Invocation.Artifacts: completed targets and named sets
	Actions   bool // Invocation.Actions: every action, not only the failed
	Targets   bool // Invocation.TargetList: every target with its outcome
	// TimedActions fills Invocation.Actions with the failed actions and
	// those the BEP times (ActionExecuted.start_time, which Bazel 5 and
	// later set; with --build_event_publish_all_actions, every action),
	// and skips the others on the wire (bes report's timeline).
	TimedActions bool
	// MaxArtifacts, above 0, bounds Invocation.Artifacts to its first
	// MaxArtifacts output files; the others are counted in
	// Invocation.ArtifactsLeft without being made (bes report's page lists
	// 20,000).
	MaxArtifacts int
}

// Relevant reports whether Add would do more with ev than count it. A
// caller that reads many events may leave out the others, and count them
// with Skip instead: most events of a large build (progress, actions that
// succeeded, and without artifacts named sets) are such. It peeks at the
// event's top-level fields only.
func Relevant(ev *bepfile.Event, artifacts bool) bool {
	keep, _, _ := Classify(ev, nil, artifacts)
	return keep
}

// Classify is Relevant for a caller that hands the events it keeps on to
// AddPeeked: it also returns what bepfile.Peek finds in the event's
// BuildEvent (ok is false when the event carries none or it does not
// peek well), so that the builder need not walk the event again. known,
// if not nil, is what the caller found in ev.Payload already (a
// bepfile.Reader's Peeked), and spares Classify its own walk.
func Classify(ev *bepfile.Event, known *bepfile.Peeked, artifacts bool) (keep bool, p bepfile.Peeked, ok bool) {
	return ClassifyFor(ev, known, Wants{Artifacts: artifacts})
}

// ClassifyFor is Classify for a Builder that wants the parts w says.
func ClassifyFor(ev *bepfile.Event, known *bepfile.Peeked, w Wants) (keep bool, p bepfile.Peeked, ok bool) {
	if known != nil && ev.IsBazel() {
		p = *known
	} else {
		payload := ev.BazelPayload(nil)
		if payload == nil {
			return true, p, false
		}
		var err error
		if p, err = bepfile.Peek(payload); err != nil {
			return true, p, false // Add reports the error
		}
	}
	if p.LastMessage {
		return true, p, true
	}
	switch p.PayloadField {
	case wire.BuildEventStarted, wire.BuildEventAborted, wire.BuildEventFinished, wire.BuildEventExpanded, wire.BuildEventConfigured, wire.BuildEventCompleted, wire.BuildEventTestResult, wire.BuildEventTestSummary,
		wire.BuildEventConfiguration, wire.BuildEventBuildMetrics, wire.BuildEventBuildToolLogs, wire.BuildEventWorkspaceInfo,
		wire.BuildEventWorkspaceStatus, wire.BuildEventBuildMetadata:
		return true, p, true
	case wire.BuildEventNamedSetOfFiles:
		return w.Artifacts, p, true
	case wire.BuildEventProgress:
		// Only Bazel's ERROR messages matter, and the lines after them.
		return bytes.Contains(p.Payload, errorMark), p, true
	case wire.BuildEventAction:
		succeeded, wellFormed := success(p.Payload)
		return w.Actions || !succeeded || !wellFormed || w.TimedActions && timedAction(p.Payload), p, true
	}
	return false, p, true
}

// Skip counts n Bazel events that the caller left out because Relevant
// (or Classify) said they do not matter.
func (b *Builder) Skip(n int) { b.inv.BazelEvents += n }

// Add folds one event into the invocation. Events that carry no Bazel
// build event (lifecycle events, component_stream_finished) are ignored.
// An error names the event's sequence number; the Builder stays usable.
// It keeps none of ev's bytes (everything kept is copied), so that a
// caller may reuse them once it returns.
func (b *Builder) Add(ev *bepfile.Event) error { return b.AddPeeked(ev, nil) }

// AddPeeked is Add for an event whose BuildEvent was peeked at already:
// p, if not nil, is what bepfile.Peek finds in it (as Classify returns
// it), its slices aliasing the event's bytes, and spares a second walk.
func (b *Builder) AddPeeked(ev *bepfile.Event, known *bepfile.Peeked) error {
	payload := ev.BazelPayload(nil)
	if payload == nil {
		return nil
	}
	b.inv.BazelEvents++
	var p bepfile.Peeked
	if known != nil {
		p = *known
	} else {
		var err error
		if p, err = bepfile.Peek(payload); err != nil {
			return fmt.Errorf("event %d: %w", ev.Seq, err)
		}
	}
	if p.LastMessage {
		b.inv.Complete = true
	}
	switch p.Kind() {
	case "progress":
		if b.progress(p.Payload) {
			// Read as DecodeBuildEvent would: each bad byte U+FFFD.
			err := fmt.Errorf("event %d (progress): invalid UTF-8 in progress.stderr (replaced by U+FFFD)", ev.Seq)
			b.inv.Damaged = append(b.inv.Damaged, err.Error())
			return err
		}
		return nil
	case "started", "aborted", "finished", "configuration", "buildMetrics", "buildToolLogs", "workspaceInfo", "workspaceStatus", "buildMetadata":
	case "expanded":
		if !b.full && b.fastExpanded(p.ID) {
			return nil
		}
	case "configured":
		if !b.full && b.fastConfigured(p.ID, p.Payload) {
			return nil
		}
	case "action":
		if ok, wellFormed := success(p.Payload); ok && wellFormed && !b.full && !b.actionsWanted && !(b.timedActionsWanted && timedAction(p.Payload)) {
			return nil // only failed actions matter
		}
	case "completed":
		if !b.full && !b.artifactsWanted && b.fastCompleted(payload, p.ID, p.Payload) {
			return nil
		}
		if !b.full && b.artifactsWanted && b.fastCompletedOutputs(payload, p.ID, p.Payload) {
			return nil
		}
	case "namedSetOfFiles":
		if !b.full && (!b.artifactsWanted || b.fastNamedSet(p.ID, p.Payload)) {
			return nil
		}
	case "testResult":
		if !b.full && b.fastTestResult(p.ID, p.Payload) {
			return nil
		}
	case "testSummary":
		if !b.full && b.fastTestSummary(ev.Seq, p.ID, p.Payload) {
			return nil
		}
	default:
		return nil
	}
	be := &bes.BuildEvent{}
	d, err := bepfile.DecodeBuildEvent(payload, be)
	b.unknown(d.Unknown)
	if err != nil {
		err = fmt.Errorf("event %d (%s): %w", ev.Seq, p.Kind(), err)
		b.inv.Damaged = append(b.inv.Damaged, err.Error())
		return err
	}
	b.add(ev.Seq, be)
	if d.Damaged() {
		// Used as far as it could be decoded; the caller says so.
		err = fmt.Errorf("event %d (%s): %s", ev.Seq, p.Kind(), d.String())
		b.inv.Damaged = append(b.inv.Damaged, err.Error())
		return err
	}
	return nil
}

// unknown keeps, once per field, what the events hold that bes's schema
// does not know.
func (b *Builder) unknown(us []bepfile.Unknown) {
	for _, u := range us {
		if n, err := strconv.ParseInt(u.Value, 10, 32); err == nil {
			if _, named := bepfile.UnknownEnumName(protoreflect.EnumNumber(n)); named {
				// A name of Bazel's JSON file: its reader noticed it by
				// name already; the number is bepfile's own.
				continue
			}
		}
		if !slices.ContainsFunc(b.inv.Unknown, func(x bepfile.Unknown) bool { return x.Path == u.Path && x.Field == u.Field }) {
			b.inv.Unknown = append(b.inv.Unknown, u)
		}
	}
}

func (b *Builder) add(seq int64, be *bes.BuildEvent) {
	id := be.GetId()
	switch pl := be.GetPayload().(type) {
	case *bes.BuildEvent_Started:
		s := pl.Started
		if s.GetUuid() != "" {
			b.inv.InvocationID = s.GetUuid()
		}
		b.inv.Command = s.GetCommand()
		b.inv.Start = timeOf(s.GetStartTime(), s.GetStartTimeMillis())
		b.inv.WorkspaceDirectory = s.GetWorkspaceDirectory()
	case *bes.BuildEvent_WorkspaceInfo:
		b.inv.ExecRoot = pl.WorkspaceInfo.GetLocalExecRoot()
	case *bes.BuildEvent_WorkspaceStatus:
		for _, it := range pl.WorkspaceStatus.GetItem() {
			if statusKeys[it.GetKey()] {
				b.workspace = setKey(b.workspace, it.GetKey(), it.GetValue())
			}
		}
	case *bes.BuildEvent_BuildMetadata:
		for k, v := range pl.BuildMetadata.GetMetadata() {
			if statusKeys[k] {
				b.metadata = setKey(b.metadata, k, v)
			}
		}
	case *bes.BuildEvent_Expanded:
		b.inv.Patterns = append(b.inv.Patterns, id.GetPattern().GetPattern()...)
	case *bes.BuildEvent_Configured:
		tc := id.GetTargetConfigured()
		if tc.GetAspect() != "" {
			return
		}
		t := b.target(tc.GetLabel())
		t.configured = true
		t.kind = b.kindName([]byte(pl.Configured.GetTargetKind()))
		if pl.Configured.GetTestSize() != bes.TestSize_UNKNOWN || strings.HasSuffix(pl.Configured.GetTargetKind(), "_test rule") {
			b.testRules[tc.GetLabel()] = true
			b.kinds[tc.GetLabel()] = [2]string{pl.Configured.GetTargetKind(), testSizeName(pl.Configured.GetTestSize())}
		}
	case *bes.BuildEvent_Aborted:
		b.aborted(seq, id, pl.Aborted)
	case *bes.BuildEvent_Action:
		b.action(seq, id, pl.Action)
	case *bes.BuildEvent_Completed:
		b.completedTarget(seq, be, pl.Completed)
	case *bes.BuildEvent_TestResult:
		b.testResult(id.GetTestResult(), pl.TestResult)
	case *bes.BuildEvent_TestSummary:
		b.testSummary(seq, id.GetTestSummary(), pl.TestSummary)
	case *bes.BuildEvent_Finished:
		f := pl.Finished
		b.inv.Finished = true
		if ec := f.GetExitCode(); ec != nil {
			b.inv.HasExitCode = true
			b.inv.Result, b.inv.ExitCode = ec.GetName(), ec.GetCode()
			if ec.GetName() == "INTERRUPTED" {
				b.inv.Interrupted = true
			}
		} else {
			// Bazels before exit_code gave only overall_success.
			b.inv.HasExitCode = true
			b.inv.Result, b.inv.ExitCode = "SUCCESS", 0
			if !f.GetOverallSuccess() {
				b.inv.Result, b.inv.ExitCode = "FAILURE", 1
			}
		}
		b.inv.Finish = timeOf(f.GetFinishTime(), f.GetFinishTimeMillis())
		if fd := f.GetFailureDetail(); fd != nil && b.inv.ExitCode != 0 {
			b.buildFailure = &Failure{
				Seq: seq, Kind: KindBuild, Event: "buildFinished",
				Reason: b.inv.Result, Message: fd.GetMessage(),
			}
		}
	case *bes.BuildEvent_NamedSetOfFiles:
		b.namedSets[id.GetNamedSet().GetId()] = pl.NamedSetOfFiles
	case *bes.BuildEvent_Configuration:
		c := pl.Configuration
		name := c.GetMnemonic()
		if name == "" {
			name = c.GetPlatformName()
		}
		if name == "" {
			break // Bazel's "none" configuration (source files) has no name
		}
		if c.GetIsTool() {
			name += " (exec)"
		}
		if b.inv.Configurations == nil {
			b.inv.Configurations = map[string]string{}
		}
		b.inv.Configurations[id.GetConfiguration().GetId()] = name
	case *bes.BuildEvent_BuildMetrics:
		b.buildMetrics(pl.BuildMetrics)
	case *bes.BuildEvent_BuildToolLogs:
		b.buildToolLogs(pl.BuildToolLogs)
	}
}

func (b *Builder) test(label, config string) *Test {
	for t := b.tests[label]; t != nil; t = t.next {
		if t.Configuration == config {
			return t
		}
	}
	return b.addTest(label, config)
}

// testBytes is test for a label and configuration read off the wire: it
// allocates their strings only for a new test.
func (b *Builder) testBytes(label, config []byte) *Test {
	for t := b.tests[string(label)]; t != nil; t = t.next {
		if t.Configuration == string(config) {
			return t
		}
	}
	return b.addTest(string(label), string(config))
}

// addTest adds a test that test did not find.
func (b *Builder) addTest(label, config string) *Test {
	t := &Test{Label: label, Configuration: config, Status: StatusNoStatus, next: b.tests[label]}
	b.tests[label] = t
	b.nTests++
	return t
}

func (b *Builder) aborted(seq int64, id *bes.BuildEventId, a *bes.Aborted) {
	kind, label, config := describeID(id)
	ab := &Abort{Reason: a.GetReason().String(), Description: a.GetDescription()}
	if a.GetReason() == bes.Aborted_USER_INTERRUPTED {
		b.inv.Interrupted = true
	}
	switch {
	case id.GetTestSummary() != nil || id.GetTestResult() != nil:
		t := b.test(label, config)
		if t.Aborted == nil {
			t.Aborted = ab
		}
	case id.GetTargetCompleted().GetAspect() != "" || id.GetTargetConfigured().GetAspect() != "":
	case id.GetTargetCompleted() != nil || id.GetTargetConfigured() != nil:
		t := b.target(label)
		if id.GetTargetConfigured() != nil && t.state != targetPending {
			break // a late abort of the configuration does not undo a completion
		}
		t.abort = ab
		t.state = targetSkipped
		if AbortIsFailure(ab.Reason) {
			t.state = targetAborted
		}
	}
	if !AbortIsFailure(ab.Reason) {
		return
	}
	b.inv.Failures = append(b.inv.Failures, &Failure{
		Seq: seq, Kind: KindAborted, Event: kind, Label: label, Configuration: config,
		Reason: ab.Reason, Message: ab.Description,
	})
}

func (b *Builder) action(seq int64, id *bes.BuildEventId, a *bes.ActionExecuted) {
	act := actionOf(seq, id, a)
	if b.actionsWanted || b.timedActionsWanted && (!act.Success || !act.Start.IsZero()) {
		b.inv.Actions = append(b.inv.Actions, act)
	}
	if act.Success {
		return
	}
	// Bazel puts 1 in exit_code for any failure; the process's own code
	// is the spawn's (actionOf).
	code := act.ExitCode
	b.inv.Failures = append(b.inv.Failures, &Failure{
		Seq: seq, Kind: KindAction, Event: "actionCompleted", Label: act.Label, Configuration: act.Configuration,
		Reason: act.FailureCode, Message: act.FailureMessage,
		ActionType: act.Mnemonic, ExitCode: &code,
		Stdout: act.Stdout, Stderr: act.Stderr,
	})
}

// testSizeName is a TestSize's name, "" for UNKNOWN.
func testSizeName(s bes.TestSize) string {
	if s == bes.TestSize_UNKNOWN {
		return ""
	}
	return s.String()
}

func (b *Builder) completedTarget(seq int64, be *bes.BuildEvent, tc *bes.TargetComplete) {
	id := be.GetId().GetTargetCompleted()
	label, config, aspect := id.GetLabel(), id.GetConfiguration().GetId(), id.GetAspect()
	for _, child := range be.GetChildren() {
		// A test target announces its results and summary.
		if ts := child.GetTestSummary(); ts != nil {
			b.test(ts.GetLabel(), ts.GetConfiguration().GetId())
		}
	}
	b.completed = append(b.completed, completion{label, config, aspect, tc})
	if aspect == "" {
		t := b.target(label)
		t.abort = nil
		t.state = targetFailed
		if tc.GetSuccess() {
			t.state = targetBuilt
		}
	}
	if tc.GetSuccess() {
		return
	}
	f := &Failure{
		Seq: seq, Kind: KindTarget, Event: "targetCompleted", Label: label, Configuration: config,
		Reason: failureCode(tc.GetFailureDetail()), Message: tc.GetFailureDetail().GetMessage(),
	}
	if aspect != "" {
		f.Label += " (aspect " + aspect + ")"
	}
	for _, child := range be.GetChildren() {
		if _, l, _ := describeID(child); l != "" && !slices.Contains(f.RootCauses, l) {
			f.RootCauses = append(f.RootCauses, l)
		}
	}
	b.inv.Failures = append(b.inv.Failures, f)
}

func (b *Builder) testResult(id *bes.BuildEventId_TestResultId, r *bes.TestResult) {
	if id.GetLabel() == "" {
		return // an id without a label (an edited excerpt) names no test
	}
	t := b.test(id.GetLabel(), id.GetConfiguration().GetId())
	run := &TestRun{
		Run: int(id.GetRun()), Shard: int(id.GetShard()), Attempt: int(id.GetAttempt()),
		Status:         statusName(r.GetStatus()),
		StatusDetails:  r.GetStatusDetails(),
		CachedLocally:  r.GetCachedLocally(),
		CachedRemotely: r.GetExecutionInfo().GetCachedRemotely(),
		Start:          timeOf(r.GetTestAttemptStart(), r.GetTestAttemptStartMillisEpoch()),
		Duration:       durationOf(r.GetTestAttemptDuration(), r.GetTestAttemptDurationMillis()),
		Strategy:       r.GetExecutionInfo().GetStrategy(),
		Hostname:       r.GetExecutionInfo().GetHostname(),
	}
	for _, f := range r.GetTestActionOutput() {
		switch f.GetName() {
		case "test.log":
			run.Log = f.GetUri()
		case "test.xml":
			run.XML = f.GetUri()
		}
	}
	t.Runs = append(t.Runs, run)
}

func (b *Builder) testSummary(seq int64, id *bes.BuildEventId_TestSummaryId, s *bes.TestSummary) {
	t := b.test(id.GetLabel(), id.GetConfiguration().GetId())
	t.HasSummary = true
	t.Status = statusName(s.GetOverallStatus())
	t.TotalRuns = int(s.GetTotalRunCount())
	t.RunCount = int(s.GetRunCount())
	t.Shards = int(s.GetShardCount())
	t.Attempts = int(s.GetAttemptCount())
	t.Cached = int(s.GetTotalNumCached())
	t.Start = timeOf(s.GetFirstStartTime(), s.GetFirstStartTimeMillis())
	t.Duration = durationOf(s.GetTotalRunDuration(), s.GetTotalRunDurationMillis())
	t.FailedLogs = t.FailedLogs[:0]
	for _, f := range s.GetFailed() {
		if u := f.GetUri(); u != "" {
			t.FailedLogs = append(t.FailedLogs, u)
		}
	}
	t.PassedLogs = t.PassedLogs[:0]
	for _, f := range s.GetPassed() {
		if u := f.GetUri(); u != "" {
			t.PassedLogs = append(t.PassedLogs, u)
		}
	}
	t.summarySeq = seq
}

// Invocation finishes the model: it derives what needs every event (test
// figures, aborted tests, artifacts) and returns it. Call it once, after
// the last Add.
func (b *Builder) Invocation() *Invocation {
	inv := &b.inv
	b.endConsole()
	b.countTargets()
	b.identity()
	if b.targetsWanted {
		inv.TargetList = b.targetList()
	}
	if inv.Command == "test" || inv.Command == "coverage" {
		// A test target that never got a test event did not run.
		for label := range b.testRules {
			if b.tests[label] == nil {
				b.test(label, "")
			}
		}
	}
	// A target aborted and then completed keeps only its last state: its
	// abort is no longer a failure.
	inv.Failures = slices.DeleteFunc(inv.Failures, func(f *Failure) bool {
		if f.Kind != KindAborted || (f.Event != "targetCompleted" && f.Event != "targetConfigured") {
			return false
		}
		t := b.targets[f.Label]
		return t != nil && t.state != targetAborted
	})
	unfinished := !inv.HasExitCode && !inv.Complete
	inv.Tests = make([]*Test, 0, b.nTests)
	unreported := 0
	for label, first := range b.tests {
		tgt := b.targets[label]
		for t := first; t != nil; t = t.next {
			if tgt != nil && tgt.abort != nil && t.Aborted == nil {
				t.Aborted = tgt.abort
			}
			finishTest(t)
			if k, ok := b.kinds[label]; ok {
				t.Kind, t.Size = k[0], k[1]
			}
			switch {
			case t.Status != StatusNoStatus:
			case t.HasSummary && len(t.Runs) > 0:
				// A summary without overall_status (bazelbuild/bazel#10919,
				// with --runs_per_test): the status follows from the runs.
				t.Status = statusFromRuns(t.Runs)
			case tgt != nil && tgt.state == targetFailed:
				// A test whose target failed to build: Bazel's console
				// says FAILED TO BUILD.
				t.Status = StatusFailedToBuild
			case unfinished && !t.HasSummary:
				// Bazel stopped before the test's summary: it did not
				// report. An attempt that failed is still a fact: the
				// test shows that failing status (what a retry would
				// have made of it is unknown); else it has none.
				t.DidNotReport = true
				unreported++
				if st := statusFromRuns(t.Runs); FailingStatus(st) {
					t.Status = st
				}
			case len(t.Runs) > 0:
				// Results without a summary in a stream that ended
				// properly.
				t.Status = statusFromRuns(t.Runs)
			}
			inv.Tests = append(inv.Tests, t)
			if (t.HasSummary || t.DidNotReport) && FailingStatus(t.Status) {
				inv.Failures = append(inv.Failures, testFailure(t.summarySeq, t))
			}
		}
	}
	slices.SortFunc(inv.Tests, func(x, y *Test) int {
		return cmp.Or(cmp.Compare(x.Label, y.Label), cmp.Compare(x.Configuration, y.Configuration))
	})
	// Test failures were added out of order; sequence numbers are unique
	// within a stream, so the order is total.
	slices.SortStableFunc(inv.Failures, func(x, y *Failure) int { return cmp.Compare(x.Seq, y.Seq) })
	if b.buildFailure != nil {
		inv.Failures = append(inv.Failures, b.buildFailure)
	}
	switch {
	case unfinished:
		msg := "the invocation did not finish: the stream ends without BuildFinished (Bazel stopped or killed, or the file cut short)"
		if unreported > 0 {
			msg += fmt.Sprintf("; %d test(s) never reported", unreported)
		}
		inv.Failures = append(inv.Failures, &Failure{
			Seq: -1, Kind: KindDidNotFinish, Event: "buildFinished", Reason: "DID_NOT_FINISH", Message: msg,
		})
	case !inv.HasExitCode:
		// Bazel ended the stream without building: it refused the
		// command (an unknown option, a bad target pattern) or crashed.
		// Its reason is on its console.
		f := &Failure{
			Seq: -1, Kind: KindBuild, Event: "buildFinished", Reason: "NO_BUILD_FINISHED",
			Message: "Bazel ended the stream without BuildFinished (the command was refused or Bazel crashed)",
		}
		if len(inv.Errors) > 0 {
			f.Message = firstLine(inv.Errors[0])
		}
		inv.Failures = append(inv.Failures, f)
	}
	b.attachConsole()
	inv.finishMetrics()
	sortActions(inv.Actions)
	if inv.Failures == nil {
		inv.Failures = []*Failure{}
	}
	if inv.Errors == nil {
		inv.Errors = []string{}
	}
	inv.Artifacts, inv.ArtifactsLeft = b.artifacts()
	return inv
}

// statusKeys are the workspace status items and build metadata keys the
// model reads (see Invocation.User, Host, Commit, Branch).
var statusKeys = map[string]bool{
	"BUILD_USER": true, "BUILD_HOST": true,
	"COMMIT_SHA": true, "BRANCH_NAME": true,
	"STABLE_GIT_COMMIT": true, "BUILD_SCM_REVISION": true,
	"STABLE_GIT_BRANCH": true, "BUILD_SCM_BRANCH": true,
}

func setKey(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

// identity sets User, Host, Commit and Branch from the workspace status
// and the build metadata, the metadata first.
func (b *Builder) identity() {
	first := func(vs ...string) string {
		for _, v := range vs {
			if v != "" {
				return v
			}
		}
		return ""
	}
	ws, md := b.workspace, b.metadata
	b.inv.User, b.inv.Host = ws["BUILD_USER"], ws["BUILD_HOST"]
	b.inv.Commit = first(md["COMMIT_SHA"], ws["STABLE_GIT_COMMIT"], ws["BUILD_SCM_REVISION"])
	b.inv.Branch = first(md["BRANCH_NAME"], ws["STABLE_GIT_BRANCH"], ws["BUILD_SCM_BRANCH"])
}

// targetList returns Invocation.TargetList.
func (b *Builder) targetList() []*Target {
	out := make([]*Target, 0, len(b.targets))
	for _, t := range b.targets {
		tg := &Target{Label: t.label, Kind: t.kind}
		switch t.state {
		case targetPending:
			tg.Outcome = TargetPending
		case targetBuilt:
			tg.Outcome = TargetBuilt
		case targetFailed:
			tg.Outcome = TargetFailed
		case targetAborted:
			tg.Outcome = TargetAborted
		case targetSkipped:
			tg.Outcome = TargetSkipped
		}
		if t.abort != nil && (t.state == targetAborted || t.state == targetSkipped) {
			tg.AbortReason = t.abort.Reason
		}
		out = append(out, tg)
	}
	slices.SortFunc(out, func(a, b *Target) int { return strings.Compare(a.Label, b.Label) })
	return out
}

// countTargets counts the targets by their last state.
func (b *Builder) countTargets() {
	c := &b.inv.Targets
	for _, t := range b.targets {
		if t.configured {
			c.Configured++
		}
		switch t.state {
		case targetBuilt:
			c.Built++
		case targetFailed:
			c.Failed++
		case targetAborted:
			c.Aborted++
		case targetSkipped:
			c.Skipped++
		}
	}
}

// finishTest sorts a test's runs and derives the figures a summary may
// lack.
func finishTest(t *Test) {
	slices.SortFunc(t.Runs, func(x, y *TestRun) int {
		return cmp.Or(cmp.Compare(x.Run, y.Run), cmp.Compare(x.Shard, y.Shard), cmp.Compare(x.Attempt, y.Attempt))
	})
	var (
		cached int
		sum    time.Duration
		start  time.Time
	)
	for i, r := range t.Runs {
		t.RunCount = max(t.RunCount, r.Run)
		t.Shards = max(t.Shards, r.Shard)
		t.Attempts = max(t.Attempts, r.Attempt)
		if r.Cached() {
			cached++
		}
		sum += r.Duration
		if !r.Start.IsZero() && (start.IsZero() || r.Start.Before(start)) {
			start = r.Start
		}
		// The last attempt of each run and shard holds the test's log.
		if lastAttempt(t.Runs, i) && r.Log != "" {
			t.Logs = append(t.Logs, r.Log)
		}
	}
	t.Cached = max(t.Cached, cached)
	if len(t.Runs) > 0 {
		t.Duration = sum
		if t.Start.IsZero() {
			t.Start = start
		}
	}
	if t.TotalRuns == 0 {
		t.TotalRuns = len(t.Runs)
	}
	if len(t.Logs) == 0 {
		// No result gave a log: the summary's, as it lists them.
		for _, u := range slices.Concat(t.FailedLogs, t.PassedLogs) {
			if !slices.Contains(t.Logs, u) {
				t.Logs = append(t.Logs, u)
			}
		}
	}
	if t.Logs == nil {
		t.Logs = []string{}
	}
}

// lastAttempt reports whether runs[i] is the last attempt of its run and
// shard; runs must be sorted by run, shard and attempt.
func lastAttempt(runs []*TestRun, i int) bool {
	return i == len(runs)-1 || runs[i+1].Run != runs[i].Run || runs[i+1].Shard != runs[i].Shard
}

// statusFromRuns aggregates the statuses of a test's attempts as Bazel's
// TestSummary does: each run and shard counts with its last attempt, FLAKY
// when it passed after a failed attempt, and the test gets the gravest of
// them, by TestStatus number (PASSED < FLAKY < TIMEOUT < FAILED < … <
// TOOL_HALTED_BEFORE_TESTING; a number unknown to bes is graver still).
// runs must be sorted by run, shard and attempt.
func statusFromRuns(runs []*TestRun) string {
	worst, worstName := int32(-1), StatusNoStatus
	failedBefore := false
	for i, r := range runs {
		if FailingStatus(r.Status) {
			failedBefore = true
		}
		if !lastAttempt(runs, i) {
			continue
		}
		name := r.Status
		if name == StatusPassed && failedBefore {
			name = StatusFlaky
		}
		n, known := bes.TestStatus_value[name]
		if !known {
			n = math.MaxInt32 // unknown to bes
		}
		if n > worst {
			worst, worstName = n, name
		}
		failedBefore = false
	}
	return worstName
}

func testFailure(seq int64, t *Test) *Failure {
	f := &Failure{
		Seq: seq, Kind: KindTest, Event: "testSummary", Label: t.Label, Configuration: t.Configuration,
		Reason: t.Status, Logs: []string{},
	}
	failed := 0
	for _, r := range t.Runs {
		if FailingStatus(r.Status) {
			failed++
			if r.Log != "" {
				f.Logs = append(f.Logs, r.Log)
			}
		}
	}
	if len(t.Runs) > 0 {
		verb := "failed"
		if t.Status == StatusTimeout {
			verb = "timed out"
		}
		f.Message = fmt.Sprintf("%d of %d test attempts %s", failed, len(t.Runs), verb)
	}
	if t.DidNotReport {
		// No summary: listed after what the stream reported, by its
		// results.
		f.Seq, f.Event = math.MaxInt64, "testResult"
		f.Message += "; the test did not report (the invocation did not finish)"
	}
	return f
}

// artifacts resolves the output groups of every completed target: the
// first b.maxArtifacts output files (all when it is 0), and how many more
// there are.
func (b *Builder) artifacts() (out []*Artifact, left int) {
	slices.SortStableFunc(b.completed, func(x, y completion) int {
		return cmp.Or(cmp.Compare(x.label, y.label), cmp.Compare(x.config, y.config), cmp.Compare(x.aspect, y.aspect))
	})
	out = []*Artifact{}
	r := resolver{sets: b.namedSets, seenSet: map[string]uint32{}, seenFile: map[fileKey]uint32{}}
	for _, c := range b.completed {
		if b.maxArtifacts > 0 && len(out) >= b.maxArtifacts {
			left += r.count(c.tc)
			continue
		}
		var mine []*Artifact
		add := func(group string, incomplete bool, f *bes.File) *Artifact {
			a := &Artifact{
				Label: c.label, Configuration: c.config, Aspect: c.aspect,
				Group: group, Incomplete: incomplete,
				Name: f.GetName(), URI: f.GetUri(), PathPrefix: f.GetPathPrefix(),
				Length: f.GetLength(), Digest: f.GetDigest(),
			}
			mine = append(mine, a)
			return a
		}
		for _, g := range c.tc.GetOutputGroup() {
			r.group(g)
			for _, f := range r.files {
				add(g.GetName(), g.GetIncomplete() || r.missing, f)
			}
		}
		for _, f := range c.tc.GetImportantOutput() {
			found := false
			for _, a := range mine {
				if a.Group != "" && a.Name == f.GetName() && a.URI == f.GetUri() {
					a.Important, found = true, true
				}
			}
			if !found {
				add("", false, f).Important = true
			}
		}
		for _, f := range c.tc.GetDirectoryOutput() {
			add("", false, f).Directory = true
		}
		out = append(out, mine...)
	}
	if b.maxArtifacts > 0 && len(out) > b.maxArtifacts {
		left += len(out) - b.maxArtifacts
		out = out[:b.maxArtifacts:b.maxArtifacts]
	}
	return out, left
}

// resolver flattens named sets of files, depth first, each set and each
// file once.
type resolver struct {
	sets map[string]*bes.NamedSetOfFiles
	// seenSet and seenFile hold the group (gen) that last saw a set or a
	// file, so that a new group needs no clearing.
	seenSet  map[string]uint32
	seenFile map[fileKey]uint32
	gen      uint32
	files    []*bes.File
	missing  bool // a set referred to was never announced
}

// fileKey is a file as the resolver tells files apart.
type fileKey struct{ name, uri string }

// group resolves the files of one output group into r.files.
func (r *resolver) group(g *bes.OutputGroup) {
	r.gen++
	r.files, r.missing = r.files[:0], false
	for _, f := range g.GetInlineFiles() {
		r.file(f)
	}
	for _, s := range g.GetFileSets() {
		r.set(s.GetId())
	}
}

// count is the number of Artifacts a completed target gives, as
// Builder.artifacts makes them, without making them.
func (r *resolver) count(tc *bes.TargetComplete) int {
	n := 0
	var grouped map[fileKey]bool // the files of named groups, when important outputs need them
	for _, g := range tc.GetOutputGroup() {
		r.group(g)
		n += len(r.files)
		if len(tc.GetImportantOutput()) > 0 && g.GetName() != "" {
			if grouped == nil {
				grouped = map[fileKey]bool{}
			}
			for _, f := range r.files {
				grouped[fileKey{f.GetName(), f.GetUri()}] = true
			}
		}
	}
	for _, f := range tc.GetImportantOutput() {
		if !grouped[fileKey{f.GetName(), f.GetUri()}] {
			n++
		}
	}
	return n + len(tc.GetDirectoryOutput())
}

func (r *resolver) set(id string) {
	if r.seenSet[id] == r.gen {
		return
	}
	r.seenSet[id] = r.gen
	ns := r.sets[id]
	if ns == nil {
		r.missing = true
		return
	}
	for _, f := range ns.GetFiles() {
		r.file(f)
	}
	for _, s := range ns.GetFileSets() {
		r.set(s.GetId())
	}
}

func (r *resolver) file(f *bes.File) {
	k := fileKey{f.GetName(), f.GetUri()}
	if r.seenFile[k] == r.gen {
		return
	}
	r.seenFile[k] = r.gen
	r.files = append(r.files, f)
}

// describeID returns the kind of an event id (Bazel's JSON name, e.g.
// "targetCompleted"), its label (for a pattern, the patterns) and its
// configuration id.
func describeID(id *bes.BuildEventId) (kind, label, config string) {
	m := id.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("id"))
	if fd == nil {
		return "", "", ""
	}
	kind = fd.JSONName()
	inner := m.Get(fd).Message()
	fields := inner.Descriptor().Fields()
	if l := fields.ByName("label"); l != nil && l.Kind() == protoreflect.StringKind && !l.IsList() {
		label = inner.Get(l).String()
	}
	if p := fields.ByName("pattern"); p != nil && p.IsList() {
		list := inner.Get(p).List()
		parts := make([]string, list.Len())
		for i := range parts {
			parts[i] = list.Get(i).String()
		}
		label = strings.Join(parts, " ")
	}
	if c := fields.ByName("configuration"); c != nil && c.Kind() == protoreflect.MessageKind && inner.Has(c) {
		cm := inner.Get(c).Message()
		if idf := cm.Descriptor().Fields().ByName("id"); idf != nil {
			config = cm.Get(idf).String()
		}
	}
	return kind, label, config
}

// failureCode returns the code of a failure detail's category (e.g.
// NON_ZERO_EXIT for a spawn), the category's name when it has no code,
// and "" without a detail.
func failureCode(fd *failuredetails.FailureDetail) string {
	if fd == nil {
		return ""
	}
	m := fd.ProtoReflect()
	cat := m.WhichOneof(m.Descriptor().Oneofs().ByName("category"))
	if cat == nil {
		return ""
	}
	cm := m.Get(cat).Message()
	code := cm.Descriptor().Fields().ByName("code")
	if code == nil || code.Kind() != protoreflect.EnumKind {
		return string(cat.Name())
	}
	v := cm.Get(code).Enum()
	if ev := code.Enum().Values().ByNumber(v); ev != nil {
		return string(ev.Name())
	}
	return fmt.Sprint(int32(v))
}

func timeOf(ts *timestamppb.Timestamp, millis int64) time.Time {
	if ts != nil && (ts.GetSeconds() != 0 || ts.GetNanos() != 0) {
		return ts.AsTime().UTC()
	}
	if millis != 0 {
		return time.UnixMilli(millis).UTC()
	}
	return time.Time{}
}

func durationOf(d *durationpb.Duration, millis int64) time.Duration {
	if d != nil {
		return d.AsDuration()
	}
	return time.Duration(millis) * time.Millisecond
}
