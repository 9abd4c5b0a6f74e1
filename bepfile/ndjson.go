package bepfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

var (
	jsonIn  = protojson.UnmarshalOptions{DiscardUnknown: true}
	jsonOut = proto.MarshalOptions{Deterministic: true}
)

// nextNDJSON reads one line of Bazel's JSON file: a BuildEvent in the
// proto3 JSON mapping. Its payload is the event's deterministic binary
// encoding (which may differ from the bytes Bazel writes to its binary
// file, e.g. in the order of map entries), wrapped as in FormatBEP. Blank
// lines are skipped. A last line without a newline that is a cut-off JSON
// value is a truncation (wrapping io.ErrUnexpectedEOF).
func (r *Reader) nextNDJSON() (*Stream, *Event, error) {
	if r.finished {
		return r.finishEvent()
	}
	for {
		start := r.off
		line, complete, err := r.readLine()
		if err != nil {
			return nil, nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		index := r.index
		r.index++
		msg := &buildeventstream.BuildEvent{}
		if err := jsonIn.Unmarshal(line, msg); err != nil {
			if !complete && truncatedJSON(line) {
				return nil, nil, r.errorAt(start, index, fmt.Errorf("line %d: truncated JSON: %w", r.line, io.ErrUnexpectedEOF), false)
			}
			return nil, nil, r.errorAt(start, index, fmt.Errorf("line %d: invalid JSON BuildEvent: %w", r.line, err), true)
		}
		payload, err := jsonOut.Marshal(msg)
		if err != nil {
			return nil, nil, r.errorAt(start, index, fmt.Errorf("line %d: %w", r.line, err), true)
		}
		s, ev, err := r.bepEvent(payload)
		if err != nil {
			return nil, nil, r.errorAt(start, index, fmt.Errorf("line %d: %w", r.line, err), true)
		}
		return s, ev, nil
	}
}

// readLine returns the next line without its line ending; complete says it
// ended in a newline. The line is valid until the next read. A line longer
// than MaxEventSize is a fatal error; at the end of the input readLine
// returns io.EOF.
func (r *Reader) readLine() (line []byte, complete bool, err error) {
	start, index := r.off, r.index
	r.line++
	buf := r.scratch[:0]
	defer func() { r.scratch = buf[:0] }()
	for {
		chunk, err := r.br.ReadSlice('\n')
		r.off += int64(len(chunk))
		n, limit := len(buf)+len(chunk), r.opts.MaxEventSize
		switch err {
		case nil:
			n -= len(chunk) - len(bytes.TrimRight(chunk, "\r\n")) // the line ending
		case bufio.ErrBufferFull:
			limit++ // the chunk may end in the '\r' of "\r\n"
		}
		if n > limit {
			return nil, false, r.errorAt(start, index, fmt.Errorf("line %d: %w", r.line, &SizeTooLargeError{Size: uint64(n), Max: r.opts.MaxEventSize}), false)
		}
		switch {
		case err == nil:
			if len(buf) == 0 {
				line = chunk // no copy: used before the next read
			} else {
				buf = append(buf, chunk...)
				line = buf
			}
			return bytes.TrimRight(line, "\r\n"), true, nil
		case err == bufio.ErrBufferFull:
			buf = append(buf, chunk...)
		case err == io.EOF:
			buf = append(buf, chunk...)
			if len(buf) == 0 {
				r.err = io.EOF
				return nil, false, io.EOF
			}
			return buf, false, nil
		default:
			return nil, false, r.errorAt(start, index, fmt.Errorf("line %d: %w", r.line, r.readError(err)), false)
		}
	}
}

// truncatedJSON reports whether line is the start of a JSON value cut off.
func truncatedJSON(line []byte) bool {
	err := json.NewDecoder(bytes.NewReader(line)).Decode(new(json.RawMessage))
	return errors.Is(err, io.ErrUnexpectedEOF)
}
