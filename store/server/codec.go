package server

import (
	"fmt"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bes-cli/bes/bepfile/wire"
)

// Field numbers of the requests the codec decodes itself
// (google/devtools/build/v1/publish_build_event.proto) and of
// google.protobuf.Any.
const (
	toolRequestEvent      protowire.Number = 4 // PublishBuildToolEventStreamRequest.ordered_build_event
	lifecycleRequestEvent protowire.Number = 2 // PublishLifecycleEventRequest.build_event
	anyValue              protowire.Number = 2 // google.protobuf.Any.value
)

// aliasThreshold is the size of a request, in encoded bytes, from which the
// codec decodes it into one buffer of its own (below it, gRPC's proto
// codec, with its pooled buffers).
const aliasThreshold = 64 << 10

// recvCodec is the gRPC codec of `bes serve` (GRPCOptions): gRPC's proto
// codec, except that a large PublishBuildToolEventStreamRequest or
// PublishLifecycleEventRequest is decoded without copying its Bazel event.
//
// gRPC receives a message as the frames it arrived in (16 KiB buffers of its
// pool, freed once Unmarshal returns); its proto codec copies them into one
// pooled buffer, and proto.Unmarshal copies the bazel_event's value out of
// that: a 60 MB event cost 180 MB while it was decoded and 120 MB more than
// itself until the pool let go (issue 13). recvCodec copies the frames once,
// into a buffer the garbage collector owns (mem.BufferSlice.Materialize:
// nothing of gRPC's pool is kept, so no Ref is needed), and the decoded
// Any's Value is a slice of that buffer: the request holds its event's bytes
// once. Everything else of the request is decoded by proto.Unmarshal, from a
// copy without the value; a request of another shape (a field repeated, a
// BuildEvent with another event set as well) is decoded by proto.Unmarshal
// whole, from the same buffer.
//
// Large requests are decoded one at a time (decoding): while one is, its
// frames and its copy are both held, so that calls whose huge events
// arrived together held twice their size at once (8 × 60 MB: 0.92 GB
// live).
type recvCodec struct {
	std      encoding.CodecV2
	decoding chan struct{}
}

func newRecvCodec() encoding.CodecV2 {
	return recvCodec{std: encoding.GetCodecV2(grpcproto.Name), decoding: make(chan struct{}, 1)}
}

func (c recvCodec) Name() string { return grpcproto.Name }

func (c recvCodec) Marshal(v any) (mem.BufferSlice, error) { return c.std.Marshal(v) }

func (c recvCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if data.Len() < aliasThreshold {
		return c.std.Unmarshal(data, v)
	}
	switch v.(type) {
	case *buildpb.PublishBuildToolEventStreamRequest, *buildpb.PublishLifecycleEventRequest:
	default:
		return c.std.Unmarshal(data, v)
	}
	c.decoding <- struct{}{}
	defer func() { <-c.decoding }()
	switch m := v.(type) {
	case *buildpb.PublishBuildToolEventStreamRequest:
		return unmarshalAliased(data.Materialize(), m, toolRequestEvent, func(obe *buildpb.OrderedBuildEvent) { m.OrderedBuildEvent = obe })
	case *buildpb.PublishLifecycleEventRequest:
		return unmarshalAliased(data.Materialize(), m, lifecycleRequestEvent, func(obe *buildpb.OrderedBuildEvent) { m.BuildEvent = obe })
	}
	return c.std.Unmarshal(data, v)
}

// unmarshalAliased decodes b, the encoding of req, whose field obeField is
// an OrderedBuildEvent: set sets it. A bazel_event's value is a slice of b.
func unmarshalAliased(b []byte, req proto.Message, obeField protowire.Number, set func(*buildpb.OrderedBuildEvent)) error {
	whole := func() error {
		if err := proto.Unmarshal(b, req); err != nil {
			return fmt.Errorf("decoding %s: %w", req.ProtoReflect().Descriptor().FullName(), err)
		}
		return nil
	}
	// The request, its OrderedBuildEvent, the BuildEvent, the Any, and
	// the value: each the only occurrence of its field in the one above.
	reqRest, obe, ok := cutField(b, obeField)
	if !ok {
		return whole()
	}
	o, ok := aliasedOBE(obe)
	if !ok || proto.Unmarshal(reqRest, req) != nil {
		return whole()
	}
	set(o)
	return nil
}

// aliasedOBE decodes the OrderedBuildEvent encoded in b, its bazel_event's
// value a slice of b; ok is false for one of another shape (see recvCodec)
// or malformed.
func aliasedOBE(b []byte) (*buildpb.OrderedBuildEvent, bool) {
	obeRest, ev, ok := cutField(b, wire.OBEEvent)
	if !ok {
		return nil, false
	}
	evRest, anyb, ok := cutField(ev, wire.BESBazelEvent)
	if !ok {
		return nil, false
	}
	anyRest, value, ok := cutField(anyb, anyValue)
	if !ok {
		return nil, false
	}
	o := &buildpb.OrderedBuildEvent{}
	e := &buildpb.BuildEvent{}
	a := &anypb.Any{}
	if proto.Unmarshal(obeRest, o) != nil || proto.Unmarshal(evRest, e) != nil || proto.Unmarshal(anyRest, a) != nil || e.Event != nil {
		// Malformed (proto.Unmarshal of the whole names the fault), or
		// another event of the oneof beside bazel_event.
		return nil, false
	}
	if len(value) > 0 {
		a.Value = value[:len(value):len(value)]
	}
	e.Event = &buildpb.BuildEvent_BazelEvent{BazelEvent: a}
	o.Event = e
	return o, true
}

// cutField finds the one occurrence of the length-delimited field num in
// the message encoding b: it returns b without it (a copy: b is not
// changed) and the field's value (a slice of b). ok is false when the field
// is absent, occurs more than once or with another wire type, or b is not
// well-formed.
func cutField(b []byte, num protowire.Number) (rest, value []byte, ok bool) {
	start, end := -1, -1
	for off := 0; off < len(b); {
		n, typ, tn := protowire.ConsumeTag(b[off:])
		if tn < 0 {
			return nil, nil, false
		}
		vn := protowire.ConsumeFieldValue(n, typ, b[off+tn:])
		if vn < 0 {
			return nil, nil, false
		}
		if n == num {
			if typ != protowire.BytesType || start >= 0 {
				return nil, nil, false
			}
			v, _ := protowire.ConsumeBytes(b[off+tn:])
			start, end = off, off+tn+vn
			value = v
		}
		off += tn + vn
	}
	if start < 0 {
		return nil, nil, false
	}
	rest = append(b[:start:start], b[end:]...)
	return rest, value, true
}
