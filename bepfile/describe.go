package bepfile

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/wire"
)

// Description is a one-line account of an event, for a table of events
// (bes dump and query print it).
type Description struct {
	// Seq is the event's sequence number (0 in Bazel's own files).
	Seq int64
	// Time is the event's time (OrderedBuildEvent.event.event_time) when
	// HasTime; Bazel's own files carry none in their envelope.
	Time    Timestamp
	HasTime bool
	// Kind is the name of the event's payload: for a Bazel event Bazel's
	// JSON name of it ("testResult", see PayloadKind), else the JSON
	// name of the BES BuildEvent's oneof ("buildEnqueued",
	// "componentStreamFinished", "bazelEvent" for a payload of another
	// type); "?" for an envelope that cannot be decoded.
	Kind string
	// ID summarizes the event's id: its fields as "label k=v k=v" (a
	// configuration id cut to 12 digits, like git), the type URL of a
	// payload of another type, or the fields of a BES event; or why it
	// could not be decoded, in angle brackets.
	ID string
}

// Describe describes ev. Only the event's id is decoded, never the
// payload. It is safe for concurrent use.
func Describe(ev *Event) Description {
	r := Description{Seq: ev.Seq, Time: ev.Time, HasTime: ev.HasTime}
	if ev.IsBazel() {
		r.Kind = PayloadKind(ev.Payload)
		id := &bes.BuildEventId{}
		if raw := FirstBytesField(ev.Payload, wire.BuildEventID); raw != nil {
			if err := proto.Unmarshal(raw, id); err != nil {
				r.ID = fmt.Sprintf("<undecodable id: %v>", err)
				return r
			}
		}
		r.ID = describeMessage(id.ProtoReflect())
		return r
	}
	obe := &buildpb.OrderedBuildEvent{}
	if err := proto.Unmarshal(ev.Raw, obe); err != nil {
		r.Kind = "?"
		r.ID = fmt.Sprintf("<undecodable event: %v>", err)
		return r
	}
	r.Seq = obe.GetSequenceNumber()
	if t := obe.GetEvent().GetEventTime(); t != nil {
		r.Time, r.HasTime = Timestamp{Seconds: t.Seconds, Nanos: t.Nanos}, true
	}
	m := obe.GetEvent().ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("event")); fd != nil {
		r.Kind = fd.JSONName()
		if fd.Name() == "bazel_event" {
			r.ID = "type " + obe.GetEvent().GetBazelEvent().GetTypeUrl()
		} else {
			r.ID = describeFields(m.Get(fd).Message())
		}
	}
	return r
}

// describeMessage summarizes a BuildEventId: the id kind is already the
// event's kind, so this shows only the id's fields, the label first.
func describeMessage(id protoreflect.Message) string {
	od := id.Descriptor().Oneofs().ByName("id")
	if od == nil {
		return describeFields(id)
	}
	fd := id.WhichOneof(od)
	if fd == nil {
		return ""
	}
	return describeFields(id.Get(fd).Message())
}

// describeFields renders the set fields of m as "label k=v k=v", flattening
// single-field messages (like ConfigurationId) to their value.
func describeFields(m protoreflect.Message) string {
	var label string
	var parts []string
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		v := describeValue(fd, m.Get(fd))
		if fd.Name() == "configuration" && len(v) > 12 {
			// Configuration ids are 64-digit hashes; like git, a table
			// shows a prefix (JSON output keeps them whole).
			v = v[:12]
		}
		if fd.Name() == "label" && label == "" {
			label = v
			continue
		}
		parts = append(parts, fd.JSONName()+"="+v)
	}
	if label != "" {
		parts = append([]string{label}, parts...)
	}
	return strings.Join(parts, " ")
}

func describeValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch {
	case fd.IsList():
		l := v.List()
		items := make([]string, l.Len())
		for i := range items {
			items[i] = describeScalar(fd, l.Get(i))
		}
		return "[" + strings.Join(items, ",") + "]"
	case fd.IsMap():
		return "{…}"
	default:
		return describeScalar(fd, v)
	}
}

func describeScalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		m := v.Message()
		s := describeFields(m)
		if m.Descriptor().Fields().Len() == 1 {
			return s[strings.IndexByte(s, '=')+1:]
		}
		return "{" + s + "}"
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return fmt.Sprint(int32(v.Enum()))
	case protoreflect.StringKind:
		s := v.String()
		if s == "" || strings.ContainsAny(s, " \t\n\"") {
			return fmt.Sprintf("%q", s)
		}
		return s
	default:
		return fmt.Sprint(v.Interface())
	}
}
