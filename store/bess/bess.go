// Package bess is the codec of bes's compact stream files (.bess): one build
// event stream per file, a header naming the stream and then one record per
// event, each checked by a CRC-32C of 4 bytes. It knows nothing of where the files live or how they
// are catalogued; a backend (store/local) keeps them and lists them.
//
// Format, version 2 (written since issue 13). All integers are unsigned
// LEB128 varints (protobuf varints) but the checksums; "zigzag" marks signed
// values in protobuf's zigzag form.
//
//	file    = header record*
//	header  = "BESS" version:byte(2) len:varint streamID:bytes len:varint typeURL:bytes crc:uint32le
//	record  = flags:varint [seq:varint] [secondsDelta:zigzag nanos:zigzag] len:varint data:bytes crc:uint32le
//
// crc is the CRC-32C (Castagnoli) of the header's or the record's bytes
// before it: a byte flipped on disk makes the reader fail at that record
// (ErrChecksum), never return other data. streamID is the StreamId's wire
// encoding exactly as read (bepfile.Stream.IDBytes). Record flags:
//
//	bit 0 (flagRaw)  data is a whole OrderedBuildEvent (bepfile.Event.Raw);
//	                 otherwise it is the Bazel payload (bepfile.Event.Payload)
//	bit 1 (flagTime) the event has an event time; secondsDelta is its seconds
//	                 minus those of the previous record that had a time (0
//	                 before the first), nanos its nanoseconds
//	bit 2 (flagSeq)  seq is present (as uint64(Seq)); when clear, Seq is the
//	                 previous record's Seq + 1 (1 for the first record)
//
// Other bits are reserved: a reader that meets one fails, since it cannot
// know what follows. A version 2 file has no footer: a file appended to live
// ends where its last synced record ends, so the reader's caller decides
// whether a record cut short at the end is damage or a write in progress.
//
// Version 3 (issue 13) tells a file written whole from one appended to live,
// so that a file cut short can be told from a write in progress without a
// catalog. It is version 2 with header flags after the version byte, and an
// end record:
//
//	header  = "BESS" version:byte(3) hflags:varint len:varint streamID:bytes len:varint typeURL:bytes crc:uint32le
//	end     = flags:varint(flagEnd) events:varint crc:uint32le
//
// Header flag bit 0 (hflagWhole) marks a file written whole (Encoder.
// WholeHeader, store/local's ingest), which ends with one end record
// (Encoder.End) counting the records before it. A reader of such a file
// that meets its end before the end record, or inside a record, fails with
// ErrCut (as well as io.ErrUnexpectedEOF): the file was cut, it is not
// being written. A writer that goes on appending to such a file first writes the
// header again without the flag (OpenHeader, of the same length) and then
// cuts off the end record; a version 3 file without the flag whose last
// record is the end record (a writer killed between the two) reads as
// ending there. Other header flag bits are reserved, as record flags are.
//
// Version 1 (bes before issue 13) is version 2 without the crc fields. It
// is still read (Reader.Version says which a file is; its caller can check
// a whole-file digest instead), and an Encoder that continues a version 1
// file writes version 1 records; files appended to live are version 2 (Header),
// files written whole version 3 (WholeHeader). Every version is read.
package bess

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/bes-cli/bes/bepfile"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

const (
	// Magic starts every stream file.
	Magic = "BESS"
	// Version is the format version Header writes (a file appended to
	// live); it reads it, Version1 and Version3.
	Version = 2
	// Version1 is the format of bes before issue 13, without checksums.
	Version1 = 1
	// Version3 is the format of a file whose header has flags (WholeHeader,
	// OpenHeader), and of a whole file's end record.
	Version3 = 3

	flagRaw  = 1 << 0
	flagTime = 1 << 1
	flagSeq  = 1 << 2
	flagEnd  = 1 << 3 // version 3: the end record, alone
	flagsAll = flagRaw | flagTime | flagSeq

	hflagWhole = 1 << 0

	// MaxHeaderField bounds the StreamId and the type URL of a header, in
	// bytes: a reader refuses a longer one as corrupt. Writers (store/local)
	// refuse ids far shorter than this before they write anything.
	MaxHeaderField = 16 << 20
	// DefaultMaxRecordSize bounds one record's data when the file size is
	// not known. Bazel events over 50 MiB have been seen in the wild.
	DefaultMaxRecordSize = 1 << 30
)

// CorruptError reports a stream file that cannot be read: its name, the
// byte offset where reading failed, and the cause (io.ErrUnexpectedEOF for a
// file cut short). Test for it with errors.As.
type CorruptError struct {
	File   string
	Offset int64
	Err    error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: corrupt stream file at offset %d: %v", e.File, e.Offset, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// ErrChecksum is wrapped (in a *CorruptError) by the error for a header or
// record whose bytes do not give the CRC-32C stored after them: the file
// was changed on disk. Test for it with errors.Is.
var ErrChecksum = errors.New("checksum mismatch")

// ErrCut is wrapped (in a *CorruptError) by the error for a file written
// whole (version 3, WholeHeader) that ends before its end record: the file
// was cut after it was written. The error wraps io.ErrUnexpectedEOF too:
// a caller that takes a record cut short at the end for a write in progress
// (a file appended to live) must rule ErrCut out first. Test for it with
// errors.Is.
var ErrCut = errors.New("stream file written whole is cut short")

// castagnoli is the CRC-32C table (hardware-accelerated where the CPU has it).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Encoder writes the stream file format to a writer: Header once, then
// Record for each event. Its state (the previous record's sequence number
// and seconds, which records are written relative to) can continue a file
// that a Reader read to its end (Continue). An Encoder is not safe for
// concurrent use; copying one copies its state.
type Encoder struct {
	w       io.Writer
	prevSeq int64
	prevSec int64
	v1      bool // continuing a version 1 file: no checksums
	buf     []byte
}

// NewEncoder returns an Encoder writing to w, at the start of a file.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// SetWriter makes e write to w from now on, keeping its state.
func (e *Encoder) SetWriter(w io.Writer) { e.w = w }

// Continue sets e's state to continue the file that rd has read so far:
// the next record e writes follows rd's last, in the file's version.
func (e *Encoder) Continue(rd *Reader) {
	e.prevSeq, e.prevSec, e.v1 = rd.prevSeq, rd.prevSec, rd.version == Version1
}

// Header writes the file header for st (its IDBytes and TypeURL exactly),
// in format Version (a file appended to live), and returns the number of
// bytes written.
func (e *Encoder) Header(st *bepfile.Stream) (int, error) {
	e.v1 = false
	e.buf = appendHeader(e.buf[:0], st, Version, 0)
	return e.w.Write(e.buf)
}

// WholeHeader writes the file header for st in format Version3, marking
// the file as written whole: after its records the writer must call End.
func (e *Encoder) WholeHeader(st *bepfile.Stream) (int, error) {
	e.v1 = false
	e.buf = appendHeader(e.buf[:0], st, Version3, hflagWhole)
	return e.w.Write(e.buf)
}

// OpenHeader returns the header of a Version3 file for st without the
// whole flag: the bytes a writer that goes on appending to a file written
// whole writes over its header (the same length as WholeHeader's) before it
// cuts off the end record (Reader.EndOffset).
func OpenHeader(st *bepfile.Stream) []byte {
	return appendHeader(nil, st, Version3, 0)
}

// End writes the end record of a file begun with WholeHeader; events is
// the number of records written before it. Nothing may follow it.
func (e *Encoder) End(events int64) (int, error) {
	b := protowire.AppendVarint(e.buf[:0], flagEnd)
	b = protowire.AppendVarint(b, uint64(events))
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	e.buf = b
	return e.w.Write(b)
}

func appendHeader(b []byte, st *bepfile.Stream, version byte, hflags uint64) []byte {
	b = append(b, Magic...)
	b = append(b, version)
	if version >= Version3 {
		b = protowire.AppendVarint(b, hflags)
	}
	b = protowire.AppendBytes(b, st.IDBytes)
	b = protowire.AppendString(b, st.TypeURL)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// Record writes one event and returns the number of bytes written.
func (e *Encoder) Record(ev *bepfile.Event) (int, error) {
	data := ev.Payload
	var flags uint64
	if ev.Raw != nil {
		flags |= flagRaw
		data = ev.Raw
	}
	if ev.HasTime {
		flags |= flagTime
	}
	if ev.Seq != e.prevSeq+1 {
		flags |= flagSeq
	}
	b := protowire.AppendVarint(e.buf[:0], flags)
	if flags&flagSeq != 0 {
		b = protowire.AppendVarint(b, uint64(ev.Seq))
	}
	if ev.HasTime {
		b = protowire.AppendVarint(b, protowire.EncodeZigZag(ev.Time.Seconds-e.prevSec))
		b = protowire.AppendVarint(b, protowire.EncodeZigZag(int64(ev.Time.Nanos)))
		e.prevSec = ev.Time.Seconds
	}
	b = protowire.AppendVarint(b, uint64(len(data)))
	e.buf = b
	e.prevSeq = ev.Seq
	n, err := e.w.Write(b)
	if err != nil {
		return n, err
	}
	m, err := e.w.Write(data)
	n += m
	if err != nil || e.v1 {
		return n, err
	}
	crc := crc32.Update(crc32.Checksum(b, castagnoli), castagnoli, data)
	m, err = e.w.Write(binary.LittleEndian.AppendUint32(e.buf[len(e.buf):], crc))
	return n + m, err
}

// Reader reads a stream file one event at a time, with bounded buffering:
// it holds one event's data at a time.
type Reader struct {
	r       *bufio.Reader
	name    string
	size    int64 // -1 if unknown
	off     int64
	stream  *bepfile.Stream
	prevSeq int64
	prevSec int64
	version byte
	whole   bool   // version 3 with hflagWhole: ends with an end record
	records int64  // records read
	endAt   int64  // offset of the end record, -1 before it is read
	crc     uint32 // CRC-32C of the current header or record's bytes before pend
	pend    []byte // bytes of varints read since crc was last updated
	err     error

	// MaxRecordSize bounds one record's data; longer records are reported
	// as corrupt. NewReader sets it to DefaultMaxRecordSize.
	MaxRecordSize int64
}

// NewReader reads the header of a stream file from r and returns a Reader
// positioned at the first event. name is used in errors only. size is the
// file's size, or -1 if unknown; when known, no length prefix larger than
// the rest of the file is believed. Errors are *CorruptError (or r's own
// read errors, wrapped in one); a header cut short wraps
// io.ErrUnexpectedEOF.
func NewReader(r io.Reader, name string, size int64) (*Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	rd := &Reader{r: br, name: name, size: size, endAt: -1, MaxRecordSize: DefaultMaxRecordSize}
	var head [len(Magic) + 1]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return nil, rd.corrupt(0, fmt.Errorf("reading header: %w", eofIsUnexpected(err)))
	}
	rd.off = int64(len(head))
	if string(head[:len(Magic)]) != Magic {
		return nil, rd.corrupt(0, errors.New("not a bes stream file (bad magic)"))
	}
	rd.version = head[len(Magic)]
	if rd.version != Version && rd.version != Version1 && rd.version != Version3 {
		return nil, rd.corrupt(int64(len(Magic)), fmt.Errorf("unsupported stream file version %d (this bes reads versions %d to %d)", rd.version, Version1, Version3))
	}
	if rd.version != Version1 {
		rd.crc = crc32.Checksum(head[:], castagnoli)
	}
	if rd.version >= Version3 {
		hflags, err := rd.varint()
		if err != nil {
			return nil, err
		}
		if hflags&^hflagWhole != 0 {
			return nil, rd.corrupt(int64(len(head)), fmt.Errorf("unknown header flags %#x", hflags&^hflagWhole))
		}
		rd.whole = hflags&hflagWhole != 0
	}
	start := rd.off
	idBytes, err := rd.bytes(MaxHeaderField)
	if err != nil {
		return nil, err
	}
	url, err := rd.bytes(MaxHeaderField)
	if err != nil {
		return nil, err
	}
	if err := rd.checksum(0); err != nil {
		return nil, err
	}
	id := &buildpb.StreamId{}
	if err := proto.Unmarshal(idBytes, id); err != nil {
		return nil, rd.corrupt(start, fmt.Errorf("bad stream id: %w", err))
	}
	rd.stream = &bepfile.Stream{ID: id, Key: bepfile.Key(id), IDBytes: idBytes, TypeURL: string(url)}
	return rd, nil
}

// Version returns the file's format version: Version, Version3, or
// Version1 (no checksums: the caller may check a digest of the whole file
// instead).
func (rd *Reader) Version() int { return int(rd.version) }

// Whole reports whether the file says it was written whole (version 3,
// WholeHeader): one that ends before its end record is cut (ErrCut), not
// being written.
func (rd *Reader) Whole() bool { return rd.whole }

// EndOffset returns the offset of the file's end record once Next has
// returned io.EOF after it, and -1 otherwise (no end record, or not read
// yet).
func (rd *Reader) EndOffset() int64 { return rd.endAt }

// checksum reads the CRC-32C that ends the header or record that started
// at start (in a version 2 file) and compares it with the bytes read.
func (rd *Reader) checksum(start int64) error {
	if rd.version == Version1 {
		return nil
	}
	rd.flushCRC()
	want := rd.crc
	const n = 4
	if rd.size >= 0 && rd.size-rd.off < n {
		return rd.corrupt(start, fmt.Errorf("reading checksum: %w", io.ErrUnexpectedEOF))
	}
	b, err := rd.r.Peek(n)
	if err != nil {
		return rd.corrupt(start, fmt.Errorf("reading checksum: %w", eofIsUnexpected(err)))
	}
	got := binary.LittleEndian.Uint32(b)
	rd.r.Discard(n)
	rd.off += n
	if got != want {
		return rd.corrupt(start, fmt.Errorf("%w: stored CRC-32C %08x, the %d bytes give %08x", ErrChecksum, got, rd.off-n-start, want))
	}
	return nil
}

// flushCRC folds the varint bytes read since the last update into crc.
func (rd *Reader) flushCRC() {
	if len(rd.pend) > 0 {
		rd.crc = crc32.Update(rd.crc, castagnoli, rd.pend)
		rd.pend = rd.pend[:0]
	}
}

// Stream returns the stream the file holds, as its header describes it.
func (rd *Reader) Stream() *bepfile.Stream { return rd.stream }

// Name returns the file name the Reader reports in errors.
func (rd *Reader) Name() string { return rd.name }

// Offset returns the offset of the next record.
func (rd *Reader) Offset() int64 { return rd.off }

// Next returns the next event. It returns io.EOF, unwrapped, at the clean
// end of the file, and a *CorruptError for anything else, including a file
// that ends inside a record (wrapping io.ErrUnexpectedEOF). Once it has
// failed it keeps failing. The event and its data are freshly allocated and
// belong to the caller.
func (rd *Reader) Next() (*bepfile.Event, error) {
	if rd.err != nil {
		return nil, rd.err
	}
	ev, err := rd.next()
	if err != nil {
		rd.err = err
	}
	return ev, err
}

func (rd *Reader) next() (*bepfile.Event, error) {
	start := rd.off
	if rd.endAt >= 0 {
		return nil, io.EOF
	}
	if _, err := rd.r.Peek(1); err == io.EOF {
		if rd.size >= 0 && rd.off != rd.size {
			return nil, rd.corrupt(rd.off, fmt.Errorf("file ends at %d, expected %d bytes", rd.off, rd.size))
		}
		if rd.whole {
			return nil, rd.corrupt(rd.off, fmt.Errorf("it ends at byte %d after %d records, without its end record: %w", rd.off, rd.records, io.ErrUnexpectedEOF))
		}
		return nil, io.EOF
	}
	rd.crc, rd.pend = 0, rd.pend[:0]
	flags, err := rd.varint()
	if err != nil {
		return nil, err
	}
	if flags == flagEnd && rd.version >= Version3 {
		return nil, rd.end(start)
	}
	if flags&^flagsAll != 0 {
		return nil, rd.corrupt(start, fmt.Errorf("unknown record flags %#x", flags&^flagsAll))
	}
	ev := &bepfile.Event{Seq: rd.prevSeq + 1}
	if flags&flagSeq != 0 {
		v, err := rd.varint()
		if err != nil {
			return nil, err
		}
		ev.Seq = int64(v)
	}
	if flags&flagTime != 0 {
		d, err := rd.varint()
		if err != nil {
			return nil, err
		}
		ns, err := rd.varint()
		if err != nil {
			return nil, err
		}
		nanos := protowire.DecodeZigZag(ns)
		if int64(int32(nanos)) != nanos {
			return nil, rd.corrupt(start, fmt.Errorf("nanoseconds %d out of range", nanos))
		}
		ev.HasTime = true
		ev.Time = bepfile.Timestamp{Seconds: rd.prevSec + protowire.DecodeZigZag(d), Nanos: int32(nanos)}
	}
	limit := rd.MaxRecordSize
	if limit <= 0 {
		limit = DefaultMaxRecordSize
	}
	data, err := rd.bytes(limit)
	if err != nil {
		return nil, err
	}
	if err := rd.checksum(start); err != nil {
		return nil, err
	}
	if flags&flagRaw != 0 {
		ev.Raw = data
	} else {
		ev.Payload = data
	}
	rd.prevSeq = ev.Seq
	rd.records++
	if ev.HasTime {
		rd.prevSec = ev.Time.Seconds
	}
	return ev, nil
}

// end reads the rest of the end record that started at start, and checks
// that it counts the records read and ends the file. It returns io.EOF
// when it does.
func (rd *Reader) end(start int64) error {
	n, err := rd.varint()
	if err != nil {
		return err
	}
	if err := rd.checksum(start); err != nil {
		return err
	}
	if n != uint64(rd.records) {
		return rd.corrupt(start, fmt.Errorf("the end record counts %d records, the file holds %d", n, rd.records))
	}
	if _, err := rd.r.Peek(1); err != io.EOF || rd.size >= 0 && rd.off != rd.size {
		return rd.corrupt(rd.off, errors.New("data after the end record"))
	}
	rd.endAt = start
	return io.EOF
}

// varint reads one varint.
func (rd *Reader) varint() (uint64, error) {
	start := rd.off
	var x uint64
	for i := 0; ; i++ {
		c, err := rd.r.ReadByte()
		if err != nil {
			return 0, rd.corrupt(start, fmt.Errorf("reading varint: %w", eofIsUnexpected(err)))
		}
		rd.off++
		if i == 9 && c > 1 {
			return 0, rd.corrupt(start, errors.New("varint overflows 64 bits"))
		}
		if rd.version != Version1 {
			rd.pend = append(rd.pend, c)
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, nil
		}
	}
}

// bytes reads a varint length and that many bytes, allocating only after
// checking the length against limit and the rest of the file.
func (rd *Reader) bytes(limit int64) ([]byte, error) {
	start := rd.off
	n, err := rd.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, rd.corrupt(start, fmt.Errorf("length %d exceeds the limit of %d bytes", n, limit))
	}
	if rd.size >= 0 && n > uint64(rd.size-rd.off) {
		return nil, rd.corrupt(start, fmt.Errorf("length %d exceeds the %d bytes left in the file: %w", n, rd.size-rd.off, io.ErrUnexpectedEOF))
	}
	b, err := readN(rd.r, int(n))
	if err != nil {
		return nil, rd.corrupt(start, fmt.Errorf("reading %d bytes: %w", n, eofIsUnexpected(err)))
	}
	rd.off += int64(n)
	if rd.version != Version1 {
		rd.flushCRC()
		rd.crc = crc32.Update(rd.crc, castagnoli, b)
	}
	return b, nil
}

// readChunk is the size up to which readN allocates its buffer at once.
const readChunk = 1 << 20

// readN reads exactly n bytes into a new slice of capacity n. Beyond
// readChunk the buffer grows as the bytes arrive, so that a length that
// a short or damaged file merely claims (when its size is not known) costs
// no more memory than the bytes really there.
func readN(r io.Reader, n int) ([]byte, error) {
	if n <= readChunk {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	b := make([]byte, 0, readChunk)
	for len(b) < n {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(2*cap(b), n))
			copy(nb, b)
			b = nb
		}
		m, err := io.ReadFull(r, b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (rd *Reader) corrupt(off int64, err error) error {
	if rd.whole && errors.Is(err, io.ErrUnexpectedEOF) {
		// Not a write in progress: the file was written whole.
		err = fmt.Errorf("%w: %w", ErrCut, err)
	}
	return &CorruptError{File: rd.name, Offset: off, Err: err}
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
