package bepgen

import (
	"bufio"
	"io"
	"math/rand/v2"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// CaptureConfig describes a multi-stream capture: many invocations, as a
// Build Event Service receives them, in one file.
type CaptureConfig struct {
	Seed uint64
	// Streams is the number of invocations (tool streams).
	Streams int
	// MinTargets and MaxTargets bound the targets of each invocation
	// (defaults 4 and 60).
	MinTargets, MaxTargets int
	// Concurrent is how many invocations are in flight at once; their
	// events are interleaved (default 4).
	Concurrent int
}

// WriteOBE writes a capture as varint-delimited OrderedBuildEvents: for
// each invocation a tool stream {build_id, invocation_id, TOOL} numbered
// from 1, with event times, every BuildEvent in an Any, and a last
// component_stream_finished event, as Bazel sends them. The streams of
// Concurrent invocations are interleaved.
func WriteOBE(w io.Writer, cfg CaptureConfig) (Stats, error) {
	if cfg.MinTargets <= 0 {
		cfg.MinTargets = 4
	}
	if cfg.MaxTargets < cfg.MinTargets {
		cfg.MaxTargets = max(cfg.MinTargets, 60)
	}
	if cfg.Concurrent <= 0 {
		cfg.Concurrent = 4
	}
	r := rand.New(rand.NewPCG(cfg.Seed, 7))
	bw := bufio.NewWriterSize(w, 256<<10)
	var st Stats
	var active [][][]byte
	next := 0
	for next < cfg.Streams || len(active) > 0 {
		for len(active) < cfg.Concurrent && next < cfg.Streams {
			evs, s, err := invocationOBE(cfg.Seed*1_000_003+uint64(next), cfg.MinTargets+r.IntN(cfg.MaxTargets-cfg.MinTargets+1))
			if err != nil {
				return st, err
			}
			st.Targets += s.Targets
			st.Tests += s.Tests
			st.Failed += s.Failed
			st.Flaky += s.Flaky
			st.TimedOut += s.TimedOut
			st.FailedBuilds += s.FailedBuilds
			st.Streams++
			active = append(active, evs)
			next++
		}
		i := r.IntN(len(active))
		// A burst of a few events of one stream, then maybe another.
		for n := 1 + r.IntN(8); n > 0 && len(active[i]) > 0; n-- {
			b := active[i][0]
			active[i] = active[i][1:]
			var pfx [10]byte
			p := protowire.AppendVarint(pfx[:0], uint64(len(b)))
			bw.Write(p)
			if _, err := bw.Write(b); err != nil {
				return st, err
			}
			st.Events++
			st.Bytes += int64(len(p) + len(b))
		}
		if len(active[i]) == 0 {
			active = append(active[:i], active[i+1:]...)
		}
	}
	return st, bw.Flush()
}

// invocationOBE returns the encoded OrderedBuildEvents of one invocation.
func invocationOBE(seed uint64, targets int) ([][]byte, Stats, error) {
	g := newGen(seed, targets)
	id := &buildpb.StreamId{BuildId: g.hexUUID(), InvocationId: g.uuid, Component: buildpb.StreamId_TOOL}
	var out [][]byte
	seq := int64(0)
	add := func(ev *buildpb.BuildEvent) error {
		seq++
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&buildpb.OrderedBuildEvent{StreamId: id, SequenceNumber: seq, Event: ev})
		if err != nil {
			return err
		}
		out = append(out, b)
		return nil
	}
	err := g.run(func(ev *bes.BuildEvent) error {
		v, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
		if err != nil {
			return err
		}
		return add(&buildpb.BuildEvent{
			EventTime: timestamppb.New(msTime(g.tick(3))),
			Event:     &buildpb.BuildEvent_BazelEvent{BazelEvent: &anypb.Any{TypeUrl: "type.googleapis.com/build_event_stream.BuildEvent", Value: v}},
		})
	}, &g.stats)
	if err != nil {
		return nil, g.stats, err
	}
	err = add(&buildpb.BuildEvent{
		EventTime: timestamppb.New(msTime(g.tick(3))),
		Event: &buildpb.BuildEvent_ComponentStreamFinished{ComponentStreamFinished: &buildpb.BuildEvent_BuildComponentStreamFinished{
			Type: buildpb.BuildEvent_BuildComponentStreamFinished_FINISHED,
		}},
	})
	return out, g.stats, err
}
