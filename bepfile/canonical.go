package bepfile

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

var (
	canonIn  = proto.UnmarshalOptions{DiscardUnknown: true}
	canonOut = proto.MarshalOptions{Deterministic: true}
)

// CanonicalBuildEvent returns the canonical encoding of an encoded
// build_event_stream.BuildEvent: the message decoded, the fields bes does
// not know dropped, and encoded again deterministically (fields in number
// order, map entries in key order). The bytes Bazel writes to its binary
// file and the event bes reads back from Bazel's JSON file (Java's and Go's
// encoders order fields and map entries differently) have one canonical
// encoding. A string that is not UTF-8 (bazelbuild/bazel#11125) is read
// as DecodeBuildEvent reads it, each bad byte U+FFFD. ok is false, and
// canon is payload itself, when payload does not decode at its top level.
//
// The canonical encoding is what makes two inputs "the same event"; it is
// stable for a given schema (bepfile/proto) and protobuf-go's encoder.
func CanonicalBuildEvent(payload []byte) (canon []byte, ok bool) {
	msg := &buildeventstream.BuildEvent{}
	if err := canonIn.Unmarshal(payload, msg); err != nil {
		// By the one lenient rule (DecodeBuildEvent): invalid UTF-8 as
		// U+FFFD, as the JSON file of the same event holds it.
		msg.Reset()
		if _, err := DecodeBuildEvent(payload, msg); err != nil {
			return payload, false
		}
		dropUnknown(msg.ProtoReflect())
	}
	b, err := canonOut.Marshal(msg)
	if err != nil {
		return payload, false
	}
	return b, true
}

// dropUnknown clears the unknown fields of m and of every message in it.
func dropUnknown(m protoreflect.Message) {
	m.SetUnknown(nil)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				dropUnknown(l.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				dropUnknown(mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			dropUnknown(v.Message())
		}
		return true
	})
}

// SynthesizedIDPrefix starts the invocation id bes gives a stream read from
// one of Bazel's own files (FormatBEP, FormatNDJSON) whose first event
// names no invocation: a BuildStarted without uuid (every `bazel query` of
// Bazel 4 writes one) or an excerpt that starts after BuildStarted. The id
// is SynthesizedIDPrefix followed by the first 32 hex digits of the
// SHA-256 of the CanonicalBuildEvent of the stream's first event, e.g.
// "nouuid-3f2a…": the binary and the JSON file of one run get the same id,
// different runs (whose BuildStarted differ at least in start time)
// different ones. Bazel's invocation ids are UUIDs, so none starts so.
const SynthesizedIDPrefix = "nouuid-"

// IsSynthesizedID reports whether an invocation id is one bes made up for
// a stream Bazel gave none (see SynthesizedIDPrefix): views show
// "(no invocation id)" in its place.
func IsSynthesizedID(invocationID string) bool {
	return strings.HasPrefix(invocationID, SynthesizedIDPrefix)
}

// synthesizedID returns the invocation id of a stream whose first event,
// payload, names none (see SynthesizedIDPrefix).
func synthesizedID(payload []byte) string {
	canon, _ := CanonicalBuildEvent(payload)
	sum := sha256.Sum256(canon)
	return SynthesizedIDPrefix + hex.EncodeToString(sum[:16])
}
