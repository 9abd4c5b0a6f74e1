package bepfile

import "fmt"

// Format is the form of a BEP input.
type Format int

const (
	// FormatAuto detects the form from the start of the input.
	FormatAuto Format = iota
	// FormatOBE is varint-delimited google.devtools.build.v1.OrderedBuildEvent
	// messages, possibly of several streams. Each event is held in compact
	// form when that re-encodes to the very same bytes (as Bazel's events
	// do), else whole in Raw (lifecycle and component_stream_finished
	// events).
	FormatOBE
	// FormatBEP is Bazel's --build_event_binary_file: varint-delimited
	// build_event_stream.BuildEvent messages. The reader wraps them as
	// Bazel's BES client does: stream id {build_id: Options.BuildID or else
	// the invocation id, invocation_id: BuildStarted.uuid of the first event
	// ("" if the first event is no BuildStarted, or, like Bazel 4.2's
	// query, has no uuid), component: TOOL}, sequence numbers from 1, the
	// payload the frame's bytes unchanged and no event time; after the
	// event with last_message comes one more event,
	// component_stream_finished {type: FINISHED}, kept in Raw. A following
	// event (of concatenated files) starts a new stream; should it have the
	// same key, it is the same *Stream, numbered from 1 again.
	FormatBEP
	// FormatPublish is varint-delimited PublishBuildToolEventStreamRequest
	// and PublishLifecycleEventRequest messages, in any mix, as a recording
	// BES proxy writes them. The reader yields their OrderedBuildEvents as
	// for FormatOBE; the other request fields are in Stream.Publish.
	FormatPublish
	// FormatNDJSON is Bazel's --build_event_json_file: one JSON BuildEvent
	// per line, in the proto3 JSON mapping; or JSON BuildEvents laid out
	// otherwise, one after the other: pretty-printed over several lines
	// (`jq . build.json`), several on one line. Each value is parsed
	// (unknown fields are dropped, see Reader.Found) and encoded
	// deterministically as the payload, then wrapped as for FormatBEP.
	// White space between values is skipped; a value is bounded by
	// Options.MaxEventSize. What is not JSON is skipped, with a resumable
	// error, up to the next line that starts with '{'; a value cut off at
	// the end of the input is a truncation (wrapping io.ErrUnexpectedEOF).
	FormatNDJSON
)

var formatNames = [...]string{
	FormatAuto:    "auto",
	FormatOBE:     "obe",
	FormatBEP:     "bep",
	FormatPublish: "publish",
	FormatNDJSON:  "ndjson",
}

// String returns the format's name as ParseFormat accepts it.
func (f Format) String() string {
	if f >= 0 && int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat parses a format name: "auto", "obe", "bep", "publish" or
// "ndjson".
func ParseFormat(s string) (Format, error) {
	for f, name := range formatNames {
		if s == name {
			return Format(f), nil
		}
	}
	return 0, fmt.Errorf("unknown input format %q (want auto, obe, bep, publish or ndjson)", s)
}
