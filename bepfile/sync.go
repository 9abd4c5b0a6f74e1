package bepfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile/wire"
)

// ErrOutOfSync is wrapped by the error for a varint-delimited input whose
// frames go out of sync: a frame that is no valid message, followed by one
// that is no valid message either. The framing is lost from that frame on
// (a file rewritten without its length prefixes fixed, two files spliced
// together, garbage appended), so whatever the bytes after it would frame
// is garbage: the reader stops there, and every later call to Next returns
// the same error.
var ErrOutOfSync = errors.New("frames out of sync")

// OutOfSyncError is the cause of the error for frames out of sync (see
// ErrOutOfSync): Err is what is wrong with the first bad frame, Want the
// message each frame should hold.
type OutOfSyncError struct {
	Err  error
	Want string
}

func (e *OutOfSyncError) Error() string {
	return fmt.Sprintf("%v; the next frame is no %s either: frames out of sync from here (want varint-delimited %s messages), the rest of the input is not read", e.Err, e.Want, e.Want)
}

// Unwrap returns ErrOutOfSync, not Err: the input is not cut short, even
// when the bad frame's own fault is an unexpected end (of a nested message).
func (e *OutOfSyncError) Unwrap() error { return ErrOutOfSync }

// badFrame returns the error for the frame at start, event index, a
// complete frame whose content err says is invalid. When the frame after
// it is a plausible message of the input's form (or there is none), only
// this frame is bad: the error is resumable, and Next goes on with the
// next frame. When the next frame is not plausible either, the framing is
// lost: the error is fatal, an *OutOfSyncError.
//
// The next frame is looked at without being consumed, when the reader's
// buffer holds it; a frame too large for it is given the benefit of the
// doubt (it is read, and judged, as usual).
func (r *Reader) badFrame(start int64, index int, err error) *Error {
	if r.nextFramePlausible() {
		return r.errorAt(start, index, err, true)
	}
	return r.errorAt(start, index, &OutOfSyncError{Err: err, Want: r.frameMessage()}, false)
}

// frameMessage names the message each frame of the input's form holds.
func (r *Reader) frameMessage() string {
	switch r.format {
	case FormatBEP:
		return "BuildEvent"
	case FormatPublish:
		return "publish request"
	}
	return "OrderedBuildEvent"
}

// nextFramePlausible reports whether the input ends here or the next frame
// is a plausible message of the input's form (see plausibleFrame).
func (r *Reader) nextFramePlausible() bool {
	b, _ := r.br.Peek(binary.MaxVarintLen64)
	if len(b) == 0 {
		return true // the end, or a read error the next call reports
	}
	size, n := protowire.ConsumeVarint(b)
	if n < 0 || size > uint64(r.opts.MaxEventSize) {
		return false
	}
	if r.size >= 0 && size > uint64(r.size-r.off-int64(n)) {
		return false // it claims more than the file holds
	}
	p, err := r.br.Peek(n + int(size))
	switch {
	case err == bufio.ErrBufferFull:
		return true
	case err != nil:
		return false // cut short: no frame either
	}
	return plausibleFrame(r.format, p[n:])
}

// plausibleFrame reports whether frame is a message of form f that a
// writer of that form could have written: a well-formed message whose own
// fields have their wire types, with what such a message always has, all
// the way down. For FormatBEP: a BuildEvent with an id and a payload of a
// kind bes knows, in which CheckBuildEvent finds nothing corrupt (unknown
// fields are allowed, invalid UTF-8 too). For FormatOBE: an
// OrderedBuildEvent that decodes, with a stream id and an event, whose
// Bazel payload, if any, is plausible too. For FormatPublish: a publish
// request holding such an OrderedBuildEvent. Garbage that passes all of
// that by chance is unlikely; a Bazel newer than bes whose next event is of
// a kind bes does not know, right after a bad frame, is taken for garbage.
func plausibleFrame(f Format, frame []byte) bool {
	switch f {
	case FormatBEP:
		return plausibleBuildEvent(frame)
	case FormatOBE:
		return plausibleOBE(frame)
	case FormatPublish:
		obe, _, err := splitPublish(frame)
		return err == nil && plausibleOBE(obe)
	}
	return false
}

func plausibleBuildEvent(b []byte) bool {
	p, err := Peek(b)
	if err != nil || p.ID == nil || p.PayloadField == 0 {
		return false
	}
	d, err := CheckBuildEvent(b)
	return err == nil && len(d.Corrupt) == 0
}

func plausibleOBE(b []byte) bool {
	obe := &buildpb.OrderedBuildEvent{}
	if proto.Unmarshal(b, obe) != nil || obe.GetStreamId() == nil || obe.GetEvent().GetEvent() == nil {
		return false
	}
	if a := obe.GetEvent().GetBazelEvent(); a != nil && a.GetTypeUrl() == BazelEventTypeURL {
		return plausibleBuildEvent(a.GetValue())
	}
	return true
}

// hollowFrame returns an error for a frame that is well-formed but holds
// nothing its form's writers always write: a BuildEvent with neither id
// nor payload (an empty frame, say), an OrderedBuildEvent without stream
// id or event. Such a frame is garbage the framing happened to delimit,
// and is judged as a bad frame (see badFrame). A frame that is not
// well-formed is left to the decoding, which says why.
func hollowFrame(f Format, frame []byte) error {
	var id, event bool
	for b := frame; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		switch f {
		case FormatBEP:
			if num == wire.BuildEventID || KindName(num) != "" {
				return nil // Bazel writes the id first
			}
		case FormatOBE:
			id = id || num == wire.OBEStreamID
			event = event || num == wire.OBEEvent
			if id && event {
				return nil
			}
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil
		}
		b = b[n+m:]
	}
	if f == FormatBEP {
		if _, err := Peek(frame); err != nil {
			return fmt.Errorf("invalid BuildEvent: %w", err) // as bepEvent says it
		}
		return errors.New("invalid BuildEvent: neither id nor payload")
	}
	return errors.New("invalid OrderedBuildEvent: without stream_id or event")
}
