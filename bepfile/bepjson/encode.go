package bepjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// Item is one thing the writers write: an event of a stream, or (Event
// nil) a frame a reader skipped, Bad, written as an error object in its
// place.
type Item struct {
	Stream *bepfile.Stream
	Event  *bepfile.Event
	Bad    *bepfile.Error
}

// Encoder renders events as protojson OrderedBuildEvents, by the lenient
// rule (see the package doc), and the frames a reader skipped and the
// events that cannot be decoded as error objects:
//
//	{"streamId":{…},"sequenceNumber":"7","error":"invalid BuildEvent: …","file":"capture.obe","offset":1234,"index":6}
//
// error is always there; streamId and sequenceNumber when the envelope was
// read (not for a skipped frame); file, offset (byte offset of the frame
// or line, decompressed) and index (0-based frame index) when it was read
// from a file.
//
// A Bazel event in compact form is written without building the envelope:
// the envelope's JSON is written directly and only the payload goes
// through protojson, decoded into a message that is reused; anything else
// takes the general path. Both give the same JSON values (TestFastPath).
//
// An Encoder is not safe for concurrent use; it keeps each stream's
// StreamId JSON, so a long-lived one holds a few bytes per stream met.
type Encoder struct {
	ids    map[*bepfile.Stream][]byte // the StreamId JSON of each stream
	msg    *bes.BuildEvent
	buf    []byte
	source func(key string) string // may be nil
}

// NewEncoder returns an Encoder. source, which may be nil, names the file
// a stream (by key) was read from, "" when none: an error object of an
// event of a stream read from a file names the file and the event's
// position in it. source must be safe for concurrent use when the encoder
// is given to WriteNDJSON.
func NewEncoder(source func(key string) string) *Encoder {
	return &Encoder{ids: map[*bepfile.Stream][]byte{}, msg: &bes.BuildEvent{}, source: source}
}

// AppendItem appends the JSON of it, without a newline, and returns what
// decoding its event found (nothing for a skipped frame).
func (e *Encoder) AppendItem(b []byte, it Item) ([]byte, Report) {
	if it.Event == nil {
		off := &it.Bad.Offset
		if it.Bad.Offset < 0 {
			off = nil
		}
		return appendErrorObject(b, errorObject{Error: it.Bad.Err.Error(), File: it.Bad.Name, Offset: off, Index: &it.Bad.Index}), Report{}
	}
	return e.Append(b, it.Stream, it.Event)
}

// Append appends the JSON of ev of s, without a newline, and returns what
// decoding it found. An event that cannot be decoded (Report.Err) is
// written as an error object.
func (e *Encoder) Append(b []byte, s *bepfile.Stream, ev *bepfile.Event) ([]byte, Report) {
	if ev.IsBazel() && s.TypeURL == bepfile.BazelEventTypeURL {
		out, rep, ok := e.appendFast(b, s, ev)
		if ok || rep.Err != nil {
			return out, rep
		}
	}
	obe, err := ev.OrderedBuildEvent(s)
	if err != nil {
		return e.appendError(b, s, ev, err), Report{Err: err}
	}
	rep := fixAny(obe, e.msg)
	if rep.Err != nil {
		return e.appendError(b, s, ev, rep.Err), rep
	}
	out, err := jsonOpts.MarshalAppend(b, obe)
	if err != nil {
		rep.Err = err
		return e.appendError(b, s, ev, err), rep
	}
	return out, rep
}

// appendFast writes a compact Bazel event. ok is false when the general
// path must write it; an event that cannot be decoded (rep.Err) is written
// as an error object.
func (e *Encoder) appendFast(b []byte, s *bepfile.Stream, ev *bepfile.Event) (_ []byte, rep Report, ok bool) {
	rep.Damage, rep.Err = bepfile.DecodeBuildEvent(ev.Payload, e.msg)
	if rep.Err != nil {
		return e.appendError(b, s, ev, rep.Err), rep, false
	}
	var err error
	e.buf, err = jsonOpts.MarshalAppend(e.buf[:0], e.msg)
	if err != nil {
		return b, rep, false
	}
	id, ok := e.ids[s]
	if !ok {
		if id, err = jsonOpts.Marshal(s.ID); err != nil {
			return b, rep, false
		}
		e.ids[s] = id
	}
	start := len(b)
	b = append(b, `{"streamId":`...)
	b = append(b, id...)
	if ev.Seq != 0 {
		b = append(b, `,"sequenceNumber":"`...)
		b = strconv.AppendInt(b, ev.Seq, 10)
		b = append(b, '"')
	}
	b = append(b, `,"event":{`...)
	if ev.HasTime {
		ts, ok := appendTimestamp(b, ev.Time)
		if !ok {
			return b[:start], rep, false
		}
		b = append(ts, ',')
	}
	b = append(b, `"bazelEvent":{"@type":"`...)
	b = append(b, s.TypeURL...)
	b = append(b, '"')
	// The payload's members: its JSON object without the braces.
	p := bytes.TrimSpace(e.buf)
	if len(p) < 2 || p[0] != '{' || p[len(p)-1] != '}' {
		return b[:start], rep, false
	}
	if p = bytes.TrimSpace(p[1 : len(p)-1]); len(p) > 0 {
		b = append(b, ',')
		b = append(b, p...)
	}
	return append(b, "}}}"...), rep, true
}

// errorObject is what the encoder writes in place of an event it cannot
// decode, and of a frame a reader skipped: the stream and sequence number
// when the envelope was read, the cause, and where the event or frame was
// read.
type errorObject struct {
	StreamID json.RawMessage `json:"streamId,omitempty"`
	Seq      string          `json:"sequenceNumber,omitempty"`
	Error    string          `json:"error"`
	File     string          `json:"file,omitempty"`
	Offset   *int64          `json:"offset,omitempty"`
	Index    *int            `json:"index,omitempty"`
}

// appendError appends the error object of ev of s, which cannot be
// decoded because of err.
func (e *Encoder) appendError(b []byte, s *bepfile.Stream, ev *bepfile.Event, err error) []byte {
	o := errorObject{Error: err.Error()}
	if id, ierr := jsonOpts.Marshal(s.ID); ierr == nil {
		o.StreamID = id
	}
	if ev.Seq != 0 {
		o.Seq = strconv.FormatInt(ev.Seq, 10)
	}
	if e.source != nil {
		if file := e.source(s.Key); file != "" {
			o.File = file
			if off, idx, ok := ev.Position(); ok {
				o.Offset, o.Index = &off, &idx
			}
		}
	}
	return appendErrorObject(b, o)
}

func appendErrorObject(b []byte, o errorObject) []byte {
	j, err := json.Marshal(o)
	if err != nil { // a RawMessage protojson wrote is valid JSON
		panic(fmt.Sprintf("dump: error object: %v", err))
	}
	return append(b, j...)
}

// appendTimestamp appends a "eventTime" member as protojson writes a
// google.protobuf.Timestamp: RFC 3339 in UTC, with 0, 3, 6 or 9
// fractional digits. ok is false for a time protojson refuses.
func appendTimestamp(b []byte, ts bepfile.Timestamp) ([]byte, bool) {
	const minSec, maxSec = -62135596800, 253402300799 // 0001-01-01 to 9999-12-31
	if ts.Seconds < minSec || ts.Seconds > maxSec || ts.Nanos < 0 || ts.Nanos >= 1e9 {
		return b, false
	}
	t := time.Unix(ts.Seconds, int64(ts.Nanos)).UTC()
	x := t.Format("2006-01-02T15:04:05.000000000")
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, ".000")
	b = append(b, `"eventTime":"`...)
	b = append(b, x...)
	return append(b, `Z"`...), true
}
