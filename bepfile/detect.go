package bepfile

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/wire"
)

// Form detection. The reader peeks at a bounded prefix of the input (at
// most peekSize bytes, and no more than the first line or frame when that
// is enough) and decides:
//
//   - NDJSON (Bazel's JSON file, or JSON BuildEvents laid out otherwise) if
//     the first non-space byte is '{' and the first JSON value is an object
//     with an "id" member (every BuildEvent has one; Bazel writes it
//     first), or, if the value goes on beyond the prefix (or, at the end of
//     the input, is cut off), the prefix is valid JSON so far and its first
//     member is named as a BuildEvent field. The value may be one line, as
//     Bazel writes it, or several (`jq . build.json`). The byte '{' (0x7b)
//     is also a valid length prefix, and a PublishBuildToolEventStreamRequest
//     of 123 bytes starts with `{"`, but the bytes of a binary frame are no
//     JSON for long (a control byte in a string, a byte that is no token),
//     so such input falls through to the binary forms.
//   - Otherwise the first frames in the prefix (a frame cut off by the end
//     of the prefix is checked as far as it goes) are checked structurally,
//     with protowire, against each binary form: FormatOBE, then FormatBEP,
//     then FormatPublish; the first form all of them fit wins. The checks
//     are strict about the fields Bazel writes (numbers and wire types), so
//     the forms do not overlap in practice: an OrderedBuildEvent has a
//     varint field 2 where a BuildEvent has length-delimited children, a
//     BuildEventId holds only length-delimited fields where a StreamId has a
//     varint component, and publish requests start with fields 4 or 1/2.
//   - An input that ends inside its first event, a JSON value or a binary
//     frame, is cut short whatever its form (issue 13): if what it holds is
//     the beginning of one (a '{' and the start of a BuildEvent member's
//     name; a length prefix, complete or not, and a frame whose fields fit
//     a form as far as they go), the form is taken as it, and the reader
//     reports the cut as for any other event (io.ErrUnexpectedEOF, exit 3).
//     A binary frame cut before it shows a field is taken as FormatBEP.

// maxDetectFrames is how many frames of the prefix the detection checks.
const maxDetectFrames = 8

// enoughToDetect reports whether p, a prefix of the input, is enough to
// decide the form: it holds the first JSON value, or its first member name
// (for what may be JSON), or the first frame.
func enoughToDetect(p []byte) bool {
	if i := firstNonSpace(p); i >= 0 && p[i] == '{' {
		if _, ok := firstKey(p[i:]); ok {
			return true
		}
		var sc jsonScanner
		if _, res := sc.scan(p[i:]); res != scanMore {
			return true
		}
		if i > 0 {
			return false
		}
		// Or a binary frame of length 123.
	}
	size, n := protowire.ConsumeVarint(p)
	return n > 0 && uint64(len(p)-n) >= size
}

// detect decides the form of an input that starts with p; eof says that p
// is the whole input. It returns FormatAuto if the input is no BEP.
//
// A binary form fits if the first frame passes its check; among the forms
// that fit, the one whose check the most leading frames of p pass wins, and
// then the first in the order OBE, BEP, publish. A later frame that fails
// does not change the form: the reader reports it in its place.
func detect(p []byte, eof bool) Format {
	if looksLikeJSON(p, eof) {
		return FormatNDJSON
	}
	if eof && cutJSONStart(p) {
		return FormatNDJSON
	}
	if eof && len(p) > 0 && firstNonSpace(p) < 0 {
		// Only blank lines: a JSON file without events (an empty input),
		// not a binary frame whose length is '\n' (10) cut short.
		return FormatNDJSON
	}
	best, bestScore := FormatAuto, 0
	for _, c := range []struct {
		f     Format
		check func(b []byte, partial bool) bool
	}{
		{FormatOBE, checkOBE},
		{FormatBEP, checkBEP},
		{FormatPublish, checkPublish},
	} {
		if n := framesFit(p, c.check); n > bestScore {
			best, bestScore = c.f, n
		}
	}
	if best == FormatAuto && eof && cutFrameStart(p) {
		return FormatBEP
	}
	return best
}

// cutJSONStart reports whether p, the whole input, is the beginning of a
// JSON BuildEvent cut before the name of its first member ends: '{', and
// then nothing, or the start of a name that a BuildEvent field's name (JSON
// or proto) begins with.
func cutJSONStart(p []byte) bool {
	i := firstNonSpace(p)
	if i < 0 || p[i] != '{' {
		return false
	}
	p = p[i+1:]
	if i = firstNonSpace(p); i < 0 {
		return true
	}
	if p[i] != '"' {
		return false
	}
	name := p[i+1:]
	if bytes.IndexByte(name, '\\') >= 0 || bytes.IndexByte(name, '"') >= 0 {
		return false // an escape, or a name that ends: looksLikeJSON judged it
	}
	fields := (*buildeventstream.BuildEvent)(nil).ProtoReflect().Descriptor().Fields()
	for j := 0; j < fields.Len(); j++ {
		fd := fields.Get(j)
		if strings.HasPrefix(fd.JSONName(), string(name)) || strings.HasPrefix(string(fd.Name()), string(name)) {
			return true
		}
	}
	return false
}

// cutFrameStart reports whether p, the whole input, is the beginning of a
// binary frame cut before any of its fields shows: a length prefix cut
// short, or a whole one and nothing after it (framesFit checks a frame cut
// later).
func cutFrameStart(p []byte) bool {
	size, n := protowire.ConsumeVarint(p)
	if n < 0 {
		return protowire.ParseError(n) == io.ErrUnexpectedEOF
	}
	return n == len(p) && size > 0
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func firstNonSpace(p []byte) int {
	for i, c := range p {
		if !isSpace(c) {
			return i
		}
	}
	return -1
}

// looksLikeJSON reports whether p starts with a JSON BuildEvent (see the
// form detection above).
func looksLikeJSON(p []byte, eof bool) bool {
	i := firstNonSpace(p)
	if i < 0 || p[i] != '{' {
		return false
	}
	p = p[i:]
	var sc jsonScanner
	switch n, res := sc.scan(p); res {
	case scanDone:
		var obj map[string]json.RawMessage
		if json.Unmarshal(p[:n], &obj) != nil {
			return false
		}
		_, ok := obj["id"]
		return ok
	case scanError:
		return false
	}
	// The value goes on beyond p.
	if !utf8.Valid(p[:max(0, len(p)-utf8.UTFMax)]) {
		return false
	}
	key, ok := firstKey(p)
	if !ok {
		return false
	}
	fields := (*buildeventstream.BuildEvent)(nil).ProtoReflect().Descriptor().Fields()
	return fields.ByJSONName(key) != nil || fields.ByTextName(key) != nil
}

// firstKey returns the name of the first member of the JSON object that p
// starts with, if p holds it whole and it has no escapes.
func firstKey(p []byte) (string, bool) {
	i := 1 // after '{'
	for i < len(p) && isSpace(p[i]) {
		i++
	}
	if i == len(p) || p[i] != '"' {
		return "", false
	}
	for j := i + 1; j < len(p); j++ {
		switch c := p[j]; {
		case c == '"':
			return string(p[i+1 : j]), true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// framesFit returns how many of the frames at the start of p (at most
// maxDetectFrames) pass check, up to the first that fails. A frame cut off
// by the end of p is checked as far as it goes.
func framesFit(p []byte, check func(b []byte, partial bool) bool) int {
	for i := 0; i < maxDetectFrames; i++ {
		size, n := protowire.ConsumeVarint(p)
		if n < 0 {
			return i
		}
		p = p[n:]
		if uint64(len(p)) < size {
			if check(p, true) {
				return i + 1
			}
			return i
		}
		if !check(p[:size], false) {
			return i
		}
		p = p[size:]
	}
	return maxDetectFrames
}

// walkFields calls f for each field of the encoded message b. For a
// length-delimited field, v is its content and vPartial says it was cut off
// by the end of b; for other fields v is nil. If partial, b may end in the
// middle of a field, which ends the walk successfully. Groups are refused.
// walkFields fails when b is malformed or f returns false.
func walkFields(b []byte, partial bool, f func(num protowire.Number, typ protowire.Type, v []byte, vPartial bool) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return partial && protowire.ParseError(n) == io.ErrUnexpectedEOF
		}
		b = b[n:]
		switch typ {
		case protowire.BytesType:
			size, n := protowire.ConsumeVarint(b)
			if n < 0 {
				// Cut in its length: its number and type still count.
				return partial && protowire.ParseError(n) == io.ErrUnexpectedEOF && f(num, typ, nil, true)
			}
			b = b[n:]
			if uint64(len(b)) < size {
				return partial && f(num, typ, b, true)
			}
			if !f(num, typ, b[:size], false) {
				return false
			}
			b = b[size:]
		case protowire.VarintType, protowire.Fixed32Type, protowire.Fixed64Type:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return partial && protowire.ParseError(n) == io.ErrUnexpectedEOF && f(num, typ, nil, false)
			}
			if !f(num, typ, nil, false) {
				return false
			}
			b = b[n:]
		default:
			return false
		}
	}
	return true
}

// validPrefix reports whether s is valid UTF-8, but for an incomplete rune
// at its end if partial.
func validPrefix(s []byte, partial bool) bool {
	if partial && len(s) > 0 {
		s = s[:max(0, len(s)-utf8.UTFMax)]
	}
	return utf8.Valid(s)
}

// checkOBE checks an OrderedBuildEvent: stream_id (1) first, then
// sequence_number (2, varint) and event (3).
func checkOBE(b []byte, partial bool) bool {
	first := true
	return walkFields(b, partial, func(num protowire.Number, typ protowire.Type, v []byte, vp bool) bool {
		if first && num != wire.OBEStreamID {
			return false
		}
		first = false
		switch {
		case num == wire.OBEStreamID && typ == protowire.BytesType:
			return checkStreamID(v, vp)
		case num == wire.OBESequenceNumber && typ == protowire.VarintType:
			return true
		case num == wire.OBEEvent && typ == protowire.BytesType:
			return checkV1Event(v, vp)
		}
		return false
	}) && !first
}

// checkStreamID checks a StreamId: build_id (1), component (3, varint),
// invocation_id (6).
func checkStreamID(b []byte, partial bool) bool {
	return walkFields(b, partial, func(num protowire.Number, typ protowire.Type, v []byte, vp bool) bool {
		switch {
		case (num == wire.StreamIDBuildID || num == wire.StreamIDInvocationID) && typ == protowire.BytesType:
			return validPrefix(v, vp)
		case num == wire.StreamIDComponent && typ == protowire.VarintType:
			return true
		}
		return false
	})
}

// checkV1Event checks a google.devtools.build.v1.BuildEvent: event_time (1)
// and one of the event kinds (51 to 62), all messages.
func checkV1Event(b []byte, partial bool) bool {
	return walkFields(b, partial, func(num protowire.Number, typ protowire.Type, v []byte, vp bool) bool {
		if typ != protowire.BytesType {
			return false
		}
		if num == wire.BESEventTime {
			return walkFields(v, vp, func(num protowire.Number, typ protowire.Type, _ []byte, _ bool) bool {
				return (num == wire.TimestampSeconds || num == wire.TimestampNanos) && typ == protowire.VarintType
			})
		}
		return num >= 50 && num <= 62
	})
}

// checkBEP checks a build_event_stream.BuildEvent: id (1) first, children
// (2), last_message (20, varint) and payloads (3 to 40 but the reserved 11
// and 19), all messages. A field over 40, of any wire type, is one a Bazel
// newer than bes may add (issue 10: an unknown field never costs the file):
// the id and children checks keep the form apart from the others.
func checkBEP(b []byte, partial bool) bool {
	first := true
	return walkFields(b, partial, func(num protowire.Number, typ protowire.Type, v []byte, vp bool) bool {
		if first && num != wire.BuildEventID {
			return false
		}
		first = false
		switch {
		case num == wire.BuildEventLastMessage:
			return typ == protowire.VarintType
		case num > 40:
			return true
		case typ != protowire.BytesType:
			return false
		case num == wire.BuildEventID || num == wire.BuildEventChildren:
			return checkBuildEventID(v, vp)
		}
		return num >= 3 && num != 11 && num != 19
	}) && !first
}

// checkBuildEventID checks a BuildEventId: a oneof of messages (numbered 1
// to 40 today; a newer Bazel's id kinds are messages too).
func checkBuildEventID(b []byte, partial bool) bool {
	if len(b) == 0 {
		return partial
	}
	return walkFields(b, partial, func(num protowire.Number, typ protowire.Type, _ []byte, _ bool) bool {
		return typ == protowire.BytesType
	})
}

// checkPublish checks a PublishBuildToolEventStreamRequest or a
// PublishLifecycleEventRequest.
func checkPublish(b []byte, partial bool) bool {
	return checkToolRequest(b, partial) || checkLifecycleRequest(b, partial)
}

// checkToolRequest checks a PublishBuildToolEventStreamRequest:
// ordered_build_event (4), notification_keywords (5), project_id (6),
// check_preceding_lifecycle_events_present (7, varint); 4 is required.
func checkToolRequest(b []byte, partial bool) bool {
	seen := false
	return walkFields(b, partial, func(num protowire.Number, typ protowire.Type, v []byte, vp bool) bool {
		switch {
		case num == wire.ToolRequestOrderedBuildEvent && typ == protowire.BytesType:
			seen = true
			return checkOBE(v, vp)
		case (num == wire.ToolRequestNotificationKeywords || num == wire.ToolRequestProjectID) && typ == protowire.BytesType:
			return validPrefix(v, vp)
		case num == wire.ToolRequestCheckPrecedingLifecycleEventsPresent && typ == protowire.VarintType:
			return true
		}
		return false
	}) && seen
}

// checkLifecycleRequest checks a PublishLifecycleEventRequest:
// service_level (1, varint), build_event (2), stream_timeout (3),
// notification_keywords (4), project_id (6),
// check_preceding_lifecycle_events_present (7, varint); 2 is required.
func checkLifecycleRequest(b []byte, partial bool) bool {
	seen := false
	return walkFields(b, partial, func(num protowire.Number, typ protowire.Type, v []byte, vp bool) bool {
		switch {
		case (num == wire.LifecycleRequestServiceLevel || num == wire.LifecycleRequestCheckPrecedingLifecycleEventsPresent) && typ == protowire.VarintType:
			return true
		case num == wire.LifecycleRequestBuildEvent && typ == protowire.BytesType:
			seen = true
			return checkOBE(v, vp)
		case num == wire.LifecycleRequestStreamTimeout && typ == protowire.BytesType:
			return true
		case (num == wire.LifecycleRequestNotificationKeywords || num == wire.LifecycleRequestProjectID) && typ == protowire.BytesType:
			return validPrefix(v, vp)
		}
		return false
	}) && seen
}
