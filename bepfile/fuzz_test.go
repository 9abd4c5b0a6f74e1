package bepfile

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile/wire"
)

// Fuzz targets for every input form and for the form detection. `go test`
// runs their seed corpus (prefixes of the real files in testdata/); run one
// for longer with
//
//	go test -run='^$' -fuzz='^FuzzBEP$' -fuzztime=5m ./bepfile
//
// Each checks that the reader never panics or loops, that whatever it
// returns is well-formed (every event encodes to an OrderedBuildEvent of its
// stream, every error is an *Error placed between the last event and the
// bytes consumed), and that its memory stays bounded by MaxEventSize and the
// input actually read, whatever a length prefix claims.

// fuzzMaxEvent is the frame limit of the fuzz targets: small, so that
// mutated length prefixes often claim more, and the memory bound is tight.
const fuzzMaxEvent = 64 << 10

// maxSeed bounds the size of a seed: the fuzzing engine minimises every
// new input it finds, which takes long for large ones.
const maxSeed = 2 << 10

// seedPrefixes returns the first frames of a varint-delimited file, cut
// after 1, 2 and 3 frames, its last 3 frames, and its first 3 frames with
// the third cut in the middle, each cut to maxSeed bytes.
func seedPrefixes(t testing.TB, data []byte) [][]byte {
	fs := frames(t, data)
	join := func(fs [][]byte) []byte {
		var out []byte
		for _, f := range fs {
			out = protowire.AppendBytes(out, f)
		}
		return out
	}
	var seeds [][]byte
	for _, n := range []int{1, 2, 3} {
		if n <= len(fs) {
			seeds = append(seeds, join(fs[:n]))
		}
	}
	if len(fs) > 3 {
		seeds = append(seeds, join(fs[len(fs)-3:]))
		three := join(fs[:3])
		seeds = append(seeds, three[:len(three)-len(fs[2])/2])
	}
	return capSeeds(seeds)
}

func capSeeds(seeds [][]byte) [][]byte {
	for i, s := range seeds {
		seeds[i] = s[:min(len(s), maxSeed)]
	}
	return seeds
}

// seedLines returns the first 1, 2 and 4 lines of an NDJSON file, its last
// 2 lines, and the first 2 lines with the second cut in the middle.
func seedLines(data []byte) [][]byte {
	lines := bytes.SplitAfter(data, []byte("\n"))
	for len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	seeds := [][]byte{
		bytes.Join(lines[:1], nil),
		bytes.Join(lines[:2], nil),
		bytes.Join(lines[:4], nil),
		bytes.Join(lines[len(lines)-2:], nil),
	}
	two := bytes.Join(lines[:2], nil)
	return capSeeds(append(seeds, two[:len(lines[0])+len(lines[1])/2]))
}

// fuzzReader runs the fuzz targets' checks. It keeps one input buffer
// for all the inputs of a fuzzing process (NewReader uses a *bufio.Reader
// of its size as it is), which spares a 1 MiB allocation per input.
type fuzzReader struct{ br *bufio.Reader }

func newFuzzReader() *fuzzReader {
	return &fuzzReader{br: bufio.NewReaderSize(nil, bufSize)}
}

// read reads data to the end with opts and checks the reader's contract.
func (fr *fuzzReader) read(t *testing.T, data []byte, opts Options) {
	opts.MaxEventSize = fuzzMaxEvent
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc

	fr.br.Reset(bytes.NewReader(data))
	r, err := NewReader(fr.br, "fuzz", opts)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("NewReader: %v (%T), want an *Error", err, err)
		}
		return
	}
	defer r.Close()
	if opts.Format != FormatAuto && r.Format() != opts.Format {
		t.Fatalf("format %v, asked for %v", r.Format(), opts.Format)
	}
	var prevEnd int64 // offset of the end of the last event's frame
	for n := 0; ; n++ {
		// Every frame or line takes at least one byte; Bazel's forms add
		// at most one finishing event per event read.
		if lim := 2*r.Offset() + 2; int64(n) > lim {
			t.Fatalf("%d results after %d bytes: the reader loops", n, r.Offset())
		}
		s, ev, err := r.Next()
		if err == io.EOF {
			if _, _, again := r.Next(); again != io.EOF {
				t.Fatalf("Next after io.EOF returned %v", again)
			}
			break
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Next: %v (%T), want an *Error", err, err)
			}
			if e.Offset < prevEnd || e.Offset > r.Offset() {
				t.Fatalf("error at offset %d, outside [%d, %d]: %v", e.Offset, prevEnd, r.Offset(), err)
			}
			var big *SizeTooLargeError
			if errors.As(err, &big) && big.Size <= uint64(big.Max) {
				t.Fatalf("size error for %d bytes, limit %d", big.Size, big.Max)
			}
			if e.Resumable() {
				prevEnd = r.Offset()
				continue
			}
			if _, _, again := r.Next(); again != err {
				t.Fatalf("Next after the fatal error %v returned %v", err, again)
			}
			break
		}
		if s == nil || ev == nil {
			t.Fatal("Next returned a nil stream or event without an error")
		}
		if len(ev.Payload) > fuzzMaxEvent || len(ev.Raw) > fuzzMaxEvent+64 {
			t.Fatalf("event of %d+%d bytes over the limit of %d", len(ev.Payload), len(ev.Raw), fuzzMaxEvent)
		}
		if s.Key != Key(s.ID) {
			t.Fatalf("stream key %q, its id makes %q", s.Key, Key(s.ID))
		}
		obe := &buildpb.OrderedBuildEvent{}
		if err := proto.Unmarshal(ev.AppendEncoding(nil, s), obe); err != nil {
			t.Fatalf("event %d does not encode to an OrderedBuildEvent: %v", ev.Seq, err)
		}
		if obe.GetSequenceNumber() != ev.Seq || Key(obe.GetStreamId()) != s.Key {
			t.Fatalf("event encodes to stream %q seq %d, was read as %q seq %d", Key(obe.GetStreamId()), obe.GetSequenceNumber(), s.Key, ev.Seq)
		}
		// Bazel's own files are framed by their events, which the reader
		// walks; a capture's payloads are bytes in an Any, kept as they are.
		if f := r.Format(); (f == FormatBEP || f == FormatNDJSON) && ev.IsBazel() {
			if _, err := Peek(ev.Payload); err != nil {
				t.Fatalf("Bazel payload that Peek refuses: %v", err)
			}
		}
		prevEnd = r.Offset()
	}

	// Memory: the reader's buffers, plus what the input read can account
	// for; never a frame a length prefix merely claims.
	runtime.ReadMemStats(&ms)
	fixed := int64(16 << 20) // buffers, decompressor state, slabs
	if r.Compression() == "zstd" {
		// A zstd frame declares its window, which the decoder allocates;
		// the reader refuses one over zstdMaxWindow.
		fixed += zstdMaxWindow
	}
	if got, lim := ms.TotalAlloc-before, uint64(fixed+8*fuzzMaxEvent+256*r.Offset()+256*int64(len(data))); got > lim {
		t.Fatalf("allocated %d bytes reading %d bytes (%d decompressed), more than %d", got, len(data), r.Offset(), lim)
	}
}

func fuzzSeeds(f *testing.F, seeds [][]byte) {
	for _, s := range seeds {
		f.Add(s, false)
	}
	if len(seeds) > 0 {
		f.Add(seeds[0], true)
	}
}

// FuzzBEP reads Bazel's binary form.
func FuzzBEP(f *testing.F) {
	var seeds [][]byte
	for _, name := range []string{"test_mixed.bep", "build_keep_going_fail.bep", "query.bep"} {
		seeds = append(seeds, seedPrefixes(f, testdata(f, name))...)
	}
	fuzzSeeds(f, seeds)
	fr := newFuzzReader()
	f.Fuzz(func(t *testing.T, data []byte, reuse bool) {
		fr.read(t, data, Options{Format: FormatBEP, Reuse: reuse})
	})
}

// FuzzNDJSON reads Bazel's JSON form.
func FuzzNDJSON(f *testing.F) {
	var seeds [][]byte
	for _, name := range []string{"test_mixed.json", "build_keep_going_fail.json", "query.json"} {
		seeds = append(seeds, seedLines(testdata(f, name))...)
	}
	seeds = append(seeds, []byte("\n\r\n{}\n"), []byte(`{"id":{"started":{}},"started":{"uuid":"\ud800"}}`))
	// Pretty-printed values, several on a line, garbage between them.
	pretty, _ := joinValues(prettyValues(f, bytes.Join(seedLines(testdata(f, "query.json"))[1:3], nil)), "\n", "\n")
	seeds = append(seeds, capSeeds([][]byte{pretty})[0], []byte(`{"id":{}}{"id":{}} 42 x`+"\n"+`{"id":{"progress":`+"\n"+`{"id":{}}`))
	fuzzSeeds(f, seeds)
	fr := newFuzzReader()
	f.Fuzz(func(t *testing.T, data []byte, reuse bool) {
		fr.read(t, data, Options{Format: FormatNDJSON, Reuse: reuse})
	})
}

// FuzzOBE reads varint-delimited OrderedBuildEvents.
func FuzzOBE(f *testing.F) {
	seeds := seedPrefixes(f, testdata(f, "bes_test_mixed.obe"))
	fuzzSeeds(f, seeds)
	fr := newFuzzReader()
	f.Fuzz(func(t *testing.T, data []byte, reuse bool) {
		fr.read(t, data, Options{Format: FormatOBE, Reuse: reuse})
	})
}

// FuzzPublish reads recorded publish requests, lifecycle and tool.
func FuzzPublish(f *testing.F) {
	seeds := [][]byte{testdata(f, "bes_test_mixed.lifecycle.obe")}
	// Tool requests around the first events of the captured tool stream.
	fs := frames(f, testdata(f, "bes_test_mixed.obe"))
	var tool []byte
	for i, fr := range fs[:3] {
		var req []byte
		req = protowire.AppendTag(req, wire.ToolRequestOrderedBuildEvent, protowire.BytesType)
		req = protowire.AppendBytes(req, fr)
		if i == 0 {
			req = protowire.AppendTag(req, wire.ToolRequestProjectID, protowire.BytesType)
			req = protowire.AppendString(req, "project")
			req = protowire.AppendTag(req, wire.ToolRequestCheckPrecedingLifecycleEventsPresent, protowire.VarintType)
			req = protowire.AppendVarint(req, 1)
		}
		tool = protowire.AppendBytes(tool, req)
	}
	seeds = append(seeds, tool, append(bytes.Clone(tool), seeds[0]...))
	fuzzSeeds(f, seeds)
	fr := newFuzzReader()
	f.Fuzz(func(t *testing.T, data []byte, reuse bool) {
		fr.read(t, data, Options{Format: FormatPublish, Reuse: reuse})
	})
}

// FuzzDetect detects the form of arbitrary input and reads it in the form
// found. It also calls the detection on prefixes of the input directly.
func FuzzDetect(f *testing.F) {
	var seeds [][]byte
	for _, name := range []string{"test_mixed.bep", "bes_test_mixed.obe"} {
		seeds = append(seeds, seedPrefixes(f, testdata(f, name))[:2]...)
	}
	seeds = append(seeds, seedLines(testdata(f, "build_ok.json"))[:2]...)
	seeds = append(seeds, testdata(f, "bes_test_mixed.lifecycle.obe"), []byte("{\"id\""), []byte(" \n{"), []byte{0x7b, 0x0a, 0x01}, []byte("{\n  \"id\": {\n    \"started\": {}\n  }\n}\n{"))
	fuzzSeeds(f, seeds)
	fr := newFuzzReader()
	f.Fuzz(func(t *testing.T, data []byte, reuse bool) {
		p := data[:min(len(data), peekSize)]
		for _, q := range [][]byte{p, p[:len(p)/2]} {
			enoughToDetect(q)
			for _, eof := range []bool{false, true} {
				if got := detect(q, eof); got < FormatAuto || got > FormatNDJSON {
					t.Fatalf("detect returned %v", got)
				}
			}
		}
		fr.read(t, data, Options{Reuse: reuse})
	})
}

// FuzzGzip reads gzip-compressed input: the decompressor and the reader
// behind it.
func FuzzGzip(f *testing.F) {
	for _, s := range compressedSeeds(f) {
		f.Add(gzipped(f, s), false)
	}
	fr := newFuzzReader()
	f.Fuzz(func(t *testing.T, data []byte, reuse bool) {
		fr.read(t, data, Options{Reuse: reuse})
	})
}

// FuzzZstd reads zstd-compressed input.
func FuzzZstd(f *testing.F) {
	for _, s := range compressedSeeds(f) {
		f.Add(zstded(f, s), false)
	}
	fr := newFuzzReader()
	f.Fuzz(func(t *testing.T, data []byte, reuse bool) {
		fr.read(t, data, Options{Reuse: reuse})
	})
}

// compressedSeeds returns small inputs of each form, to be compressed.
func compressedSeeds(f *testing.F) [][]byte {
	return [][]byte{
		seedPrefixes(f, testdata(f, "test_mixed.bep"))[1],
		seedPrefixes(f, testdata(f, "bes_test_mixed.obe"))[1],
		seedLines(testdata(f, "test_mixed.json"))[1],
		testdata(f, "bes_test_mixed.lifecycle.obe"),
	}
}

// TestClaimsDoNotAllocate: in every form, compressed or not, a length
// prefix claiming more than MaxEventSize is refused before anything is
// allocated for it, one claiming less costs what arrives, an NDJSON line
// is given up at MaxEventSize, and a zstd frame declaring a window over
// zstdMaxWindow (zstd --long's 128 MiB) is refused.
func TestClaimsDoNotAllocate(t *testing.T) {
	const limit = 1 << 20
	obe := seedPrefixes(t, testdata(t, "bes_test_mixed.obe"))[0]
	bep := seedPrefixes(t, testdata(t, "test_mixed.bep"))[0]
	lifecycle := testdata(t, "bes_test_mixed.lifecycle.obe")
	claim := func(prefix []byte, n uint64) []byte {
		return cat(prefix, protowire.AppendVarint(nil, n), make([]byte, 1000))
	}
	for _, tc := range []struct {
		name  string
		input []byte
		opts  Options
		want  func(error) bool
	}{
		{"obe over", claim(obe, 1<<40), Options{}, isTooLarge},
		{"obe under", claim(obe, limit-1), Options{}, isTruncated},
		{"publish over", claim(lifecycle, 1<<40), Options{}, isTooLarge},
		{"bep over, gzip", gzipped(t, claim(bep, 1<<62)), Options{}, isTooLarge},
		{"bep under, gzip", gzipped(t, claim(bep, limit-1)), Options{}, isTruncated},
		{"obe over, zstd", zstded(t, claim(obe, 1<<40)), Options{}, isTooLarge},
		{"zstd window over the limit", cat([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 18 << 3, 0x01, 0x00, 0x00}), Options{}, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "zstd: window size exceeded")
		}},
		{"ndjson line", cat([]byte(`{"id":{"progress":{}},"progress":{"stdout":"`), bytes.Repeat([]byte("x"), 8<<20)), Options{Format: FormatNDJSON}, isTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			tc.opts.MaxEventSize = limit
			r, err := NewReader(bytes.NewReader(tc.input), "in", tc.opts)
			if err == nil {
				_, err = readAll(t, r)
				r.Close()
			}
			runtime.ReadMemStats(&after)
			if !tc.want(err) {
				t.Errorf("error %v", err)
			}
			// The reader's two buffers and a slab, and for an NDJSON line
			// what it holds up to the limit.
			if got := after.TotalAlloc - before.TotalAlloc; got > 6*limit {
				t.Errorf("allocated %d bytes", got)
			}
		})
	}
}

func isTooLarge(err error) bool {
	var se *SizeTooLargeError
	return errors.As(err, &se) && se.Max == 1<<20 && se.Size > 1<<20
}

func isTruncated(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }

// TestRepeatedMessageFields: a decoder merges a message field that appears
// twice, so an OrderedBuildEvent with two stream ids belongs to the stream
// their merge names, not to the one the reader would see last; such an
// event, and a publish request with two events, are refused (found by
// FuzzOBE), and the reader goes on with the next.
func TestRepeatedMessageFields(t *testing.T) {
	fs := frames(t, testdata(t, "bes_test_mixed.obe"))
	var id []byte
	for b := fs[0]; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if num == wire.OBEStreamID {
			id, _ = protowire.ConsumeBytes(b)
			break
		}
		b = b[protowire.ConsumeFieldValue(num, typ, b):]
	}
	twoIDs := protowire.AppendBytes(protowire.AppendTag(bytes.Clone(fs[1]), wire.OBEStreamID, protowire.BytesType), []byte{})
	var twoEvents []byte
	for _, f := range fs[1:3] {
		twoEvents = protowire.AppendTag(twoEvents, wire.ToolRequestOrderedBuildEvent, protowire.BytesType)
		twoEvents = protowire.AppendBytes(twoEvents, f)
	}
	var oneEvent []byte
	oneEvent = protowire.AppendTag(oneEvent, wire.ToolRequestOrderedBuildEvent, protowire.BytesType)
	oneEvent = protowire.AppendBytes(oneEvent, fs[3])
	for _, tc := range []struct {
		name   string
		format Format
		bad    []byte
		good   []byte
		msg    string
	}{
		{"obe", FormatOBE, twoIDs, fs[2], "stream_id appears more than once"},
		{"publish", FormatPublish, twoEvents, oneEvent, "ordered_build_event appears more than once"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := cat(protowire.AppendBytes(nil, tc.bad), protowire.AppendBytes(nil, tc.good))
			r, err := NewReader(bytes.NewReader(input), "in", Options{Format: tc.format})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = r.Next()
			var e *Error
			if !errors.As(err, &e) || !e.Resumable() || e.Index != 0 || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("first frame: %v, want a resumable error about %q", err, tc.msg)
			}
			s, ev, err := r.Next()
			if err != nil || !bytes.Equal(s.IDBytes, id) || ev.Seq < 2 {
				t.Fatalf("the next frame: %v", err)
			}
		})
	}
}
