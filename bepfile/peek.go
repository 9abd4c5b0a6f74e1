package bepfile

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile/wire"
)

// payloadKinds maps the field numbers of BuildEvent's oneof payload to their
// JSON names (lowerCamelCase of the field name, as in Bazel's
// --build_event_json_file). The numbers 11 and 19 are reserved, 1, 2 and 20
// are not payloads, no Bazel declares 31.
var payloadKinds = [...]string{
	wire.BuildEventProgress:                      "progress",
	wire.BuildEventAborted:                       "aborted",
	wire.BuildEventStarted:                       "started",
	wire.BuildEventExpanded:                      "expanded",
	wire.BuildEventAction:                        "action",
	wire.BuildEventCompleted:                     "completed",
	wire.BuildEventTestSummary:                   "testSummary",
	wire.BuildEventTestResult:                    "testResult",
	wire.BuildEventUnstructuredCommandLine:       "unstructuredCommandLine",
	wire.BuildEventOptionsParsed:                 "optionsParsed",
	wire.BuildEventFinished:                      "finished",
	wire.BuildEventNamedSetOfFiles:               "namedSetOfFiles",
	wire.BuildEventWorkspaceStatus:               "workspaceStatus",
	wire.BuildEventConfiguration:                 "configuration",
	wire.BuildEventConfigured:                    "configured",
	wire.BuildEventFetch:                         "fetch",
	wire.BuildEventStructuredCommandLine:         "structuredCommandLine",
	wire.BuildEventBuildToolLogs:                 "buildToolLogs",
	wire.BuildEventBuildMetrics:                  "buildMetrics",
	wire.BuildEventWorkspaceInfo:                 "workspaceInfo",
	wire.BuildEventBuildMetadata:                 "buildMetadata",
	wire.BuildEventConvenienceSymlinksIdentified: "convenienceSymlinksIdentified",
	wire.BuildEventTargetSummary:                 "targetSummary",
	wire.BuildEventExecRequest:                   "execRequest",
	wire.BuildEventTestProgress:                  "testProgress",
	wire.BuildEventSkyvalueUploaded:              "skyvalueUploaded",
}

// idOnlyKinds maps the field numbers of BuildEventId's oneof id that name
// events Bazel posts without any payload to their JSON names. Such an event
// is named by its id: BuildEventId.coverage_actions_finished (27), which
// Bazel 7.0-7.1 post as {"id":{"coverageActionsFinished":{}}}.
var idOnlyKinds = map[protowire.Number]string{
	wire.IDCoverageActionsFinished: "coverageActionsFinished",
}

// KindName returns the JSON name of BuildEvent's payload field num, e.g.
// "testResult" for 10, or "" if num is not a payload field bes knows.
func KindName(num protowire.Number) string {
	if num > 0 && int(num) < len(payloadKinds) {
		return payloadKinds[num]
	}
	return ""
}

// KindField returns the field number of the BuildEvent payload whose JSON
// name is kind (e.g. 10 for "testResult"), and whether there is one.
func KindField(kind string) (protowire.Number, bool) {
	if kind == "" {
		return 0, false
	}
	for n, k := range payloadKinds {
		if k == kind {
			return protowire.Number(n), true
		}
	}
	return 0, false
}

// Kinds returns the names of all event kinds bes knows: the JSON names of
// BuildEvent's payloads, ordered by field number, then those of the ids of
// events Bazel posts without a payload ("coverageActionsFinished").
func Kinds() []string {
	var ks []string
	for _, k := range payloadKinds {
		if k != "" {
			ks = append(ks, k)
		}
	}
	return append(ks, idOnlyKinds[wire.IDCoverageActionsFinished])
}

// Peeked is what Peek finds in an encoded build_event_stream.BuildEvent.
// Its byte slices alias the encoding.
type Peeked struct {
	// ID is the encoding of the BuildEventId (field 1), nil if absent.
	ID []byte
	// PayloadField is the field number of the payload (a member of the
	// oneof payload bes knows, see KindName), 0 if there is none. If several
	// are present, the last wins, as in protobuf.
	PayloadField protowire.Number
	// Payload is the encoding of the payload message.
	Payload []byte
	// LastMessage is the value of last_message (field 20).
	LastMessage bool
}

// Rebase returns p for a copy of the event it was found in: p was found in
// old, and dst holds the same bytes as old. The slices of the result alias
// dst.
func (p Peeked) Rebase(old, dst []byte) Peeked {
	p.ID = rebase(p.ID, old, dst)
	p.Payload = rebase(p.Payload, old, dst)
	return p
}

// rebase returns the part of dst that sub is of old. sub must be a
// subslice of old made by reslicing (as protowire's Consume functions
// do), so that its offset in old is the difference of their capacities.
func rebase(sub, old, dst []byte) []byte {
	if sub == nil {
		return nil
	}
	off := cap(old) - cap(sub)
	return dst[off : off+len(sub) : off+len(sub)]
}

// Kind returns the JSON name of the payload, e.g. "testResult". An event
// without a payload bes knows is named by its id when Bazel posts events of
// that id with no payload at all: "coverageActionsFinished" (Bazel 7.0-7.1).
// Otherwise "" if there is no payload.
func (p *Peeked) Kind() string {
	if k := KindName(p.PayloadField); k != "" {
		return k
	}
	if p.ID == nil {
		return ""
	}
	return idOnlyKinds[idFieldOf(p.ID)]
}

// idFieldOf returns the field number of the last length-delimited field of
// an encoded BuildEventId (its oneof id member), 0 if there is none or the
// encoding is malformed.
func idFieldOf(id []byte) protowire.Number {
	var num protowire.Number
	for b := id; len(b) > 0; {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0
		}
		b = b[l:]
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return 0
		}
		b = b[l:]
		if typ == protowire.BytesType {
			num = n
		}
	}
	return num
}

// errWireType reports a known field with the wrong wire type.
func errWireType(msg string, num protowire.Number, got, want protowire.Type) error {
	return fmt.Errorf("%s field %d has wire type %s, want %s", msg, num, wireTypeName(got), wireTypeName(want))
}

func wireTypeName(t protowire.Type) string {
	switch t {
	case protowire.VarintType:
		return "varint"
	case protowire.Fixed32Type:
		return "fixed32"
	case protowire.Fixed64Type:
		return "fixed64"
	case protowire.BytesType:
		return "length-delimited"
	case protowire.StartGroupType:
		return "start-group"
	case protowire.EndGroupType:
		return "end-group"
	}
	return fmt.Sprintf("%d", t)
}

// Peek walks the top-level fields of an encoded BuildEvent once, without
// decoding the messages inside, and returns its id, payload and
// last_message. It fails if the encoding is not well-formed protobuf at the
// top level or a known field has the wrong wire type; unknown fields are
// skipped.
func Peek(event []byte) (Peeked, error) {
	var p Peeked
	b := event
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return p, fmt.Errorf("BuildEvent: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == wire.BuildEventLastMessage:
			if typ != protowire.VarintType {
				return p, errWireType("BuildEvent", num, typ, protowire.VarintType)
			}
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return p, fmt.Errorf("BuildEvent field %d: %w", num, protowire.ParseError(n))
			}
			p.LastMessage = v != 0
			b = b[n:]
		case num == wire.BuildEventID || num == wire.BuildEventChildren || KindName(num) != "":
			if typ != protowire.BytesType {
				return p, errWireType("BuildEvent", num, typ, protowire.BytesType)
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return p, fmt.Errorf("BuildEvent field %d: %w", num, protowire.ParseError(n))
			}
			switch num {
			case wire.BuildEventID:
				p.ID = v
			case wire.BuildEventChildren:
			default:
				p.PayloadField, p.Payload = num, v
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return p, fmt.Errorf("BuildEvent field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return p, nil
}

// PayloadKind returns Bazel's JSON name of the payload present in an encoded
// BuildEvent (an Event's Payload), e.g. "started", "testResult",
// "progress", or for an event Bazel posts without payload the name of its
// id ("coverageActionsFinished", see Peeked.Kind); "" if there is none, the
// kind is unknown to bes, or the encoding is malformed.
func PayloadKind(payload []byte) string {
	p, err := Peek(payload)
	if err != nil {
		return ""
	}
	return p.Kind()
}

// startedUUIDOf returns BuildStarted.uuid from the encoding of a BuildStarted
// message.
func startedUUIDOf(started []byte) (string, error) {
	var uuid []byte
	for b := started; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", fmt.Errorf("BuildStarted: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num == wire.BuildStartedUUID {
			if typ != protowire.BytesType {
				return "", errWireType("BuildStarted", num, typ, protowire.BytesType)
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", fmt.Errorf("BuildStarted field %d: %w", num, protowire.ParseError(n))
			}
			uuid = v
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", fmt.Errorf("BuildStarted field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	if !utf8.Valid(uuid) {
		return "", errors.New("BuildStarted.uuid is not valid UTF-8")
	}
	return string(uuid), nil
}
