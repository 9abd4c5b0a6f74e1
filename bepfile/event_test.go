package bepfile

import (
	"bytes"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestCompact: Compact keeps exactly what re-encodes identically.
func TestCompact(t *testing.T) {
	id := &buildpb.StreamId{BuildId: "b", InvocationId: "i", Component: buildpb.StreamId_TOOL}
	s := NewStream(id)
	bazel := func(ts *timestamppb.Timestamp, typeURL string, value []byte) *buildpb.OrderedBuildEvent {
		return &buildpb.OrderedBuildEvent{StreamId: id, SequenceNumber: 7, Event: &buildpb.BuildEvent{
			EventTime: ts,
			Event:     &buildpb.BuildEvent_BazelEvent{BazelEvent: &anypb.Any{TypeUrl: typeURL, Value: value}},
		}}
	}
	other := NewStream(&buildpb.StreamId{BuildId: "x"})
	tests := []struct {
		name    string
		obe     *buildpb.OrderedBuildEvent
		stream  *Stream
		compact bool
		time    Timestamp
	}{
		{"plain", bazel(nil, BazelEventTypeURL, []byte("\x0a\x02\x1a\x00")), s, true, Timestamp{}},
		{"with time", bazel(&timestamppb.Timestamp{Seconds: 1795464889, Nanos: 362000000}, BazelEventTypeURL, []byte("x")), s, true, Timestamp{1795464889, 362000000}},
		{"zero time", bazel(&timestamppb.Timestamp{}, BazelEventTypeURL, []byte("x")), s, true, Timestamp{}},
		{"negative nanos", bazel(&timestamppb.Timestamp{Seconds: -1, Nanos: -5}, BazelEventTypeURL, []byte("x")), s, true, Timestamp{-1, -5}},
		{"empty payload", bazel(nil, BazelEventTypeURL, nil), s, true, Timestamp{}},
		{"other type url", bazel(nil, "type.googleapis.com/other", []byte("x")), s, false, Timestamp{}},
		{"other stream", bazel(nil, BazelEventTypeURL, []byte("x")), other, false, Timestamp{}},
		{"lifecycle", &buildpb.OrderedBuildEvent{StreamId: id, SequenceNumber: 1, Event: &buildpb.BuildEvent{
			Event: &buildpb.BuildEvent_BuildEnqueued_{BuildEnqueued: &buildpb.BuildEvent_BuildEnqueued{}}}}, s, false, Timestamp{}},
	}
	for _, tt := range tests {
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(tt.obe)
		if err != nil {
			t.Fatal(err)
		}
		ev := &Event{Raw: bytes.Clone(raw)}
		_, ok := ev.Compact(tt.stream, nil)
		if ok != tt.compact || ev.IsBazel() != tt.compact {
			t.Errorf("%s: Compact = %v, IsBazel %v; want %v", tt.name, ok, ev.IsBazel(), tt.compact)
		}
		if got := ev.AppendEncoding(nil, tt.stream); !bytes.Equal(got, raw) {
			t.Errorf("%s: encoding changed", tt.name)
		}
		if tt.compact && (ev.Seq != 7 || ev.Time != tt.time || ev.HasTime != (tt.obe.Event.EventTime != nil)) {
			t.Errorf("%s: seq %d, time %+v (%v)", tt.name, ev.Seq, ev.Time, ev.HasTime)
		}
	}
	// An unknown field in the Any keeps the event whole.
	raw, _ := proto.Marshal(bazel(nil, BazelEventTypeURL, []byte("x")))
	raw = append(raw[:len(raw):len(raw)], 0x20, 0x01) // OrderedBuildEvent field 4, unknown
	ev := &Event{Raw: raw}
	if _, ok := ev.Compact(s, nil); ok {
		t.Error("an event with an unknown field was compacted")
	}
}
