package server

import (
	"runtime"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/store/server/hostile"
)

// frames cuts b into 16 KiB buffers, as gRPC receives a message.
func frames(b []byte) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), 16<<10)
		s = append(s, mem.SliceBuffer(b[:n:n]))
		b = b[n:]
	}
	return s
}

// TestRecvCodecAliases: a large request decodes to what proto.Unmarshal
// gives, allocating its event's bytes once (issue 13: gRPC's proto codec
// copied the frames into one buffer and proto.Unmarshal copied the value
// out of it, twice the event).
func TestRecvCodecAliases(t *testing.T) {
	const size = 16 << 20
	obe := hostile.Events("codec", "inv", 1, size)[0]
	tool := &buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: obe, ProjectId: "p", NotificationKeywords: []string{"k=v"}, CheckPrecedingLifecycleEventsPresent: true}
	life := &buildpb.PublishLifecycleEventRequest{BuildEvent: obe, ProjectId: "p"}
	c := newRecvCodec()
	for _, want := range []proto.Message{tool, life} {
		b, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got := want.ProtoReflect().New().Interface()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err = c.Unmarshal(frames(b), got)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%T: decoded differently from proto.Unmarshal", want)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size*5/4 {
			t.Errorf("%T of %d bytes: decoding allocated %d bytes, want about the request once", want, len(b), alloc)
		}
	}
}

// TestRecvCodecOtherShapes: requests the codec does not pick apart (small,
// a field repeated, another event beside bazel_event, malformed) decode as
// proto.Unmarshal decodes them, or fail as it fails.
func TestRecvCodecOtherShapes(t *testing.T) {
	obe := hostile.Events("codec", "inv", 1, 128<<10)[0]
	b, err := proto.Marshal(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: obe})
	if err != nil {
		t.Fatal(err)
	}
	small, _ := proto.Marshal(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: hostile.Events("codec", "inv", 1, 10)[0]})
	// The Any's value twice (the last wins), and the BuildEvent with a
	// component_stream_finished after its bazel_event (the oneof's last
	// wins).
	anyTwice := proto.Clone(obe).(*buildpb.OrderedBuildEvent)
	val := anyTwice.GetEvent().GetBazelEvent().GetValue()
	anyb, _ := proto.Marshal(anyTwice.GetEvent().GetBazelEvent())
	anyb = protowire.AppendBytes(protowire.AppendTag(anyb, 2, protowire.BytesType), val[:len(val)/2])
	evb := protowire.AppendBytes(protowire.AppendTag(nil, 60, protowire.BytesType), anyb)
	obeb := protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), evb)
	twice := protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), obeb)
	fin, _ := proto.Marshal(hostile.Events("codec", "inv", 0, 0)[0].GetEvent())
	mixed := protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType),
		protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), append(evb, fin...)))
	c := newRecvCodec()
	for name, in := range map[string][]byte{"large": b, "small": small, "value twice": twice, "another event after it": mixed} {
		want := &buildpb.PublishBuildToolEventStreamRequest{}
		if err := proto.Unmarshal(in, want); err != nil {
			t.Fatal(name, err)
		}
		got := &buildpb.PublishBuildToolEventStreamRequest{}
		if err := c.Unmarshal(frames(in), got); err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !proto.Equal(got, want) {
			t.Errorf("%s: decoded differently from proto.Unmarshal", name)
		}
	}
	if err := c.Unmarshal(frames(b[:len(b)-3]), &buildpb.PublishBuildToolEventStreamRequest{}); err == nil {
		t.Error("a request cut short decoded")
	}
}
