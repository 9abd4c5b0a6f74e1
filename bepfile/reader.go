package bepfile

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile/wire"
)

// DefaultMaxEventSize is the largest frame (or JSON value) a Reader accepts
// when Options.MaxEventSize is 0. Events over 50 MiB have been seen in the
// wild.
const DefaultMaxEventSize = 64 << 20

// peekSize is the most the form detection ever looks at.
const peekSize = 64 << 10

// bufSize is the size of the reader's buffer: frames up to this size are
// read without a copy of their own (see Options.Reuse).
const bufSize = 1 << 20

// slabSize is the size of the chunks the frames of a reader that does not
// reuse its buffers are copied into, and slabMax the largest frame copied
// into a chunk (larger ones get a buffer of their own). Events then cost
// no allocation of their own, and a chunk lives as long as any of its
// events.
const (
	slabSize   = 1 << 20
	slabMax    = 64 << 10
	eventBatch = 512
)

// zstdMaxWindow bounds the memory a zstd stream may ask for (zstd --long
// uses at most 1<<27 by default).
const zstdMaxWindow = 1 << 27

// Options configure a Reader.
type Options struct {
	// Format is the input's form; FormatAuto detects it.
	Format Format
	// MaxEventSize is the largest frame, in bytes, or JSON value accepted;
	// a longer one is an error and is never allocated. 0 (or less) means
	// DefaultMaxEventSize.
	MaxEventSize int
	// BuildID is the build id of the streams made from Bazel's own files
	// (FormatBEP, FormatNDJSON), which carry none. "" means the invocation
	// id, as taken from the first event's BuildStarted.uuid. It must be
	// valid UTF-8. Other forms ignore it.
	BuildID string
	// Reuse lets the reader hand out events whose bytes alias its own
	// buffer, and reuse the Event itself: an event is then valid only
	// until the next call to Next. It spares a copy of every frame, for
	// callers that look at each event once (and copy what they keep).
	Reuse bool
}

// Reader reads the events of one BEP input, one at a time. A Reader is not
// safe for concurrent use.
type Reader struct {
	name        string
	opts        Options
	format      Format
	compression string

	file io.Closer // the file Open opened; nil for NewReader and stdin
	// size is the length of the input when it is known (a regular file
	// Open opened, not compressed), else -1: a frame no longer than what
	// is left of it is read into a buffer allocated at once.
	size int64
	body []byte    // with Options.Reuse, the buffer of the last frame readFrame read
	dec  io.Closer // the decompressor, if any

	br    *bufio.Reader // the (decompressed) input
	off   int64         // bytes of br consumed
	index int           // index of the next frame (NDJSON: JSON value, or what is skipped as none)
	line  int           // NDJSON: line breaks consumed (the next byte is on line line+1)
	err   error         // sticky: io.EOF or a fatal *Error

	streams map[string]*Stream // by the StreamId's encoding
	byKey   map[string]*Stream
	scratch []byte // for Event.Compact

	slab   []byte  // the chunk frames are copied into (see slabSize)
	events []Event // the batch events are taken from
	reused Event   // the event handed out with Options.Reuse

	// Bazel's own files (BEP, NDJSON): the stream being built.
	cur      *Stream
	seq      int64
	finished bool // the last event had last_message: the finish event is due

	// peeked is what Peek found in the BuildEvent of the event Next last
	// returned, if hasPeeked (see Peeked).
	peeked    Peeked
	hasPeeked bool

	found Damage // NDJSON: see Found
}

// Open opens the file at path and returns a reader of it; path "-" is
// standard input, named "<stdin>". Close closes the file (not standard
// input).
func Open(path string, opts Options) (*Reader, error) {
	if path == "-" {
		return NewReader(os.Stdin, "<stdin>", opts)
	}
	return OpenAs(path, path, opts)
}

// OpenAs is Open of the file at path (never standard input), naming it
// name in errors: a temporary copy of an input, named as the input.
func OpenAs(path, name string, opts Options) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(f, name, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.file = f
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && r.compression == "" {
		r.size = fi.Size()
	}
	return r, nil
}

// NewReader returns a reader of the BEP data in r, named name in errors.
//
// It detects gzip and zstd compression from the magic number, whatever
// opts.Format is, and decompresses on the fly; offsets then count bytes of
// the decompressed data. With FormatAuto it detects the form from at most
// the first 64 KiB of the (decompressed) input, reading no more than it
// needs to decide. An empty input, and with FormatAuto an input that is no
// BEP in any form, is an *Error wrapping ErrNotBEP.
//
// The reader wraps r in a bufio.Reader of its own (unless r is one of at
// least 1 MiB) and may read ahead; Close does not close r.
func NewReader(r io.Reader, name string, opts Options) (*Reader, error) {
	if opts.Format < FormatAuto || opts.Format > FormatNDJSON {
		return nil, fmt.Errorf("bepfile: invalid format %v", opts.Format)
	}
	if !utf8.ValidString(opts.BuildID) {
		return nil, fmt.Errorf("bepfile: build id %q is not valid UTF-8", opts.BuildID)
	}
	if opts.MaxEventSize <= 0 {
		opts.MaxEventSize = DefaultMaxEventSize
	}
	rd := &Reader{
		size:    -1,
		name:    name,
		opts:    opts,
		format:  opts.Format,
		streams: map[string]*Stream{},
		byKey:   map[string]*Stream{},
	}
	raw := bufio.NewReaderSize(r, bufSize)
	magic, err := raw.Peek(4)
	if err != nil && len(magic) == 0 && err != io.EOF {
		return nil, rd.errorAt(0, -1, err, false)
	}
	in := &countingReader{br: raw}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(in)
		if err != nil {
			return nil, rd.errorAt(0, -1, decompressError("gzip", in, err), false)
		}
		rd.dec, rd.compression = zr, "gzip"
		rd.br = bufio.NewReaderSize(&decompressed{r: zr, in: in, kind: "gzip"}, bufSize)
	case bytes.HasPrefix(magic, zstdMagic):
		zd, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, rd.errorAt(0, -1, decompressError("zstd", in, err), false)
		}
		rd.dec, rd.compression = zd.IOReadCloser(), "zstd"
		rd.br = bufio.NewReaderSize(&decompressed{r: zd, in: in, kind: "zstd"}, bufSize)
	case len(magic) >= 2 && len(magic) < len(zstdMagic) && bytes.HasPrefix(zstdMagic, magic):
		// The whole input is the start of zstd's magic number.
		return nil, rd.errorAt(0, -1, &CompressedCutError{Compression: "zstd", Offset: int64(len(magic))}, false)
	default:
		rd.br = raw
	}
	if err := rd.start(); err != nil {
		rd.Close()
		return nil, err
	}
	return rd, nil
}

// utf8BOM is the byte order mark some Windows tools write at the start of
// a UTF-8 text file (PowerShell's Out-File, Notepad).
var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// start checks that the input is not empty and, for FormatAuto, detects
// the form. A UTF-8 byte order mark before JSON is skipped (offsets still
// count it).
func (r *Reader) start() error {
	if r.format == FormatAuto || r.format == FormatNDJSON {
		if err := r.skipBOM(); err != nil {
			return err
		}
	}
	var p []byte
	var eof bool
	var err error
	if r.format == FormatAuto {
		p, eof, err = r.peekDetect()
	} else if p, err = r.br.Peek(1); err == io.EOF {
		eof, err = true, nil
	}
	if len(p) == 0 {
		if eof && err == nil {
			return r.errorAt(-1, -1, errEmpty, false)
		}
		return r.errorAt(0, -1, r.readError(err), false)
	}
	if r.format != FormatAuto {
		return nil
	}
	if len(p) > peekSize { // a caller's bufio.Reader may hold more
		p, eof = p[:peekSize], false
	}
	if eof && err == nil && firstNonSpace(p) < 0 {
		// Nothing but blank lines: as empty as no byte at all (not a
		// binary frame whose length is '\n' cut short).
		return r.errorAt(-1, -1, errEmpty, false)
	}
	f := detect(p, eof || err != nil)
	if f == FormatAuto {
		if err != nil { // undecided for want of data: the read error says more
			return r.errorAt(0, -1, r.readError(err), false)
		}
		return r.errorAt(0, -1, notBEPError(p), false)
	}
	r.format = f
	return nil
}

// skipBOM skips a UTF-8 byte order mark at the start of the input when
// JSON follows it (with FormatAuto, when the input after it is detected as
// NDJSON): Bazel never writes one, but a file passed through Windows tools
// may have one.
func (r *Reader) skipBOM() error {
	if p, _ := r.br.Peek(len(utf8BOM)); !bytes.Equal(p, utf8BOM) {
		return nil
	}
	if r.format == FormatAuto {
		r.br.Discard(len(utf8BOM))
		p, eof, err := r.peekDetect()
		if len(p) > peekSize {
			p, eof = p[:peekSize], false
		}
		if len(p) == 0 && eof && err == nil {
			r.off = int64(len(utf8BOM)) // nothing but the mark: an empty input
			return nil
		}
		if detect(p, eof || err != nil) != FormatNDJSON {
			// No JSON after it: not a byte order mark. The bytes are
			// gone from br, so give them back in front of it.
			r.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(utf8BOM), r.br), bufSize)
			return nil
		}
		r.format = FormatNDJSON
	} else {
		r.br.Discard(len(utf8BOM))
	}
	r.off = int64(len(utf8BOM))
	return nil
}

// peekDetect peeks at the start of the input until detect can decide: up
// to the first complete line or frame, or peekSize bytes, or the end of the
// input (eof). err is a read error other than io.EOF.
func (r *Reader) peekDetect() (p []byte, eof bool, err error) {
	n := 1
	for {
		p, err = r.br.Peek(n)
		switch {
		case err == bufio.ErrBufferFull:
			return p, false, nil
		case err == io.EOF:
			return p, true, nil
		case err != nil:
			return p, true, err
		}
		if enoughToDetect(p) || len(p) >= peekSize {
			return p, false, nil
		}
		// Take what is buffered, or else ask for one more byte: one more Read.
		if b := r.br.Buffered(); b > len(p) {
			n = b
		} else {
			n = len(p) + 1
		}
	}
}

// Name returns the input's name.
func (r *Reader) Name() string { return r.name }

// Format returns the input's form, as given or detected.
func (r *Reader) Format() Format { return r.format }

// Compression returns the input's compression: "", "gzip" or "zstd".
func (r *Reader) Compression() string { return r.compression }

// Offset returns the number of bytes of the input consumed so far, counted
// in the decompressed data for a compressed input. After Next returned an
// event read from the input, it is the offset of the end of that event's
// frame, or JSON value and the white space after it up to its line's end.
func (r *Reader) Offset() int64 { return r.off }

// Peeked returns what Peek finds in the BuildEvent of the event Next last
// returned, as the reader itself peeked at it, so that a caller need not
// walk the event again; its slices alias the event's Payload. It is nil
// when the reader did not peek at that event (forms other than FormatBEP,
// the component_stream_finished event it adds, or after an error). The
// Peeked is the reader's own, valid until the next call to Next.
func (r *Reader) Peeked() *Peeked {
	if !r.hasPeeked {
		return nil
	}
	return &r.peeked
}

// Close releases the decompressor and closes the file opened by Open. It
// does not close the io.Reader given to NewReader.
func (r *Reader) Close() error {
	var err error
	if r.dec != nil {
		err = r.dec.Close()
		r.dec = nil
	}
	if r.file != nil {
		if e := r.file.Close(); err == nil {
			err = e
		}
		r.file = nil
	}
	if r.err == nil {
		r.err = r.errorAt(r.off, r.index, errors.New("reader is closed"), false)
	}
	return err
}

// Next returns the next event and the stream it belongs to. Events of one
// stream share one *Stream. The event owns its bytes: they alias no buffer
// of the reader and may be kept (unless Options.Reuse is set: then the
// event and its bytes are valid until the next call only).
//
// Next returns io.EOF, and only then, at a clean end of the input. Any
// other error is an *Error; all complete events before the problem have
// been returned already. If the error is Resumable, the offending frame has
// been skipped and Next may be called again to go on with the next one;
// otherwise every later call returns the same error.
func (r *Reader) Next() (*Stream, *Event, error) {
	r.hasPeeked = false
	if r.err != nil {
		return nil, nil, r.err
	}
	switch r.format {
	case FormatOBE:
		return r.nextOBE()
	case FormatPublish:
		return r.nextPublish()
	case FormatBEP:
		return r.nextBEP()
	case FormatNDJSON:
		return r.nextNDJSON()
	}
	return nil, nil, fmt.Errorf("bepfile: invalid format %v", r.format)
}

// errorAt makes the *Error for a problem at offset off in event index;
// fatal ones are remembered and returned by every later Next.
func (r *Reader) errorAt(off int64, index int, err error, resumable bool) *Error {
	e := &Error{Name: r.name, Offset: off, Index: index, Err: err, resumable: resumable}
	if !resumable {
		r.err = e
	}
	return e
}

// readError describes an error of the underlying reader or decompressor.
func (r *Reader) readError(err error) error {
	var ce *CompressedCutError
	if r.compression != "" && !errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", r.compression, err)
	}
	return err
}

// frame returns the next varint-delimited frame: with Options.Reuse
// aliasing the reader's buffer when the frame is there whole, else copied
// into a chunk of its own (see own). Errors are those of readFrame, which
// reads every frame the fast path does not take.
func (r *Reader) frame() (start int64, frame []byte, index int, err error) {
	b, _ := r.br.Peek(binary.MaxVarintLen64) // short near the end: fine
	size, n := protowire.ConsumeVarint(b)
	if n > 0 && size <= uint64(r.opts.MaxEventSize) && uint64(n)+size <= uint64(r.br.Size()) {
		if p, err := r.br.Peek(n + int(size)); err == nil {
			r.br.Discard(len(p))
			start, index = r.off, r.index
			r.off += int64(len(p))
			r.index++
			if r.opts.Reuse {
				return start, p[n:], index, nil
			}
			return start, r.own(p[n:]), index, nil
		}
	}
	return r.readFrame()
}

// own copies a frame into the current chunk, or into a buffer of its own
// if it is large.
func (r *Reader) own(p []byte) []byte {
	if len(p) > slabMax {
		return bytes.Clone(p)
	}
	if cap(r.slab)-len(r.slab) < len(p) {
		r.slab = make([]byte, 0, slabSize)
	}
	i := len(r.slab)
	r.slab = append(r.slab, p...)
	return r.slab[i:len(r.slab):len(r.slab)]
}

// event returns a new *Event holding e: the reader's own with
// Options.Reuse, else one of a batch allocated at once.
func (r *Reader) event(e Event) *Event {
	if r.opts.Reuse {
		r.reused = e
		return &r.reused
	}
	if len(r.events) == 0 {
		r.events = make([]Event, eventBatch)
	}
	ev := &r.events[0]
	r.events = r.events[1:]
	*ev = e
	return ev
}

// The magic numbers of the compressions NewReader detects.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// countingReader is the compressed input as its decompressor reads it,
// counting the bytes read. It is an io.ByteReader, so that compress/flate
// reads through it without a buffer of its own, no further than it needs.
type countingReader struct {
	br *bufio.Reader
	n  int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// decompressed is the output of a decompressor: its io.ErrUnexpectedEOF,
// the compressed input ending before the compressed data does, becomes a
// *CompressedCutError.
type decompressed struct {
	r    io.Reader
	in   *countingReader
	kind string
}

func (d *decompressed) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF && errors.Is(err, io.ErrUnexpectedEOF) {
		err = &CompressedCutError{Compression: d.kind, Offset: d.in.n}
	}
	return n, err
}

// decompressError describes an error of the decompressor kind reading in:
// a *CompressedCutError for a cut, else the error prefixed with kind.
func decompressError(kind string, in *countingReader, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
		return &CompressedCutError{Compression: kind, Offset: in.n}
	}
	var ce *CompressedCutError
	if errors.As(err, &ce) {
		return err
	}
	return fmt.Errorf("%s: %w", kind, err)
}

func isCompressedCut(err error) bool {
	var ce *CompressedCutError
	return errors.As(err, &ce)
}

// readFrame reads one varint-delimited frame into a new buffer of exactly
// its size. It returns io.EOF at a clean end, and otherwise a fatal *Error
// for a bad length prefix, an oversize frame (before allocating it) or a
// cut-off frame.
func (r *Reader) readFrame() (start int64, frame []byte, index int, err error) {
	start, index = r.off, r.index
	var size uint64
	for i := 0; ; i++ {
		c, err := r.br.ReadByte()
		if err != nil {
			switch {
			case err == io.EOF && i == 0:
				r.err = io.EOF
				return start, nil, index, io.EOF
			case isCompressedCut(err) && i == 0:
				// Between two frames: the compressed data is cut.
			case isCompressedCut(err):
				err = fmt.Errorf("truncated length prefix after %d bytes: %w", i, err)
			case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
				err = fmt.Errorf("truncated length prefix after %d bytes: %w", i, io.ErrUnexpectedEOF)
			default:
				err = r.readError(err)
			}
			return start, nil, index, r.errorAt(start, index, err, false)
		}
		r.off++
		if i == 9 && c > 1 {
			return start, nil, index, r.errorAt(start, index, errInvalidVarint, false)
		}
		size |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			break
		}
	}
	r.index++
	if size > uint64(r.opts.MaxEventSize) {
		return start, nil, index, r.errorAt(start, index, &SizeTooLargeError{Size: size, Max: r.opts.MaxEventSize}, false)
	}
	var got int
	if r.size >= 0 && int64(size) <= r.size-r.off {
		// The file holds the whole frame: no need to grow a buffer.
		if r.opts.Reuse {
			if uint64(cap(r.body)) < size {
				r.body = make([]byte, size)
			}
			frame = r.body[:size]
		} else {
			frame = make([]byte, size)
		}
		got, err = io.ReadFull(r.br, frame)
	} else {
		frame, got, err = readBody(r.br, int(size))
	}
	r.off += int64(got)
	if err != nil {
		if isCompressedCut(err) {
			err = fmt.Errorf("truncated message: want %d bytes, got %d: %w", size, got, err)
		} else if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("truncated message: want %d bytes, got %d: %w", size, got, io.ErrUnexpectedEOF)
		} else {
			err = r.readError(err)
		}
		return start, nil, index, r.errorAt(start, index, err, false)
	}
	return start, frame, index, nil
}

// bodyChunk is the size up to which a frame's buffer is allocated at once;
// larger frames grow their buffer as the bytes arrive, so that a corrupt
// length prefix in a short input cannot make the reader allocate up to
// MaxEventSize.
const bodyChunk = 1 << 20

// readBody reads n bytes into a new slice of capacity n.
func readBody(br *bufio.Reader, n int) ([]byte, int, error) {
	if n <= bodyChunk {
		b := make([]byte, n)
		got, err := io.ReadFull(br, b)
		return b, got, err
	}
	b := make([]byte, 0, bodyChunk)
	for len(b) < n {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(2*cap(b), n))
			copy(nb, b)
			b = nb
		}
		m, err := br.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil && len(b) < n {
			return b, len(b), err
		}
	}
	return b, n, nil
}

// nextOBE reads one frame holding an OrderedBuildEvent.
func (r *Reader) nextOBE() (*Stream, *Event, error) {
	start, frame, index, err := r.frame()
	if err != nil {
		return nil, nil, err
	}
	if err := hollowFrame(r.format, frame); err != nil {
		return nil, nil, r.badFrame(start, index, err)
	}
	s, ev, err := r.obeEvent(frame, nil)
	if err != nil {
		return nil, nil, r.badFrame(start, index, err)
	}
	ev.setPos(start, index)
	return s, ev, nil
}

// nextPublish reads one frame holding a PublishBuildToolEventStreamRequest
// or a PublishLifecycleEventRequest.
func (r *Reader) nextPublish() (*Stream, *Event, error) {
	start, frame, index, err := r.frame()
	if err != nil {
		return nil, nil, err
	}
	obe, lifecycle, err := splitPublish(frame)
	if err == nil {
		var s *Stream
		var ev *Event
		s, ev, err = r.obeEvent(obe, func() *PublishInfo { return publishInfo(frame, lifecycle) })
		if err == nil {
			ev.setPos(start, index)
			return s, ev, nil
		}
		if lifecycle {
			err = fmt.Errorf("PublishLifecycleEventRequest.build_event: %w", err)
		} else {
			err = fmt.Errorf("PublishBuildToolEventStreamRequest.ordered_build_event: %w", err)
		}
	}
	return nil, nil, r.badFrame(start, index, err)
}

// obeEvent makes the event of an encoded OrderedBuildEvent, in compact form
// when that is exact. The event aliases raw. info, if not nil, gives the
// publish request fields of a new stream.
func (r *Reader) obeEvent(raw []byte, info func() *PublishInfo) (*Stream, *Event, error) {
	var idBytes []byte
	var seq int64
	seenID := false
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, fmt.Errorf("invalid OrderedBuildEvent: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case (num == wire.OBEStreamID || num == wire.OBEEvent) && typ != protowire.BytesType:
			return nil, nil, fmt.Errorf("invalid %w", errWireType("OrderedBuildEvent", num, typ, protowire.BytesType))
		case num == wire.OBESequenceNumber && typ != protowire.VarintType:
			return nil, nil, fmt.Errorf("invalid %w", errWireType("OrderedBuildEvent", num, typ, protowire.VarintType))
		}
		switch num {
		case wire.OBEStreamID:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, nil, fmt.Errorf("invalid OrderedBuildEvent: field %d: %w", num, protowire.ParseError(n))
			}
			if seenID {
				// A decoder would merge the two; the stream would not be
				// the one the event names.
				return nil, nil, errors.New("invalid OrderedBuildEvent: stream_id appears more than once")
			}
			idBytes, seenID = v, true
			b = b[n:]
		case wire.OBESequenceNumber:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, nil, fmt.Errorf("invalid OrderedBuildEvent: field %d: %w", num, protowire.ParseError(n))
			}
			seq = int64(v)
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, nil, fmt.Errorf("invalid OrderedBuildEvent: field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	s, err := r.stream(idBytes, info)
	if err != nil {
		return nil, nil, err
	}
	ev := r.event(Event{Seq: seq, Raw: raw})
	var ok bool
	r.scratch, ok = ev.Compact(s, r.scratch)
	if !ok {
		// Kept whole: make sure it decodes, as callers will decode it.
		if err := proto.Unmarshal(raw, &buildpb.OrderedBuildEvent{}); err != nil {
			return nil, nil, fmt.Errorf("invalid OrderedBuildEvent: %w", err)
		}
	}
	return s, ev, nil
}

// stream returns the stream whose StreamId is encoded as idBytes, making it
// on first sight. Streams are interned by encoding and, should two
// encodings decode to the same key, by key: a reader hands out one *Stream
// per key. (Events of the second encoding then stay whole, in Raw.)
func (r *Reader) stream(idBytes []byte, info func() *PublishInfo) (*Stream, error) {
	if s, ok := r.streams[string(idBytes)]; ok {
		return s, nil
	}
	id, err := decodeStreamID(idBytes)
	if err != nil {
		return nil, err
	}
	key := Key(id)
	s := r.byKey[key]
	if s == nil {
		s = &Stream{ID: id, Key: key, IDBytes: bytes.Clone(idBytes), TypeURL: BazelEventTypeURL}
		if s.IDBytes == nil {
			s.IDBytes = []byte{}
		}
		if info != nil {
			s.Publish = info()
		}
		r.byKey[key] = s
	}
	r.streams[string(idBytes)] = s
	return s, nil
}

// decodeStreamID decodes a StreamId strictly: its fields must have their
// wire types and its strings must be valid UTF-8. Unknown fields are
// skipped.
func decodeStreamID(b []byte) (*buildpb.StreamId, error) {
	id := &buildpb.StreamId{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("invalid stream id: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case wire.StreamIDBuildID, wire.StreamIDInvocationID:
			if typ != protowire.BytesType {
				return nil, fmt.Errorf("invalid stream id: %w", errWireType("StreamId", num, typ, protowire.BytesType))
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, fmt.Errorf("invalid stream id: field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			name := "build_id"
			if num == wire.StreamIDInvocationID {
				name = "invocation_id"
			}
			if !utf8.Valid(v) {
				return nil, fmt.Errorf("invalid stream id: %s %q is not valid UTF-8", name, v)
			}
			if num == wire.StreamIDBuildID {
				id.BuildId = string(v)
			} else {
				id.InvocationId = string(v)
			}
		case wire.StreamIDComponent:
			if typ != protowire.VarintType {
				return nil, fmt.Errorf("invalid stream id: %w", errWireType("StreamId", num, typ, protowire.VarintType))
			}
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, fmt.Errorf("invalid stream id: field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			id.Component = buildpb.StreamId_BuildComponent(int32(v))
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, fmt.Errorf("invalid stream id: field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return id, nil
}

// splitPublish classifies an encoded publish request and returns its
// OrderedBuildEvent. A request with any of the fields only a
// PublishLifecycleEventRequest has (service_level, build_event,
// stream_timeout) is one; anything else is taken for a
// PublishBuildToolEventStreamRequest.
func splitPublish(frame []byte) (obe []byte, lifecycle bool, err error) {
	var tool, life []byte
	for b := frame; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false, fmt.Errorf("invalid publish request: %w", protowire.ParseError(n))
		}
		b = b[n:]
		want := protowire.BytesType
		switch num {
		case wire.LifecycleRequestServiceLevel, wire.ToolRequestCheckPrecedingLifecycleEventsPresent:
			want = protowire.VarintType
		case wire.LifecycleRequestBuildEvent, wire.LifecycleRequestStreamTimeout, wire.ToolRequestOrderedBuildEvent, wire.ToolRequestNotificationKeywords, wire.ToolRequestProjectID:
		default:
			want = typ // unknown: skipped
		}
		if typ != want {
			return nil, false, fmt.Errorf("invalid publish request: %w", errWireType("request", num, typ, want))
		}
		switch num {
		case wire.LifecycleRequestServiceLevel, wire.LifecycleRequestBuildEvent, wire.LifecycleRequestStreamTimeout:
			lifecycle = true
		}
		v := b
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, false, fmt.Errorf("invalid publish request: field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case wire.LifecycleRequestBuildEvent:
			if life != nil {
				return nil, true, errors.New("invalid publish request: build_event appears more than once")
			}
			life, _ = protowire.ConsumeBytes(v)
		case wire.ToolRequestOrderedBuildEvent:
			if tool != nil {
				return nil, false, errors.New("invalid publish request: ordered_build_event appears more than once")
			}
			tool, _ = protowire.ConsumeBytes(v)
		}
	}
	switch {
	case lifecycle && life == nil:
		return nil, true, errors.New("PublishLifecycleEventRequest without build_event")
	case lifecycle:
		return life, true, nil
	case tool == nil:
		return nil, false, errors.New("publish request without an OrderedBuildEvent (neither PublishBuildToolEventStreamRequest.ordered_build_event nor PublishLifecycleEventRequest.build_event)")
	}
	return tool, false, nil
}

// publishInfo collects the request fields of a publish request that
// splitPublish accepted.
func publishInfo(frame []byte, lifecycle bool) *PublishInfo {
	info := &PublishInfo{Lifecycle: lifecycle}
	keywords, project, check := wire.ToolRequestNotificationKeywords, wire.ToolRequestProjectID, wire.ToolRequestCheckPrecedingLifecycleEventsPresent
	if lifecycle {
		keywords, project, check = wire.LifecycleRequestNotificationKeywords, wire.LifecycleRequestProjectID, wire.LifecycleRequestCheckPrecedingLifecycleEventsPresent
	}
	for b := frame; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		switch {
		case num == keywords && typ == protowire.BytesType:
			v, _ := protowire.ConsumeBytes(b)
			info.NotificationKeywords = append(info.NotificationKeywords, string(v))
		case num == project && typ == protowire.BytesType:
			v, _ := protowire.ConsumeBytes(b)
			info.ProjectID = string(v)
		case num == check && typ == protowire.VarintType:
			v, _ := protowire.ConsumeVarint(b)
			info.CheckPrecedingLifecycleEventsPresent = v != 0
		}
		b = b[protowire.ConsumeFieldValue(num, typ, b):]
	}
	return info
}

// nextBEP reads one frame of Bazel's binary file.
func (r *Reader) nextBEP() (*Stream, *Event, error) {
	if r.finished {
		return r.finishEvent()
	}
	start, frame, index, err := r.frame()
	if err != nil {
		return nil, nil, err
	}
	if err := hollowFrame(r.format, frame); err != nil {
		return nil, nil, r.badFrame(start, index, err)
	}
	s, ev, err := r.bepEvent(frame)
	if err != nil {
		return nil, nil, r.badFrame(start, index, err)
	}
	ev.setPos(start, index)
	return s, ev, nil
}

// bepEvent wraps an encoded BuildEvent as Bazel's BES client does: the
// first event of a stream names it (build id Options.BuildID or the
// invocation id, invocation id BuildStarted.uuid, component TOOL), events
// are numbered from 1, and after the event with last_message comes a
// component_stream_finished event (see finishEvent), which ends the
// stream: a following event (of a concatenated file) starts a new one.
//
// The first event of a Bazel file is BuildStarted. When it names no
// invocation (a BuildStarted without uuid, as every `bazel query` of Bazel
// 4 writes, or an excerpt that starts later), the invocation id is made
// from a digest of that first event (see SynthesizedIDPrefix), so that
// every such stream has a key of its own.
func (r *Reader) bepEvent(payload []byte) (*Stream, *Event, error) {
	p, err := Peek(payload)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid BuildEvent: %w", err)
	}
	if r.cur == nil {
		var inv string
		if p.PayloadField == wire.BuildEventStarted {
			if inv, err = startedUUIDOf(p.Payload); err != nil {
				return nil, nil, fmt.Errorf("invalid BuildEvent: %w", err)
			}
		}
		if inv == "" {
			inv = synthesizedID(payload)
		}
		build := r.opts.BuildID
		if build == "" {
			build = inv
		}
		s := NewStream(&buildpb.StreamId{BuildId: build, InvocationId: inv, Component: buildpb.StreamId_TOOL})
		if old := r.byKey[s.Key]; old != nil {
			s = old
		} else {
			r.byKey[s.Key] = s
			r.streams[string(s.IDBytes)] = s
		}
		r.cur, r.seq = s, 0
	}
	r.seq++
	r.finished = p.LastMessage
	r.peeked, r.hasPeeked = p, true
	return r.cur, r.event(Event{Seq: r.seq, Payload: payload}), nil
}

// finishEvent returns the component_stream_finished event Bazel's BES client
// sends after the last BEP event, and ends the stream.
func (r *Reader) finishEvent() (*Stream, *Event, error) {
	s := r.cur
	r.seq++
	raw := appendFinished(nil, s, r.seq)
	r.finished, r.cur = false, nil
	return s, r.event(Event{Seq: r.seq, Raw: raw}), nil
}

// appendFinished appends the encoding of OrderedBuildEvent{stream_id, seq,
// event: {component_stream_finished: {type: FINISHED}}}, without event time.
func appendFinished(b []byte, s *Stream, seq int64) []byte {
	inner := protowire.SizeTag(wire.BESComponentStreamFinishedType) + protowire.SizeVarint(wire.BESFinishTypeFinished)
	ev := protowire.SizeTag(wire.BESComponentStreamFinished) + protowire.SizeBytes(inner)
	b = protowire.AppendTag(b, wire.OBEStreamID, protowire.BytesType)
	b = protowire.AppendBytes(b, s.IDBytes)
	b = protowire.AppendTag(b, wire.OBESequenceNumber, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(seq))
	b = protowire.AppendTag(b, wire.OBEEvent, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(ev))
	b = protowire.AppendTag(b, wire.BESComponentStreamFinished, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	b = protowire.AppendTag(b, wire.BESComponentStreamFinishedType, protowire.VarintType)
	b = protowire.AppendVarint(b, wire.BESFinishTypeFinished)
	return b
}
