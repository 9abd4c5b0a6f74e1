package bepfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
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
				if tc.opts.Format == FormatAuto && k == 0 {
					// Cut inside the first frame: detection may find too
					// little to decide; then it says so at byte 0.
					if _, err := c.read(data[:n], nil); errors.Is(err, ErrNotBEP) {
						var e *Error
						if !errors.As(err, &e) || e.Offset != 0 {
							t.Fatalf("cut at %d: %v", n, err)
						}
						continue
					}
				}
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
				if n < 4 && errors.Is(err, ErrNotBEP) {
					continue // too short to see the magic number
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
