package besclient

//lint:file-ignore SA1019 Bazel 4.2 writes only the deprecated start_time_millis and finish_time_millis; they are read as fallbacks for the event times.

import (
	"fmt"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

const (
	kindTool      = "tool"
	kindLifecycle = "lifecycle"
)

// step is one thing to send: a tool stream, or some events of a lifecycle
// stream.
type step struct {
	kind        string
	stream      *Stream
	events      []int // lifecycle: the indexes of the events to send
	synthesized bool
}

// override applies Options.BuildID and Options.InvocationID.
func (p *Publisher) override(streams []*Stream) ([]*Stream, error) {
	b, inv := p.opts.BuildID, p.opts.InvocationID
	if b == "" && inv == "" {
		return streams, nil
	}
	if inv != "" {
		seen := map[string]bool{}
		for _, s := range streams {
			if i := s.Info.ID.GetInvocationId(); i != "" {
				seen[i] = true
			}
		}
		if len(seen) > 1 {
			return nil, fmt.Errorf("besclient: --invocation-id %q: the streams hold %d invocations: %w", inv, len(seen), ErrInvocationOverride)
		}
	}
	out := make([]*Stream, 0, len(streams))
	for _, s := range streams {
		id := proto.CloneOf(s.Info.ID)
		if b != "" {
			id.BuildId = b
		}
		if inv != "" && id.GetInvocationId() != "" {
			id.InvocationId = inv
		}
		if bepfile.Key(id) == s.Info.Key {
			out = append(out, s)
			continue
		}
		info := bepfile.NewStream(id)
		info.TypeURL, info.Publish = s.Info.TypeURL, s.Info.Publish
		ns := &Stream{Info: info, Events: make([]bepfile.Event, len(s.Events))}
		var scratch []byte
		for i, ev := range s.Events {
			if ev.Raw == nil {
				ns.Events[i] = ev // re-encoded with the new id
				continue
			}
			obe, err := ev.OrderedBuildEvent(s.Info)
			if err != nil {
				return nil, fmt.Errorf("besclient: stream %s, event %d: %w", s.Info.Key, i, err)
			}
			obe.StreamId = proto.CloneOf(id)
			raw, err := proto.Marshal(obe)
			if err != nil {
				return nil, fmt.Errorf("besclient: stream %s, event %d: %w", s.Info.Key, i, err)
			}
			ne := bepfile.Event{Seq: ev.Seq, HasTime: ev.HasTime, Time: ev.Time, Raw: raw}
			scratch, _ = ne.Compact(info, scratch)
			ns.Events[i] = ne
		}
		out = append(out, ns)
	}
	return out, nil
}

// build gathers the streams of one build id.
type build struct {
	id        string
	lifecycle []*Stream // "B.1."
	invs      []*invocation
}

type invocation struct {
	id        string
	lifecycle []*Stream // "B.1.I"
	tools     []*Stream // every other component
}

func isLifecycle(s *Stream) bool { return s.Info.ID.GetComponent() == buildpb.StreamId_CONTROLLER }

// plan orders the streams as Bazel sends them, adding the lifecycle streams
// that Options.Lifecycle asks for.
func (p *Publisher) plan(streams []*Stream) ([]step, error) {
	var builds []*build
	byID := map[string]*build{}
	for _, s := range streams {
		bid, iid := s.Info.ID.GetBuildId(), s.Info.ID.GetInvocationId()
		b := byID[bid]
		if b == nil {
			b = &build{id: bid}
			byID[bid] = b
			builds = append(builds, b)
		}
		if isLifecycle(s) && iid == "" {
			b.lifecycle = append(b.lifecycle, s)
			continue
		}
		var inv *invocation
		for _, x := range b.invs {
			if x.id == iid {
				inv = x
			}
		}
		if inv == nil {
			inv = &invocation{id: iid}
			b.invs = append(b.invs, inv)
		}
		if isLifecycle(s) {
			inv.lifecycle = append(inv.lifecycle, s)
		} else {
			inv.tools = append(inv.tools, s)
		}
	}

	var steps []step
	lifecycle := func(ss []*Stream, synthesized, finishing bool) error {
		for _, s := range ss {
			var idx []int
			for i := range s.Events {
				fin, err := finishingEvent(s, i)
				if err != nil {
					return err
				}
				if fin == finishing {
					idx = append(idx, i)
				}
			}
			if len(idx) > 0 || (!finishing && len(s.Events) == 0) {
				steps = append(steps, step{kind: kindLifecycle, stream: s, events: idx, synthesized: synthesized})
			}
		}
		return nil
	}
	for _, b := range builds {
		var allTools []*Stream
		for _, inv := range b.invs {
			allTools = append(allTools, inv.tools...)
		}
		blc, bsyn := b.lifecycle, false
		if len(blc) == 0 && p.opts.Lifecycle && len(allTools) > 0 {
			blc, bsyn = []*Stream{p.synthesize(b.id, "", allTools)}, true
		}
		if err := lifecycle(blc, bsyn, false); err != nil {
			return nil, err
		}
		for _, inv := range b.invs {
			ilc, isyn := inv.lifecycle, false
			if len(ilc) == 0 && p.opts.Lifecycle && len(inv.tools) > 0 {
				ilc, isyn = []*Stream{p.synthesize(b.id, inv.id, inv.tools)}, true
			}
			if err := lifecycle(ilc, isyn, false); err != nil {
				return nil, err
			}
			for _, t := range inv.tools {
				steps = append(steps, step{kind: kindTool, stream: t})
			}
			if err := lifecycle(ilc, isyn, true); err != nil {
				return nil, err
			}
		}
		if err := lifecycle(blc, bsyn, true); err != nil {
			return nil, err
		}
	}
	return steps, nil
}

// finishingEvent reports whether event i of a lifecycle stream ends it
// (build_finished, invocation_attempt_finished).
func finishingEvent(s *Stream, i int) (bool, error) {
	ev := &s.Events[i]
	if ev.Raw == nil {
		return false, nil
	}
	obe, err := ev.OrderedBuildEvent(s.Info)
	if err != nil {
		return false, fmt.Errorf("besclient: stream %s, event %d: %w", s.Info.Key, i, err)
	}
	e := obe.GetEvent()
	return e.GetBuildFinished() != nil || e.GetInvocationAttemptFinished() != nil, nil
}

// outcome is what the tool streams of a build or invocation say about it.
type outcome struct {
	start, finish time.Time
	result        buildpb.BuildStatus_Result
}

// toolOutcome reads the start and finish times and the result of tool
// streams: the first and last event times (else BuildStarted's and
// BuildFinished's times), and COMMAND_SUCCEEDED when every stream finished
// with exit code 0, COMMAND_FAILED when one finished with another,
// UNKNOWN_STATUS when none finished, as Bazel reports it.
func toolOutcome(tools []*Stream) outcome {
	var o outcome
	succeeded, failed := false, false
	earlier := func(t time.Time) {
		if !t.IsZero() && (o.start.IsZero() || t.Before(o.start)) {
			o.start = t
		}
	}
	later := func(t time.Time) {
		if t.After(o.finish) {
			o.finish = t
		}
	}
	for _, s := range tools {
		for i := range s.Events {
			ev := &s.Events[i]
			if ev.HasTime {
				t := time.Unix(ev.Time.Seconds, int64(ev.Time.Nanos))
				earlier(t)
				later(t)
			}
			payload := ev.Payload
			if ev.Raw != nil {
				continue
			}
			pk, err := bepfile.Peek(payload)
			if err != nil {
				continue
			}
			switch pk.Kind() {
			case "started":
				st := &bes.BuildStarted{}
				if proto.Unmarshal(pk.Payload, st) == nil {
					if ts := st.GetStartTime(); ts != nil {
						earlier(ts.AsTime())
					} else if ms := st.GetStartTimeMillis(); ms != 0 {
						earlier(time.UnixMilli(ms))
					}
				}
			case "finished":
				fin := &bes.BuildFinished{}
				if proto.Unmarshal(pk.Payload, fin) == nil {
					if ts := fin.GetFinishTime(); ts != nil {
						later(ts.AsTime())
					} else if ms := fin.GetFinishTimeMillis(); ms != 0 {
						later(time.UnixMilli(ms))
					}
					if fin.GetExitCode().GetCode() == 0 {
						succeeded = true
					} else {
						failed = true
					}
				}
			}
		}
	}
	switch {
	case failed:
		o.result = buildpb.BuildStatus_COMMAND_FAILED
	case succeeded:
		o.result = buildpb.BuildStatus_COMMAND_SUCCEEDED
	default:
		o.result = buildpb.BuildStatus_UNKNOWN_STATUS
	}
	return o
}

// synthesize makes the lifecycle stream Bazel sends for a build (invID "")
// or an invocation: build_enqueued and build_finished, or
// invocation_attempt_started (attempt 1) and invocation_attempt_finished,
// with sequence numbers 1 and 2, at the times the tool streams started and
// finished, and their result.
func (p *Publisher) synthesize(buildID, invID string, tools []*Stream) *Stream {
	o := toolOutcome(tools)
	now := p.opts.Now()
	if o.start.IsZero() {
		o.start = now
	}
	if o.finish.IsZero() {
		o.finish = now
	}
	id := &buildpb.StreamId{BuildId: buildID, InvocationId: invID, Component: buildpb.StreamId_CONTROLLER}
	st := bepfile.NewStream(id)
	status := &buildpb.BuildStatus{Result: o.result}
	var first, last *buildpb.BuildEvent
	if invID == "" {
		first = &buildpb.BuildEvent{Event: &buildpb.BuildEvent_BuildEnqueued_{BuildEnqueued: &buildpb.BuildEvent_BuildEnqueued{}}}
		last = &buildpb.BuildEvent{Event: &buildpb.BuildEvent_BuildFinished_{BuildFinished: &buildpb.BuildEvent_BuildFinished{Status: status}}}
	} else {
		first = &buildpb.BuildEvent{Event: &buildpb.BuildEvent_InvocationAttemptStarted_{InvocationAttemptStarted: &buildpb.BuildEvent_InvocationAttemptStarted{AttemptNumber: 1}}}
		last = &buildpb.BuildEvent{Event: &buildpb.BuildEvent_InvocationAttemptFinished_{InvocationAttemptFinished: &buildpb.BuildEvent_InvocationAttemptFinished{InvocationStatus: status}}}
	}
	first.EventTime = timestamppb.New(o.start)
	last.EventTime = timestamppb.New(o.finish)
	s := &Stream{Info: st}
	for i, e := range []*buildpb.BuildEvent{first, last} {
		obe := &buildpb.OrderedBuildEvent{StreamId: proto.CloneOf(id), SequenceNumber: int64(i + 1), Event: e}
		raw, err := proto.Marshal(obe)
		if err != nil {
			// Only strings that are not UTF-8 fail, and the ids were
			// checked when they were read.
			panic(fmt.Sprintf("besclient: marshal lifecycle event: %v", err))
		}
		ts := e.GetEventTime()
		s.Events = append(s.Events, bepfile.Event{Seq: int64(i + 1), HasTime: true, Time: bepfile.Timestamp{Seconds: ts.GetSeconds(), Nanos: ts.GetNanos()}, Raw: raw})
	}
	return s
}

// startedCommand returns BuildStarted.command from its encoding.
func startedCommand(b []byte) string {
	st := &bes.BuildStarted{}
	if proto.Unmarshal(b, st) != nil {
		return ""
	}
	return st.GetCommand()
}
