// Package bepjson writes OrderedBuildEvents as JSON: protojson of
// google.devtools.build.v1.OrderedBuildEvent with the Bazel payload
// decoded under event.bazelEvent in Bazel's own JSON field names (the JSON
// of --build_event_json_file), one per line ([WriteNDJSON]) or as an array
// of BuildGrid BuildEventStream messages ([WriteJSON]). It is what
// `bes dump` and `bes query` print with --format ndjson and json.
//
// Every event is read by the lenient rule of [bepfile.DecodeBuildEvent]:
// one bad event never costs the others. A string that is not UTF-8 is
// written with U+FFFD, a nested message that is not well-formed with what
// decodes of it, a payload of a type bes does not know as protojson writes
// an Any it cannot resolve ({"@type": URL, "value": BASE64}), and an event
// that cannot be decoded at all, or a frame a reader skipped, as an error
// object in its place (see [Encoder]). What each event's decoding found is
// returned as a [Report]; saying so (on standard error) is the caller's.
//
// A Bazel event in compact form takes a fast path that writes the
// envelope's JSON directly and puts only the payload through protojson;
// it gives the JSON values of the general path (TestFastPath).
package bepjson

import (
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/wire"
)

// Report is what reading one event the lenient way found (the rule of
// bepfile.DecodeBuildEvent).
type Report struct {
	// Damage is what the lenient decoding of the Bazel payload repaired,
	// and the fields and enum values it does not know.
	Damage bepfile.Damage
	// Err is set when the event's Bazel payload could not be decoded at
	// all: the JSON holds an error object in its place.
	Err error
	// Foreign is the type URL of a payload of a type bes does not know
	// (another build tool's events through a BES): the JSON holds it as
	// protojson writes an Any it cannot resolve, type and base64 value.
	Foreign string
}

// Bad reports whether the event counts as damaged input (bes exits 9).
func (r *Report) Bad() bool { return r.Err != nil || r.Foreign != "" || r.Damage.Damaged() }

// Inspect checks ev as the encoder would decode it, without decoding the
// payload into a message: a table of events reports what the JSON formats
// report. It is safe for concurrent use.
func Inspect(ev *bepfile.Event) Report {
	var rep Report
	payload := ev.Payload
	if !ev.IsBazel() {
		typeURL, value, ok := bazelAny(ev.Raw)
		switch {
		case !ok:
			return rep // no Bazel payload: the envelope was checked when read
		case typeURL != bepfile.BazelEventTypeURL:
			if !knownType(typeURL) {
				rep.Foreign = typeURL
			}
			return rep
		}
		payload = value
	}
	rep.Damage, rep.Err = bepfile.CheckBuildEvent(payload)
	return rep
}

// bazelAny returns the type URL and value of the event.bazel_event Any of
// an encoded OrderedBuildEvent, walking the wire.
func bazelAny(raw []byte) (typeURL string, value []byte, ok bool) {
	event := bepfile.LastBytesField(raw, wire.OBEEvent)
	if event == nil {
		return "", nil, false
	}
	var anyMsg []byte
	found := false
	bepfile.EachField(event, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		if num == wire.BESBazelEvent && typ == protowire.BytesType {
			anyMsg, found = v, true
		}
	})
	if !found {
		return "", nil, false
	}
	bepfile.EachField(anyMsg, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		switch {
		case num == wire.AnyTypeURL && typ == protowire.BytesType:
			typeURL = string(v)
		case num == wire.AnyValue && typ == protowire.BytesType:
			value = v
		}
	})
	return typeURL, value, true
}

// knownType reports whether protojson can resolve the type URL.
func knownType(typeURL string) bool {
	_, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	return err == nil
}

// jsonOpts marshal as the package writes: Any values of a type bes does
// not know resolve to lenientResolver's BytesValue.
var jsonOpts = protojson.MarshalOptions{Resolver: lenientResolver{}}

// Marshal returns the protojson of m as the package writes it (compact,
// with the lenient resolver of Any types: see the package doc).
func Marshal(m proto.Message) ([]byte, error) { return jsonOpts.Marshal(m) }

// lenientResolver resolves Any type URLs for protojson as the global
// registry does, and any other to google.protobuf.BytesValue: an Any whose
// value fixAny wrapped in a BytesValue then prints as protojson prints a
// message with a JSON form of its own, {"@type": URL, "value": base64}.
type lenientResolver struct{}

func (lenientResolver) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	return protoregistry.GlobalTypes.FindMessageByName(name)
}

func (lenientResolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if mt, err := protoregistry.GlobalTypes.FindMessageByURL(url); err == nil {
		return mt, nil
	}
	return bytesValueType, nil
}

func (lenientResolver) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByName(name)
}

func (lenientResolver) FindExtensionByNumber(m protoreflect.FullName, n protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByNumber(m, n)
}

var bytesValueType = (&wrapperspb.BytesValue{}).ProtoReflect().Type()

// fixAny prepares the bazel_event Any of obe for protojson by the lenient
// rule: a Bazel payload is decoded with bepfile.DecodeBuildEvent and, if
// damaged, replaced by the encoding of the repaired message (obe is a
// decoded copy: the stored bytes are not touched); the value of a type bes
// does not know is wrapped for lenientResolver. msg is scratch space.
func fixAny(obe *buildpb.OrderedBuildEvent, msg *bes.BuildEvent) Report {
	var rep Report
	a := obe.GetEvent().GetBazelEvent()
	if a == nil {
		return rep
	}
	switch {
	case a.GetTypeUrl() == bepfile.BazelEventTypeURL:
		rep.Damage, rep.Err = bepfile.DecodeBuildEvent(a.GetValue(), msg)
		if rep.Err == nil && rep.Damage.Damaged() {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
			if err != nil {
				rep.Err = err
				return rep
			}
			a.Value = b
		}
	case !knownType(a.GetTypeUrl()):
		rep.Foreign = a.GetTypeUrl()
		b, err := proto.Marshal(wrapperspb.Bytes(a.GetValue()))
		if err != nil {
			rep.Err = err
			return rep
		}
		a.Value = b
	}
	return rep
}
