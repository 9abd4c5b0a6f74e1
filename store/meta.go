package store

import (
	"strings"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/wire"
)

// Meta is a summary of a stream gathered by a cheap pass over its events as
// they go by: only a few fields of the BuildStarted and BuildFinished events
// are decoded, everything else is skipped on the wire. The zero value is
// ready to use. A Meta is not safe for concurrent use.
type Meta struct {
	Events int64 // events observed
	// Complete is set when the stream ended properly: with a
	// component_stream_finished event (which Bazel's BES client sends after
	// the event with last_message, and bepfile adds to Bazel's own files),
	// or with the last event of a lifecycle stream. A tool stream cut after
	// last_message but before its finish event is not complete: a server
	// killed between the two has not received the whole stream.
	Complete bool

	UUID    string // BuildStarted.uuid (the invocation id)
	Command string // BuildStarted.command ("build", "test", …)
	Start   time.Time

	Result      string // BuildFinished.exit_code.name ("SUCCESS", …)
	ExitCode    int32  // BuildFinished.exit_code.code
	HasExitCode bool
	Finish      time.Time
}

// Observe folds one event into m. Compact events are read as Bazel
// BuildEvents; Raw events are read as OrderedBuildEvents, looking at the
// component_stream_finished marker and at a Bazel payload under any type URL
// naming build_event_stream.BuildEvent. Malformed bytes are ignored: Meta
// is best effort and never fails.
func (m *Meta) Observe(ev *bepfile.Event) {
	m.Events++
	if ev.Raw == nil {
		m.observeBazel(ev.Payload)
		return
	}
	var eventTime time.Time
	lifecycle := false
	bepfile.EachField(bepfile.LastBytesField(ev.Raw, wire.OBEEvent), func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		if typ != protowire.BytesType {
			return
		}
		switch num {
		case wire.BESEventTime:
			eventTime = timestamp(v)
		case wire.BESInvocationAttemptStarted, wire.BESBuildEnqueued:
			lifecycle = true
		case wire.BESComponentStreamFinished:
			m.Complete = true
		case wire.BESBuildFinished, wire.BESInvocationAttemptFinished:
			// The last event of a build's, or of an invocation's,
			// lifecycle stream; its BuildStatus result is the outcome.
			m.Complete = true
			lifecycle = true
			statusField := wire.BESBuildFinishedStatus
			if num == wire.BESInvocationAttemptFinished {
				statusField = wire.BESInvocationAttemptFinishedInvocationStatus
			}
			bepfile.EachField(bepfile.LastBytesField(v, statusField), func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) {
				if num == wire.BuildStatusResult && typ == protowire.VarintType {
					m.Result = buildpb.BuildStatus_Result(x).String()
				}
			})
		case wire.BESBazelEvent:
			var url string
			var val []byte
			bepfile.EachField(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
				if typ != protowire.BytesType {
					return
				}
				switch num {
				case wire.AnyTypeURL:
					url = string(v)
				case wire.AnyValue:
					val = v
				}
			})
			if strings.HasSuffix(url, "/build_event_stream.BuildEvent") {
				m.observeBazel(val)
			}
		}
	})
	if lifecycle && !eventTime.IsZero() {
		// A lifecycle stream's span is the span of its events' times.
		if m.Start.IsZero() || eventTime.Before(m.Start) {
			m.Start = eventTime
		}
		if eventTime.After(m.Finish) {
			m.Finish = eventTime
		}
	}
}

// observeBazel reads a build_event_stream.BuildEvent.
func (m *Meta) observeBazel(b []byte) {
	bepfile.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		switch {
		case num == wire.BuildEventStarted && typ == protowire.BytesType:
			m.observeStarted(v)
		case num == wire.BuildEventFinished && typ == protowire.BytesType:
			m.observeFinished(v)
		}
	})
}

func (m *Meta) observeStarted(b []byte) {
	var millis int64
	var ts time.Time
	bepfile.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) {
		switch {
		case num == wire.BuildStartedUUID && typ == protowire.BytesType:
			m.UUID = string(v)
		case num == wire.BuildStartedCommand && typ == protowire.BytesType:
			m.Command = string(v)
		case num == wire.BuildStartedStartTimeMillis && typ == protowire.VarintType:
			millis = int64(x)
		case num == wire.BuildStartedStartTime && typ == protowire.BytesType:
			ts = timestamp(v)
		}
	})
	switch {
	case !ts.IsZero():
		m.Start = ts
	case millis != 0:
		m.Start = time.UnixMilli(millis).UTC()
	}
}

func (m *Meta) observeFinished(b []byte) {
	var millis int64
	var ts time.Time
	bepfile.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) {
		switch {
		case num == wire.BuildFinishedExitCode && typ == protowire.BytesType:
			m.HasExitCode = true
			m.Result, m.ExitCode = "", 0
			bepfile.EachField(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) {
				switch {
				case num == wire.ExitCodeName && typ == protowire.BytesType:
					m.Result = string(v)
				case num == wire.ExitCodeCode && typ == protowire.VarintType:
					m.ExitCode = int32(x)
				}
			})
		case num == wire.BuildFinishedFinishTimeMillis && typ == protowire.VarintType:
			millis = int64(x)
		case num == wire.BuildFinishedFinishTime && typ == protowire.BytesType:
			ts = timestamp(v)
		}
	})
	switch {
	case !ts.IsZero():
		m.Finish = ts
	case millis != 0:
		m.Finish = time.UnixMilli(millis).UTC()
	}
}

// timestamp decodes a google.protobuf.Timestamp; the zero time if it is
// empty or malformed.
func timestamp(b []byte) time.Time {
	var sec, nsec int64
	bepfile.EachField(b, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) {
		if typ != protowire.VarintType {
			return
		}
		switch num {
		case wire.TimestampSeconds:
			sec = int64(x)
		case wire.TimestampNanos:
			nsec = int64(int32(x))
		}
	})
	if sec == 0 && nsec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, nsec).UTC()
}
