package bepfile

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrNotBEP is wrapped by the error for an input that is not BEP data in
// any known form, and by the error for an empty input.
var ErrNotBEP = errors.New("not a BEP file (want varint-delimited OrderedBuildEvent, BuildEvent or publish requests, or NDJSON)")

// errEmpty is the cause of the error for an input without a single byte;
// errors.Is(errEmpty, ErrNotBEP) holds.
var errEmpty error = emptyError{}

type emptyError struct{}

func (emptyError) Error() string        { return "empty input" }
func (emptyError) Is(target error) bool { return target == ErrNotBEP }

// errInvalidVarint is the cause for a length prefix of more than 10 bytes or
// one that overflows 64 bits.
var errInvalidVarint = errors.New("invalid varint length prefix")

// Error is a problem with an input, located by byte offset and event index.
// Its message is one line, for example
//
//	test.bep: byte 24361 (event 62): truncated message: want 232 bytes, got 198: unexpected EOF
//
// A cut-off input wraps io.ErrUnexpectedEOF, an oversize frame a
// *SizeTooLargeError, and an input that is no BEP at all (or is empty)
// ErrNotBEP; test them with errors.Is and errors.As.
type Error struct {
	// Name is the input's name, as given to NewReader or Open.
	Name string
	// Offset is the byte offset of the start of the offending frame or
	// JSON value (or of what is skipped as none), in the decompressed input. It is -1 when the error has no
	// position (an empty input).
	Offset int64
	// Index is the 0-based index of the offending frame or JSON value among
	// the input's events (white space between values does not count), or
	// -1 when the error concerns the input as a whole (it is not BEP).
	Index int
	// Err is the cause.
	Err error

	resumable bool
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Name)
	b.WriteString(": ")
	if e.Offset >= 0 {
		b.WriteString("byte ")
		b.WriteString(strconv.FormatInt(e.Offset, 10))
		if e.Index >= 0 {
			b.WriteString(" (event ")
			b.WriteString(strconv.Itoa(e.Index))
			b.WriteString(")")
		}
		b.WriteString(": ")
	}
	b.WriteString(oneLine(e.Err.Error()))
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Resumable reports whether the reader skipped the offending frame and can
// go on with the next one: true for a complete frame whose content is
// invalid (a malformed message, invalid JSON, an invalid stream id), false
// for a broken framing (truncation, an oversize or invalid length prefix)
// or an I/O error, after which Next returns the same error again.
func (e *Error) Resumable() bool { return e.resumable }

// oneLine replaces line breaks so that an error message stays on one line.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// SizeTooLargeError is the cause of an error for a frame (or JSON value)
// longer than Options.MaxEventSize. The frame is never allocated.
type SizeTooLargeError struct {
	// Size is the length the frame claims (for a JSON value, its length, or
	// a lower bound: the bytes read before giving up).
	Size uint64
	// Max is the limit in force.
	Max int
}

func (e *SizeTooLargeError) Error() string {
	return fmt.Sprintf("message size %d exceeds the limit of %d bytes", e.Size, e.Max)
}

// CompressedCutError is the cause of the error for a compressed input
// (gzip, zstd) that ends before its compressed data does: a file cut short,
// or one missing its gzip trailer. The events decompressed whole before the
// cut have been read. It wraps io.ErrUnexpectedEOF, so that the input counts
// as cut short (partial input) like any other (issue 13). Its message
// names the compression and where the compressed bytes end, for example
//
//	build.bep.zst: byte 0: zstd data cut short at compressed byte 3000: unexpected EOF
//
// where byte 0 is, as in every *Error, the decompressed offset of the event
// (or length prefix) the cut fell in.
type CompressedCutError struct {
	// Compression is "gzip" or "zstd".
	Compression string
	// Offset is the number of compressed bytes the decompressor had read
	// when it found the cut: the length of the input.
	Offset int64
}

func (e *CompressedCutError) Error() string {
	return fmt.Sprintf("%s data cut short at compressed byte %d: %v", e.Compression, e.Offset, io.ErrUnexpectedEOF)
}

// Unwrap returns io.ErrUnexpectedEOF.
func (e *CompressedCutError) Unwrap() error { return io.ErrUnexpectedEOF }
