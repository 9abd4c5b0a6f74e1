package query

import (
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/wire"
)

// view is what filters see of one event. Its facts are computed from the
// wire encoding on first use, without proto.Unmarshal, and kept, so filters
// combined with And walk an event once.
type view struct {
	ev *bepfile.Event

	envDone  bool // the Raw envelope has been walked
	envSeq   int64
	envTime  bepfile.Timestamp
	envHas   bool   // envTime is set
	envKind  string // JSON name of the envelope's event, when not a Bazel event
	envBazel []byte // the Bazel payload inside a Raw envelope, if any

	peekDone bool
	peek     bepfile.Peeked // of the Bazel payload; zero if none or malformed
}

func newView(ev *bepfile.Event) view { return view{ev: ev} }

// payload returns the encoded build_event_stream.BuildEvent, nil if the
// event is not a Bazel event.
func (v *view) payload() []byte {
	if v.ev.IsBazel() {
		if v.ev.Payload == nil {
			return []byte{}
		}
		return v.ev.Payload
	}
	v.walkEnvelope()
	return v.envBazel
}

func (v *view) peeked() *bepfile.Peeked {
	if !v.peekDone {
		v.peekDone = true
		if p := v.payload(); p != nil {
			if pk, err := bepfile.Peek(p); err == nil {
				v.peek = pk
			}
		}
	}
	return &v.peek
}

// kind returns Bazel's JSON name of the payload ("testResult"), or for an
// envelope without a Bazel event the JSON name of its event
// ("componentStreamFinished").
func (v *view) kind() string {
	if !v.ev.IsBazel() {
		v.walkEnvelope()
		if v.envBazel == nil {
			return v.envKind
		}
	}
	return v.peeked().Kind()
}

// label returns the target label of the event's id, "" if it has none.
func (v *view) label() string { return labelOf(v.peeked().ID) }

func (v *view) seq() int64 {
	if v.ev.IsBazel() {
		return v.ev.Seq
	}
	v.walkEnvelope()
	return v.envSeq
}

func (v *view) time() (time.Time, bool) {
	ts, ok := v.ev.Time, v.ev.HasTime
	if !v.ev.IsBazel() {
		v.walkEnvelope()
		ts, ok = v.envTime, v.envHas
	}
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(ts.Seconds, int64(ts.Nanos)).UTC(), true
}

// walkEnvelope reads the sequence number, time and event kind of a Raw
// OrderedBuildEvent. A malformed envelope leaves the facts empty (the
// reader has already rejected those).
func (v *view) walkEnvelope() {
	if v.envDone {
		return
	}
	v.envDone = true
	v.envSeq = v.ev.Seq
	bepfile.EachField(v.ev.Raw, func(num protowire.Number, typ protowire.Type, val []byte, x uint64) {
		switch {
		case num == wire.OBESequenceNumber && typ == protowire.VarintType:
			v.envSeq = int64(x)
		case num == wire.OBEEvent && typ == protowire.BytesType:
			v.walkBuildEvent(val)
		}
	})
}

// buildEventDesc describes google.devtools.build.v1.BuildEvent, whose oneof
// event names the kinds of envelope events.
func buildEventDesc() protoreflect.MessageDescriptor {
	return (*buildpb.BuildEvent)(nil).ProtoReflect().Descriptor()
}

func (v *view) walkBuildEvent(b []byte) {
	fields := buildEventDesc().Fields()
	bepfile.EachField(b, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) {
		if typ != protowire.BytesType {
			return
		}
		if num == wire.BESEventTime {
			v.envHas = true
			v.envTime = bepfile.Timestamp{}
			bepfile.EachField(val, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) {
				switch {
				case num == wire.TimestampSeconds && typ == protowire.VarintType:
					v.envTime.Seconds = int64(x)
				case num == wire.TimestampNanos && typ == protowire.VarintType:
					v.envTime.Nanos = int32(x)
				}
			})
			return
		}
		fd := fields.ByNumber(num)
		if fd == nil || fd.ContainingOneof() == nil {
			return
		}
		v.envKind, v.envBazel = fd.JSONName(), nil
		if num != wire.BESBazelEvent {
			return
		}
		var typeURL, value []byte
		bepfile.EachField(val, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) {
			switch {
			case num == wire.AnyTypeURL && typ == protowire.BytesType:
				typeURL = val
			case num == wire.AnyValue && typ == protowire.BytesType:
				value = val
			}
		})
		if string(typeURL) == bepfile.BazelEventTypeURL {
			if value == nil {
				value = []byte{}
			}
			v.envBazel = value
		}
	})
}

// labelOf returns the label of an encoded BuildEventId: the field named
// label of the id's kind (TestResultId.label, ActionCompletedId.label, ...),
// "" when the kind has none.
func labelOf(id []byte) string {
	if id == nil {
		return ""
	}
	fields := (*bes.BuildEventId)(nil).ProtoReflect().Descriptor().Fields()
	var (
		member   []byte
		labelNum protowire.Number
	)
	bepfile.EachField(id, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) {
		fd := fields.ByNumber(num)
		if typ != protowire.BytesType || fd == nil || fd.ContainingOneof() == nil || fd.Message() == nil {
			return
		}
		member, labelNum = nil, 0 // the last member of the oneof wins
		if lf := fd.Message().Fields().ByName("label"); lf != nil && lf.Kind() == protoreflect.StringKind {
			member, labelNum = val, lf.Number()
		}
	})
	var label []byte
	bepfile.EachField(member, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) {
		if num == labelNum && typ == protowire.BytesType {
			label = val
		}
	})
	return string(label)
}
