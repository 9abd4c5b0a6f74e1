package store

import (
	"strings"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile"
)

// Field numbers read by Meta. Bazel's, from
// src/main/java/com/google/devtools/build/lib/buildeventstream/proto/
// build_event_stream.proto (checked against Bazel 4.2.3's copy and the newer
// one in bepfile/proto); the envelope's from
// google/devtools/build/v1/build_events.proto.
const (
	bepStarted  protowire.Number = 5  // BuildEvent.started (BuildStarted)
	bepFinished protowire.Number = 14 // BuildEvent.finished (BuildFinished)

	startedUUID       protowire.Number = 1 // BuildStarted.uuid
	startedTimeMillis protowire.Number = 2 // BuildStarted.start_time_millis (int64)
	startedCommand    protowire.Number = 5 // BuildStarted.command
	startedTime       protowire.Number = 9 // BuildStarted.start_time (Timestamp)

	finishedTimeMillis protowire.Number = 2 // BuildFinished.finish_time_millis (int64)
	finishedExitCode   protowire.Number = 3 // BuildFinished.exit_code (ExitCode)
	finishedTime       protowire.Number = 5 // BuildFinished.finish_time (Timestamp)
	exitCodeName       protowire.Number = 1 // BuildFinished.ExitCode.name
	exitCodeCode       protowire.Number = 2 // BuildFinished.ExitCode.code (int32)

	obeEvent                    protowire.Number = 3  // OrderedBuildEvent.event
	evComponentStreamFinished   protowire.Number = 59 // v1.BuildEvent.component_stream_finished
	evEventTime                 protowire.Number = 1  // v1.BuildEvent.event_time
	evInvocationAttemptStarted  protowire.Number = 51 // v1.BuildEvent.invocation_attempt_started
	evInvocationAttemptFinished protowire.Number = 52
	evBuildEnqueued             protowire.Number = 53 // v1.BuildEvent.build_enqueued // v1.BuildEvent.invocation_attempt_finished
	evBuildFinished             protowire.Number = 55 // v1.BuildEvent.build_finished
	evBazelEvent                protowire.Number = 60 // v1.BuildEvent.bazel_event (Any)
	anyTypeURL                  protowire.Number = 1
	anyValue                    protowire.Number = 2
	tsSeconds                   protowire.Number = 1
	tsNanos                     protowire.Number = 2
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
	bepfile.EachField(bepfile.LastBytesField(ev.Raw, obeEvent), func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		if typ != protowire.BytesType {
			return
		}
		switch num {
		case evEventTime:
			eventTime = timestamp(v)
		case evInvocationAttemptStarted, evBuildEnqueued:
			lifecycle = true
		case evComponentStreamFinished:
			m.Complete = true
		case evBuildFinished, evInvocationAttemptFinished:
			// The last event of a build's, or of an invocation's,
			// lifecycle stream; its BuildStatus result is the outcome.
			m.Complete = true
			lifecycle = true
			statusField := protowire.Number(1) // BuildFinished.status
			if num == evInvocationAttemptFinished {
				statusField = 3 // InvocationAttemptFinished.invocation_status
			}
			bepfile.EachField(bepfile.LastBytesField(v, statusField), func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) {
				if num == 1 && typ == protowire.VarintType { // BuildStatus.result
					m.Result = buildpb.BuildStatus_Result(x).String()
				}
			})
		case evBazelEvent:
			var url string
			var val []byte
			bepfile.EachField(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
				if typ != protowire.BytesType {
					return
				}
				switch num {
				case anyTypeURL:
					url = string(v)
				case anyValue:
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
		case num == bepStarted && typ == protowire.BytesType:
			m.observeStarted(v)
		case num == bepFinished && typ == protowire.BytesType:
			m.observeFinished(v)
		}
	})
}

func (m *Meta) observeStarted(b []byte) {
	var millis int64
	var ts time.Time
	bepfile.EachField(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) {
		switch {
		case num == startedUUID && typ == protowire.BytesType:
			m.UUID = string(v)
		case num == startedCommand && typ == protowire.BytesType:
			m.Command = string(v)
		case num == startedTimeMillis && typ == protowire.VarintType:
			millis = int64(x)
		case num == startedTime && typ == protowire.BytesType:
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
		case num == finishedExitCode && typ == protowire.BytesType:
			m.HasExitCode = true
			m.Result, m.ExitCode = "", 0
			bepfile.EachField(v, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) {
				switch {
				case num == exitCodeName && typ == protowire.BytesType:
					m.Result = string(v)
				case num == exitCodeCode && typ == protowire.VarintType:
					m.ExitCode = int32(x)
				}
			})
		case num == finishedTimeMillis && typ == protowire.VarintType:
			millis = int64(x)
		case num == finishedTime && typ == protowire.BytesType:
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
		case tsSeconds:
			sec = int64(x)
		case tsNanos:
			nsec = int64(int32(x))
		}
	})
	if sec == 0 && nsec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, nsec).UTC()
}
