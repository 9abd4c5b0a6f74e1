package bepfile

import (
	"bytes"
	"fmt"
	"strings"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile/wire"
)

// BazelEventTypeURL is the type URL of the Any that carries a Bazel
// build_event_stream.BuildEvent inside an OrderedBuildEvent.
const BazelEventTypeURL = "type.googleapis.com/build_event_stream.BuildEvent"

// Stream is the identity of one event stream as it was read: the decoded
// StreamId, its key, and the exact bytes the StreamId was encoded as.
// A reader hands out one *Stream per distinct stream, shared by all its
// events, so comparing pointers compares streams.
type Stream struct {
	ID  *buildpb.StreamId
	Key string
	// IDBytes is the StreamId's wire encoding as it appeared in the input
	// (or, for raw Bazel files, as bes encodes it).
	IDBytes []byte
	// TypeURL is the Any type URL of the stream's Bazel events.
	TypeURL string
	// Publish holds the request fields that came with the stream's first
	// event when it was read from recorded publish requests
	// (FormatPublish); nil otherwise.
	Publish *PublishInfo
}

// PublishInfo is what a PublishBuildToolEventStreamRequest or
// PublishLifecycleEventRequest carries beside its OrderedBuildEvent.
type PublishInfo struct {
	// Lifecycle is set for a PublishLifecycleEventRequest.
	Lifecycle                            bool
	ProjectID                            string
	NotificationKeywords                 []string
	CheckPrecedingLifecycleEventsPresent bool
}

// NewStream returns the Stream for id, encoding the id canonically.
func NewStream(id *buildpb.StreamId) *Stream {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(id)
	if err != nil {
		// A StreamId has only strings and an enum; Marshal fails only on
		// invalid UTF-8, which callers validate before.
		panic(fmt.Sprintf("bepfile: marshal StreamId: %v", err))
	}
	return &Stream{ID: id, Key: Key(id), IDBytes: b, TypeURL: BazelEventTypeURL}
}

// Key returns BuildGrid's stream key, "<build_id>.<component number>.<invocation_id>".
func Key(id *buildpb.StreamId) string {
	return fmt.Sprintf("%s.%d.%s", id.GetBuildId(), int32(id.GetComponent()), id.GetInvocationId())
}

// Timestamp is a google.protobuf.Timestamp kept as plain integers.
type Timestamp struct {
	Seconds int64
	Nanos   int32
}

// Event is one OrderedBuildEvent of a stream, kept as the bytes it was read
// from and decoded only on demand.
//
// The common case, a Bazel event, is held in its compact form: Payload is the
// value of event.bazel_event (the BuildEvent bytes exactly as Bazel wrote
// them), with the sequence number and the optional event time beside it. The
// full OrderedBuildEvent is then Encode(stream) and is byte-identical to what
// was read. Every other event (lifecycle events, component_stream_finished,
// or an envelope bes would not re-encode identically) is held whole in Raw.
type Event struct {
	// Seq is the sequence number. A Reader sets it for events kept in Raw
	// too, where it is informative only (AppendEncoding ignores it).
	Seq     int64
	HasTime bool
	// index and pos are where a Reader read the event (see Position):
	// the 0-based index of its frame or line, and 1 + the byte offset of
	// its start; pos is 0 for an event no Reader read from an input.
	index int32
	Time  Timestamp
	// Payload is the bazel_event Any value; nil when Raw is set.
	Payload []byte
	// Raw is the whole encoded OrderedBuildEvent; nil when Payload is used.
	Raw []byte
	pos int64
}

// Position returns where the event was read from its input: the byte
// offset of the start of its frame (or JSON line), in the decompressed
// input, and the frame's 0-based index among the input's events, as an
// *Error gives them. ok is false for an event that was not read by a
// Reader (one made from a store, or the component_stream_finished event a
// Reader adds to Bazel's own files), and for frames past index 2^31-1.
// Copies of the event keep it.
func (e *Event) Position() (offset int64, index int, ok bool) {
	if e.pos == 0 {
		return 0, 0, false
	}
	return e.pos - 1, int(e.index), true
}

// setPos records where a Reader read the event.
func (e *Event) setPos(offset int64, index int) {
	if index >= 0 && index <= 1<<31-1 {
		e.pos, e.index = offset+1, int32(index)
	}
}

// IsBazel reports whether the event carries a Bazel BuildEvent payload in
// compact form.
func (e *Event) IsBazel() bool { return e.Raw == nil }

// AppendEncoding appends the event's OrderedBuildEvent wire encoding to b.
func (e *Event) AppendEncoding(b []byte, s *Stream) []byte {
	if e.Raw != nil {
		return append(b, e.Raw...)
	}
	b = protowire.AppendTag(b, wire.OBEStreamID, protowire.BytesType)
	b = protowire.AppendBytes(b, s.IDBytes)
	if e.Seq != 0 {
		b = protowire.AppendTag(b, wire.OBESequenceNumber, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.Seq))
	}
	anyLen := 0
	if len(s.TypeURL) > 0 {
		anyLen += protowire.SizeTag(wire.AnyTypeURL) + protowire.SizeBytes(len(s.TypeURL))
	}
	if len(e.Payload) > 0 {
		anyLen += protowire.SizeTag(wire.AnyValue) + protowire.SizeBytes(len(e.Payload))
	}
	tsLen := 0
	if e.HasTime {
		if e.Time.Seconds != 0 {
			tsLen += protowire.SizeTag(wire.TimestampSeconds) + protowire.SizeVarint(uint64(e.Time.Seconds))
		}
		if e.Time.Nanos != 0 {
			tsLen += protowire.SizeTag(wire.TimestampNanos) + protowire.SizeVarint(uint64(int64(e.Time.Nanos)))
		}
	}
	evLen := protowire.SizeTag(wire.BESBazelEvent) + protowire.SizeBytes(anyLen)
	if e.HasTime {
		evLen += protowire.SizeTag(wire.BESEventTime) + protowire.SizeBytes(tsLen)
	}
	b = protowire.AppendTag(b, wire.OBEEvent, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(evLen))
	if e.HasTime {
		b = protowire.AppendTag(b, wire.BESEventTime, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(tsLen))
		if e.Time.Seconds != 0 {
			b = protowire.AppendTag(b, wire.TimestampSeconds, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(e.Time.Seconds))
		}
		if e.Time.Nanos != 0 {
			b = protowire.AppendTag(b, wire.TimestampNanos, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(int64(e.Time.Nanos)))
		}
	}
	b = protowire.AppendTag(b, wire.BESBazelEvent, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anyLen))
	if len(s.TypeURL) > 0 {
		b = protowire.AppendTag(b, wire.AnyTypeURL, protowire.BytesType)
		b = protowire.AppendString(b, s.TypeURL)
	}
	if len(e.Payload) > 0 {
		b = protowire.AppendTag(b, wire.AnyValue, protowire.BytesType)
		b = protowire.AppendBytes(b, e.Payload)
	}
	return b
}

// Compact turns an event read whole (Raw) into its compact form when the
// compact form re-encodes to exactly the same bytes, and reports whether it
// did. scratch is reused to avoid an allocation per event.
func (e *Event) Compact(s *Stream, scratch []byte) ([]byte, bool) {
	if e.Raw == nil {
		return scratch, true
	}
	c, ok := splitCompact(e.Raw, s)
	if !ok {
		return scratch, false
	}
	scratch = c.AppendEncoding(scratch[:0], s)
	if !bytes.Equal(scratch, e.Raw) {
		return scratch, false
	}
	*e = c
	return scratch, true
}

// splitCompact picks an encoded OrderedBuildEvent apart into the compact
// form, without checking that it re-encodes identically. It walks the wire
// format with protowire and allocates nothing: the Payload aliases raw.
// Anything the compact form cannot hold (other fields, other event kinds,
// a foreign stream id or type URL) makes it fail.
func splitCompact(raw []byte, s *Stream) (Event, bool) {
	var c Event
	var event []byte
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return c, false
		}
		raw = raw[n:]
		switch {
		case num == wire.OBEStreamID && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(raw)
			if n < 0 || !bytes.Equal(v, s.IDBytes) {
				return c, false
			}
			raw = raw[n:]
		case num == wire.OBESequenceNumber && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(raw)
			if n < 0 {
				return c, false
			}
			c.Seq = int64(v)
			raw = raw[n:]
		case num == wire.OBEEvent && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(raw)
			if n < 0 {
				return c, false
			}
			event = v
			raw = raw[n:]
		default:
			return c, false
		}
	}
	sawAny := false
	for len(event) > 0 {
		num, typ, n := protowire.ConsumeTag(event)
		if n < 0 || typ != protowire.BytesType {
			return c, false
		}
		event = event[n:]
		v, n := protowire.ConsumeBytes(event)
		if n < 0 {
			return c, false
		}
		event = event[n:]
		switch num {
		case wire.BESEventTime:
			c.HasTime = true
			if !splitTimestamp(v, &c.Time) {
				return c, false
			}
		case wire.BESBazelEvent:
			sawAny = true
			typeURL, value, ok := splitAny(v)
			if !ok || string(typeURL) != s.TypeURL {
				return c, false
			}
			c.Payload = value
			if c.Payload == nil {
				c.Payload = []byte{}
			}
		default:
			return c, false
		}
	}
	return c, sawAny
}

// splitTimestamp decodes a google.protobuf.Timestamp with only its two
// fields, as varints.
func splitTimestamp(b []byte, ts *Timestamp) bool {
	*ts = Timestamp{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.VarintType {
			return false
		}
		b = b[n:]
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case wire.TimestampSeconds:
			ts.Seconds = int64(v)
		case wire.TimestampNanos:
			ts.Nanos = int32(v)
		default:
			return false
		}
	}
	return true
}

// splitAny returns the type URL and value of an encoded google.protobuf.Any
// with only those two fields. value aliases b.
func splitAny(b []byte) (typeURL, value []byte, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return nil, nil, false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, nil, false
		}
		b = b[n:]
		switch num {
		case wire.AnyTypeURL:
			typeURL = v
		case wire.AnyValue:
			value = v
		default:
			return nil, nil, false
		}
	}
	return typeURL, value, true
}

// OrderedBuildEvent decodes the whole envelope. The Bazel payload stays an
// Any holding the original bytes.
func (e *Event) OrderedBuildEvent(s *Stream) (*buildpb.OrderedBuildEvent, error) {
	obe := &buildpb.OrderedBuildEvent{}
	if err := proto.Unmarshal(e.AppendEncoding(nil, s), obe); err != nil {
		return nil, err
	}
	return obe, nil
}

// BazelPayload returns the encoded build_event_stream.BuildEvent that e, an
// event of stream s, carries: the compact Payload when s's type URL is
// Bazel's BuildEvent's (under any host; s nil takes it to be), or the value
// of a whole OrderedBuildEvent's bazel_event whose type is BuildEvent; nil
// for any other event (lifecycle events, component_stream_finished,
// another tool's payload). It aliases e's bytes.
func (e *Event) BazelPayload(s *Stream) []byte {
	if e.IsBazel() {
		if s != nil && !bazelTypeURL(s.TypeURL) {
			return nil
		}
		return e.Payload
	}
	anyMsg := LastBytesField(LastBytesField(e.Raw, wire.OBEEvent), wire.BESBazelEvent)
	if anyMsg == nil || !bazelTypeURL(string(LastBytesField(anyMsg, wire.AnyTypeURL))) {
		return nil
	}
	if v := LastBytesField(anyMsg, wire.AnyValue); v != nil {
		return v
	}
	return []byte{} // an empty BuildEvent
}

// bazelTypeURL reports whether an Any type URL is Bazel's BuildEvent's
// (type.googleapis.com/build_event_stream.BuildEvent, or another host).
func bazelTypeURL(url string) bool {
	return strings.HasSuffix(url, "/build_event_stream.BuildEvent")
}
