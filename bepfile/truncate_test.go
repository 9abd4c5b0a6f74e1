package bepfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protowire"
)

// Inputs cut at every byte: a killed build leaves its file cut anywhere.
// Whatever the cut, the reader returns exactly the events complete before
// it, byte for byte as a read of the whole file returns them, and then one
// error that names the offset of the frame (or line) the cut is in and
// wraps io.ErrUnexpectedEOF; a cut at a frame boundary is a clean end.

// longTests reports whether BES_LONG_TESTS asks for the exhaustive
// versions of the long tests.
func longTests() bool {
	v, _ := strconv.ParseBool(os.Getenv("BES_LONG_TESTS"))
	return v
}

// cutReader reads prefixes of one input through one buffer, which
// NewReader takes as it is: thousands of reads then cost no allocation of
// the buffer each.
type cutReader struct {
	br   *bufio.Reader
	opts Options
}

func newCutReader(opts Options) *cutReader {
	opts.Reuse = true // compared at once, not kept
	return &cutReader{br: bufio.NewReaderSize(nil, bufSize), opts: opts}
}

// read reads data and calls fn with each event and its stream; it returns
// the number of events and the error that ended the input (nil for a clean
// end).
func (c *cutReader) read(data []byte, fn func(i int, s *Stream, ev *Event)) (int, error) {
	c.br.Reset(bytes.NewReader(data))
	r, err := NewReader(c.br, "cut", c.opts)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	for i := 0; ; i++ {
		s, ev, err := r.Next()
		if err == io.EOF {
			return i, nil
		}
		if err != nil {
			return i, err
		}
		fn(i, s, ev)
	}
}

// fullRead is what a read of the whole input returns: per event its key,
// its encoding, and the offset where its frame starts (the offset after
// the previous one: a synthesised finishing event starts where its frame
// would).
type fullRead struct {
	keys   []string
	encs   [][]byte
	starts []int64
}

func readFull(t *testing.T, data []byte, opts Options) *fullRead {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), "full", opts)
	if err != nil {
		t.Fatal(err)
	}
	fr := &fullRead{}
	var prev int64
	for {
		s, ev, err := r.Next()
		if err == io.EOF {
			return fr
		}
		if err != nil {
			t.Fatal(err)
		}
		fr.keys = append(fr.keys, s.Key)
		fr.encs = append(fr.encs, ev.AppendEncoding(nil, s))
		fr.starts = append(fr.starts, prev)
		prev = r.Offset()
	}
}

// checkCut reads data[:n] and checks it against the full read: want events
// come whole, then either a clean end (errStart < 0) or an error at
// errStart wrapping io.ErrUnexpectedEOF.
func checkCut(t *testing.T, c *cutReader, full *fullRead, data []byte, n, want int, errStart int64) {
	t.Helper()
	var scratch []byte
	got, err := c.read(data[:n], func(i int, s *Stream, ev *Event) {
		if i >= len(full.encs) {
			t.Fatalf("cut at %d: event %d past the %d of the whole input", n, i, len(full.encs))
		}
		scratch = ev.AppendEncoding(scratch[:0], s)
		if s.Key != full.keys[i] || !bytes.Equal(scratch, full.encs[i]) {
			t.Fatalf("cut at %d: event %d differs from the whole input's", n, i)
		}
	})
	if got != want {
		t.Fatalf("cut at %d: %d events, want %d (%v)", n, got, want, err)
	}
	if errStart < 0 {
		if err != nil {
			t.Fatalf("cut at %d, a frame boundary: %v, want a clean end", n, err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut at %d: error %v, want an *Error wrapping io.ErrUnexpectedEOF", n, err)
	}
	if e.Offset != errStart || e.Index != want || e.Resumable() {
		t.Fatalf("cut at %d: error at byte %d (event %d), resumable %v; want byte %d (event %d), fatal", n, e.Offset, e.Index, e.Resumable(), errStart, want)
	}
	if prefix := fmt.Sprintf("cut: byte %d (event %d): ", errStart, want); !bytes.HasPrefix([]byte(err.Error()), []byte(prefix)) {
		t.Fatalf("cut at %d: message %q does not start with %q", n, err, prefix)
	}
}

// frameStarts returns the offsets at which the frames of a
// varint-delimited input start, and its length.
func frameStarts(t *testing.T, data []byte) []int64 {
	var starts []int64
	var off int64
	for _, f := range frames(t, data) {
		starts = append(starts, off)
		off += int64(protowire.SizeBytes(len(f)))
	}
	return append(starts, off)
}

// TestTruncatedAtEveryByte cuts Bazel's binary file and a BES capture at
// every byte: by default every byte of query.bep, and of the first and last
// 2 KiB of test_mixed.bep and bes_test_mixed.obe with every 7th (23rd)
// byte between, which keeps the test to a few seconds under -race;
// BES_LONG_TESTS=1 cuts every byte of them all.
func TestTruncatedAtEveryByte(t *testing.T) {
	for _, tc := range []struct {
		file   string
		opts   Options
		stride int
	}{
		{"query.bep", Options{Format: FormatBEP}, 1},
		{"query.bep", Options{}, 1},
		{"test_mixed.bep", Options{}, 7},
		{"bes_test_mixed.obe", Options{}, 23},
	} {
		t.Run(tc.file+"/"+tc.opts.Format.String(), func(t *testing.T) {
			data := testdata(t, tc.file)
			full := readFull(t, data, tc.opts)
			starts := frameStarts(t, data)
			nFrames := len(starts) - 1
			// Bazel's forms add a finishing event after the frame with
			// last_message.
			extra := len(full.encs) - nFrames
			c := newCutReader(tc.opts)
			stride := tc.stride
			if longTests() {
				stride = 1
			}
			k := 0 // the frame the cut is in
			for n := 0; n < len(data); n++ {
				for starts[k+1] <= int64(n) {
					k++
				}
				if stride > 1 && n > 2<<10 && n < len(data)-2<<10 && n%stride != 0 && int64(n) != starts[k] {
					continue
				}
				if n == 0 {
					if _, err := c.read(nil, nil); !errors.Is(err, ErrNotBEP) {
						t.Fatalf("empty input: %v", err)
					}
					continue
				}
				if int64(n) == starts[k] {
					checkCut(t, c, full, data, n, k, -1) // a frame boundary
					continue
				}
				// Cut inside the first frame too: cut short, at byte 0
				// (issue 13: detection said "not a BEP file" when it
				// found too little to decide).
				checkCut(t, c, full, data, n, k, starts[k])
			}
			// The whole input: every event, the finishing one included.
			checkCut(t, c, full, data, len(data), nFrames+extra, -1)
		})
	}
}

// TestTruncatedJSON cuts Bazel's JSON file at every line boundary, just
// before every newline, and at a sample of offsets inside the lines.
func TestTruncatedJSON(t *testing.T) {
	data := testdata(t, "test_mixed.json")
	opts := Options{Format: FormatNDJSON}
	full := readFull(t, data, opts)
	var starts []int64 // line starts, and the end
	for off := 0; off < len(data); {
		starts = append(starts, int64(off))
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			t.Fatal("no newline at the end")
		}
		off += nl + 1
	}
	starts = append(starts, int64(len(data)))
	lines := len(starts) - 1
	if len(full.encs) != lines+1 {
		t.Fatalf("%d events for %d lines", len(full.encs), lines)
	}
	c := newCutReader(opts)
	auto := newCutReader(Options{})
	for k := 0; k < lines; k++ {
		start, end := int(starts[k]), int(starts[k+1]) // end is after the newline
		if k > 0 {
			checkCut(t, c, full, data, start, k, -1)
			if k%8 == 1 || longTests() {
				checkCut(t, auto, full, data, start, k, -1)
			}
		}
		// The line whole but for its newline: read whole (the last line,
		// with last_message, brings the finishing event).
		want := k + 1
		if k == lines-1 {
			want++
		}
		checkCut(t, c, full, data, end-1, want, -1)
		// Inside the line: a few places in every fourth line, the middle
		// in the others (BES_LONG_TESTS=1: a few in each).
		n := end - 1 - start
		cuts := []int{n / 2}
		if k%4 == 0 || longTests() {
			cuts = []int{1, n / 7, n / 3, n / 2, n - 1}
		}
		for _, cut := range cuts {
			if cut > 0 && cut < n {
				checkCut(t, c, full, data, start+cut, k, starts[k])
			}
		}
	}
	checkCut(t, c, full, data, len(data), lines+1, -1)
}

// TestTruncatedCompressed cuts gzip and zstd compressions of
// test_mixed.bep at a sample of offsets: the events decompressed whole
// come out, then an error wrapping io.ErrUnexpectedEOF at the start of the
// frame cut (in decompressed bytes).
func TestTruncatedCompressed(t *testing.T) {
	plain := testdata(t, "test_mixed.bep")
	full := readFull(t, plain, Options{})
	starts := frameStarts(t, plain)
	nFrames := len(starts) - 1
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"gzip", gzipped(t, plain)},
		// Blocks of at most 1 KiB (zstd's smallest window), so that a cut
		// leaves whole blocks, and events, before it.
		{"zstd", zstdSmallBlocks(t, plain)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCutReader(Options{})
			var cuts []int
			for n := 1; n < len(tc.data); n += max(1, len(tc.data)/151) {
				cuts = append(cuts, n)
			}
			for n := max(1, len(tc.data)-24); n < len(tc.data); n++ {
				cuts = append(cuts, n)
			}
			sawEvents := false
			for _, n := range cuts {
				var scratch []byte
				got, err := c.read(tc.data[:n], func(i int, s *Stream, ev *Event) {
					scratch = ev.AppendEncoding(scratch[:0], s)
					if i >= len(full.encs) || !bytes.Equal(scratch, full.encs[i]) {
						t.Fatalf("cut at %d: event %d differs from the whole input's", n, i)
					}
				})
				if got > 0 {
					sawEvents = true
				}
				var e *Error
				if !errors.As(err, &e) || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("cut at %d of %d: %d events, error %v; want an *Error wrapping io.ErrUnexpectedEOF", n, len(tc.data), got, err)
				}
				if e.Index < 0 { // the header itself is cut
					if got != 0 {
						t.Fatalf("cut at %d: %d events and an error for the whole input: %v", n, got, err)
					}
					continue
				}
				k := min(got, nFrames) // the finishing event has no frame
				if e.Offset != starts[k] || e.Index != k {
					t.Fatalf("cut at %d: %d events, error at byte %d (event %d); want byte %d (event %d): %v", n, got, e.Offset, e.Index, starts[k], k, err)
				}
			}
			if !sawEvents {
				t.Error("no cut gave any event")
			}
		})
	}
}

func zstdSmallBlocks(t *testing.T, b []byte) []byte {
	t.Helper()
	w, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(zstd.MinWindowSize))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(b, nil)
}

// TestCutInFirstEvent: one rule for an input cut inside its first event,
// whatever its form (issue 13: a JSON file cut inside its first line was
// "not a BEP file", exit 1, where a binary one cut inside its first frame
// was cut short, exit 3): at every byte of the first line of Bazel's JSON
// file and of the first frame of its binary file and of a BES capture,
// plain and gzip-compressed, the input is cut short at byte 0, event 0.
func TestCutInFirstEvent(t *testing.T) {
	for _, name := range []string{"test_mixed.json", "test_mixed.bep", "bes_test_mixed.obe"} {
		data := testdata(t, name)
		var first int // the length of the first event
		if strings.HasSuffix(name, ".json") {
			first = bytes.IndexByte(data, '\n')
		} else {
			size, n := protowire.ConsumeVarint(data)
			first = n + int(size)
		}
		c := newCutReader(Options{})
		for n := 1; n < first; n++ {
			for _, in := range []struct {
				form string
				data []byte
			}{{"plain", data[:n]}, {"gzip", nil}} {
				if in.form == "gzip" {
					if n%13 != 1 && n < first-4 && !longTests() {
						continue // gzip's writer is slow to make
					}
					in.data = gzipped(t, data[:n])
				}
				got, err := c.read(in.data, func(int, *Stream, *Event) {})
				var e *Error
				if got != 0 || !errors.As(err, &e) || !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrNotBEP) || e.Offset != 0 || e.Index != 0 {
					t.Fatalf("%s cut at %d of %d, %s: %d events, %v; want cut short at byte 0 (event 0)", name, n, first, in.form, got, err)
				}
			}
		}
	}
}

// TestCompressedCut: a compressed input that ends before its compressed
// data does (cut short, or missing gzip's trailer) is an error naming the
// compression and the compressed byte where the data ends, and wrapping
// io.ErrUnexpectedEOF (issue 13: "zstd: unexpected EOF" at byte 0, and
// "truncated length prefix" for a gzip file without its trailer).
func TestCompressedCut(t *testing.T) {
	plain := testdata(t, "test_mixed.bep")
	starts := frameStarts(t, plain)
	gz := gzipped(t, plain)
	zst := testdata(t, "test_mixed.json.zst")
	for _, tc := range []struct {
		name   string
		data   []byte
		events int    // the events read before the error
		msg    string // the error's message
	}{
		// gzip without its 8-byte trailer: every event, then the cut at
		// the end of the last frame.
		{name: "gzip without trailer", data: gz[:len(gz)-8], events: len(starts) - 1,
			msg: fmt.Sprintf("cut: byte %d (event %d): gzip data cut short at compressed byte %d: unexpected EOF", starts[len(starts)-1], len(starts)-1, len(gz)-8)},
		// A small zstd file cut in half: one block, nothing decompressed.
		{name: "zstd cut in half", data: zst[:len(zst)/2],
			msg: fmt.Sprintf("cut: byte 0: zstd data cut short at compressed byte %d: unexpected EOF", len(zst)/2)},
		{name: "zstd magic cut", data: zst[:3], msg: "cut: byte 0: zstd data cut short at compressed byte 3: unexpected EOF"},
		{name: "gzip header cut", data: gz[:5], msg: "cut: byte 0: gzip data cut short at compressed byte 5: unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := newCutReader(Options{}).read(tc.data, func(int, *Stream, *Event) {})
			var ce *CompressedCutError
			if !errors.As(err, &ce) || !errors.Is(err, io.ErrUnexpectedEOF) || ce.Offset != int64(len(tc.data)) {
				t.Fatalf("%d events, error %v; want a *CompressedCutError at %d", got, err, len(tc.data))
			}
			if got < tc.events || err.Error() != tc.msg {
				t.Errorf("%d events, error %q; want %d, %q", got, err, tc.events, tc.msg)
			}
		})
	}
	// A gzip file cut in the middle: the frame cut says so too.
	cut := len(gz) * 3 / 4
	got, err := newCutReader(Options{}).read(gz[:cut], func(int, *Stream, *Event) {})
	var ce *CompressedCutError
	if !errors.As(err, &ce) || ce.Compression != "gzip" || ce.Offset != int64(cut) || got == 0 ||
		!strings.Contains(err.Error(), fmt.Sprintf("(event %d): truncated message: want ", got)) ||
		!strings.HasSuffix(err.Error(), fmt.Sprintf(": gzip data cut short at compressed byte %d: unexpected EOF", cut)) {
		t.Errorf("gzip cut at %d: %d events, %v", cut, got, err)
	}
}

// TestBOM: a UTF-8 byte order mark before Bazel's JSON file (Windows tools
// write one) is skipped: the same events, offsets counting it (issue 13:
// it was refused as "not a BEP file"). Before a binary file it is no mark,
// and the file is no BEP.
func TestBOM(t *testing.T) {
	data := testdata(t, "test_mixed.json")
	full := readFull(t, data, Options{})
	bom := append([]byte{0xef, 0xbb, 0xbf}, data...)
	for _, opts := range []Options{{}, {Format: FormatNDJSON}} {
		withBOM := readFull(t, bom, opts)
		if len(withBOM.encs) != len(full.encs) {
			t.Fatalf("%v: %d events, want %d", opts.Format, len(withBOM.encs), len(full.encs))
		}
		for i := range full.encs {
			if !bytes.Equal(withBOM.encs[i], full.encs[i]) || withBOM.starts[i] != full.starts[i]+3 && i > 0 {
				t.Fatalf("%v: event %d differs, or starts at %d, want %d", opts.Format, i, withBOM.starts[i], full.starts[i]+3)
			}
		}
	}
	// Cut: offsets count the mark.
	_, err := newCutReader(Options{}).read(bom[:100], func(int, *Stream, *Event) {})
	if err == nil || err.Error() != "cut: byte 3 (event 0): line 1: truncated JSON: unexpected EOF" {
		t.Errorf("cut after the mark: %v", err)
	}
	// The mark alone is an empty input.
	if _, err := newCutReader(Options{}).read(bom[:3], nil); err == nil || err.Error() != "cut: empty input" {
		t.Errorf("the mark alone: %v", err)
	}
	bin := append([]byte{0xef, 0xbb, 0xbf}, testdata(t, "test_mixed.bep")...)
	if _, err := newCutReader(Options{}).read(bin, nil); !errors.Is(err, ErrNotBEP) {
		t.Errorf("a mark before a binary file: %v, want ErrNotBEP", err)
	}
}
