package bepfile

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/zstd"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// item is one event as Next returned it.
type item struct {
	s  *Stream
	ev *Event
}

// readAll reads r to the end and returns the events and the error that
// ended it (nil for io.EOF).
func readAll(t testing.TB, r *Reader) ([]item, error) {
	t.Helper()
	var items []item
	for {
		s, ev, err := r.Next()
		if err == io.EOF {
			return items, nil
		}
		if err != nil {
			return items, err
		}
		if s == nil || ev == nil {
			t.Fatalf("Next returned a nil stream or event without an error")
		}
		items = append(items, item{s, ev})
	}
}

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustRead(t testing.TB, data []byte, name string, opts Options) (*Reader, []item) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), name, opts)
	if err != nil {
		t.Fatalf("NewReader(%s): %v", name, err)
	}
	items, err := readAll(t, r)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if got := r.Offset(); got != int64(len(data)) && r.Compression() == "" {
		t.Errorf("%s: Offset() = %d at the end, want %d", name, got, len(data))
	}
	return r, items
}

// frames splits a varint-delimited file into its frames.
func frames(t testing.TB, b []byte) [][]byte {
	t.Helper()
	var fs [][]byte
	for len(b) > 0 {
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			t.Fatalf("bad framing: %v", protowire.ParseError(n))
		}
		fs = append(fs, v)
		b = b[n:]
	}
	return fs
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstded(t testing.TB, b []byte) []byte {
	t.Helper()
	w, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll(b, nil)
}

func TestFormatNames(t *testing.T) {
	for _, f := range []Format{FormatAuto, FormatOBE, FormatBEP, FormatPublish, FormatNDJSON} {
		got, err := ParseFormat(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", f.String(), got, err, f)
		}
	}
	if _, err := ParseFormat("json"); err == nil {
		t.Error("ParseFormat(json) succeeded")
	}
	if got := Format(42).String(); got != "Format(42)" {
		t.Errorf("Format(42).String() = %q", got)
	}
}

// TestForms reads every form from testdata, detected and given explicitly.
func TestForms(t *testing.T) {
	const (
		testMixedInv = "657fb236-551f-4f88-ab84-e114caf29e48"
		buildOKInv   = "716bc5f2-0416-4984-bf6d-e57bb3dc67a7"
		besBuild     = "0fff9624-6330-4348-b7e6-0d35256338b9"
		besInv       = "8b58a6b7-1857-43e5-b701-ebbabc33fc5c"
		// SHA-256 of query.bep's first event, canonical; a change of this
		// value changes the keys of stored streams.
		queryInv = "nouuid-7a923019682dab437fcc463e326ff14a"
	)
	tests := []struct {
		file   string
		format Format
		events int
		// keys of the streams, in order of appearance, with their events'
		// sequence numbers.
		keys []string
		seqs [][]int64
		// compact is the number of events in compact form (IsBazel).
		compact int
	}{
		{
			file: "test_mixed.bep", format: FormatBEP, events: 106,
			keys: []string{testMixedInv + ".3." + testMixedInv}, seqs: [][]int64{seqRange(1, 106)}, compact: 105,
		},
		{
			file: "build_ok.bep", format: FormatBEP, events: 82,
			keys: []string{buildOKInv + ".3." + buildOKInv}, seqs: [][]int64{seqRange(1, 82)}, compact: 81,
		},
		{
			// Bazel 4.2.3's query sets no BuildStarted.uuid: the id is
			// made from its first event (SynthesizedIDPrefix), the same
			// from the binary and the JSON file.
			file: "query.bep", format: FormatBEP, events: 16,
			keys: []string{queryInv + ".3." + queryInv}, seqs: [][]int64{seqRange(1, 16)}, compact: 15,
		},
		{
			file: "query.json", format: FormatNDJSON, events: 16,
			keys: []string{queryInv + ".3." + queryInv}, seqs: [][]int64{seqRange(1, 16)}, compact: 15,
		},
		{
			file: "test_mixed.json", format: FormatNDJSON, events: 106,
			keys: []string{testMixedInv + ".3." + testMixedInv}, seqs: [][]int64{seqRange(1, 106)}, compact: 105,
		},
		{
			file: "build_ok.json", format: FormatNDJSON, events: 82,
			keys: []string{buildOKInv + ".3." + buildOKInv}, seqs: [][]int64{seqRange(1, 82)}, compact: 81,
		},
		{
			file: "bes_test_mixed.obe", format: FormatOBE, events: 106,
			keys: []string{besBuild + ".3." + besInv}, seqs: [][]int64{seqRange(1, 106)}, compact: 105,
		},
		{
			file: "bes_test_mixed.lifecycle.obe", format: FormatPublish, events: 4,
			keys: []string{besBuild + ".1.", besBuild + ".1." + besInv},
			seqs: [][]int64{{1, 2}, {1, 2}}, compact: 0,
		},
	}
	for _, tt := range tests {
		data := testdata(t, tt.file)
		for _, given := range []Format{FormatAuto, tt.format} {
			t.Run(tt.file+"/"+given.String(), func(t *testing.T) {
				r, items := mustRead(t, data, tt.file, Options{Format: given})
				if r.Format() != tt.format {
					t.Errorf("Format() = %v, want %v", r.Format(), tt.format)
				}
				if r.Compression() != "" {
					t.Errorf("Compression() = %q, want none", r.Compression())
				}
				if len(items) != tt.events {
					t.Fatalf("got %d events, want %d", len(items), tt.events)
				}
				var keys []string
				seqs := map[*Stream][]int64{}
				compact := 0
				for _, it := range items {
					if _, ok := seqs[it.s]; !ok {
						keys = append(keys, it.s.Key)
						if it.s.TypeURL != BazelEventTypeURL {
							t.Errorf("stream %s: TypeURL %q", it.s.Key, it.s.TypeURL)
						}
						if Key(it.s.ID) != it.s.Key {
							t.Errorf("stream key %q, Key(ID) = %q", it.s.Key, Key(it.s.ID))
						}
					}
					seqs[it.s] = append(seqs[it.s], it.ev.Seq)
					if it.ev.IsBazel() {
						compact++
					}
					// Every event must decode as an OrderedBuildEvent of
					// its stream with its sequence number.
					obe, err := it.ev.OrderedBuildEvent(it.s)
					if err != nil {
						t.Fatalf("event %d: %v", it.ev.Seq, err)
					}
					if !proto.Equal(it.s.ID, obe.StreamId) {
						t.Errorf("event %d: stream id %v, want %v", it.ev.Seq, obe.StreamId, it.s.ID)
					}
					if obe.SequenceNumber != it.ev.Seq {
						t.Errorf("event seq %d, OrderedBuildEvent seq %d", it.ev.Seq, obe.SequenceNumber)
					}
				}
				if strings.Join(keys, " ") != strings.Join(tt.keys, " ") {
					t.Errorf("stream keys %q, want %q", keys, tt.keys)
				}
				for i, k := range keys {
					var s *Stream
					for st := range seqs {
						if st.Key == k {
							s = st
						}
					}
					if !equalInts(seqs[s], tt.seqs[i]) {
						t.Errorf("stream %s: seqs %v, want %v", k, seqs[s], tt.seqs[i])
					}
				}
				if compact != tt.compact {
					t.Errorf("%d compact events, want %d", compact, tt.compact)
				}
				if tt.format == FormatBEP || tt.format == FormatNDJSON || tt.format == FormatOBE {
					last := items[len(items)-1]
					obe, _ := last.ev.OrderedBuildEvent(last.s)
					if obe.GetEvent().GetComponentStreamFinished().GetType() != buildpb.BuildEvent_BuildComponentStreamFinished_FINISHED {
						t.Errorf("last event is not component_stream_finished FINISHED: %v", obe)
					}
					first := items[0]
					if k := PayloadKind(first.ev.Payload); k != "started" {
						t.Errorf("first event kind %q, want started", k)
					}
				}
			})
		}
	}
}

func TestPublishInfo(t *testing.T) {
	_, items := mustRead(t, testdata(t, "bes_test_mixed.lifecycle.obe"), "lifecycle", Options{})
	wantKinds := []string{"build_enqueued", "invocation_attempt_started", "invocation_attempt_finished", "build_finished"}
	for i, it := range items {
		if it.s.Publish == nil || !it.s.Publish.Lifecycle || it.s.Publish.ProjectID != "bepcorpus" {
			t.Errorf("event %d: Publish = %+v, want lifecycle with project bepcorpus", i, it.s.Publish)
		}
		if it.s.ID.Component != buildpb.StreamId_CONTROLLER {
			t.Errorf("event %d: component %v", i, it.s.ID.Component)
		}
		obe, err := it.ev.OrderedBuildEvent(it.s)
		if err != nil {
			t.Fatal(err)
		}
		m := obe.GetEvent().ProtoReflect()
		fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("event"))
		if fd == nil || string(fd.Name()) != wantKinds[i] {
			t.Errorf("event %d is %v, want %s", i, fd, wantKinds[i])
		}
	}
	// A tool request, made here: the same event, in both request kinds.
	obeFile := testdata(t, "bes_test_mixed.obe")
	first := frames(t, obeFile)[0]
	tool := &buildpb.PublishBuildToolEventStreamRequest{
		NotificationKeywords:                 []string{"a", "b"},
		ProjectId:                            "p",
		CheckPrecedingLifecycleEventsPresent: true,
		OrderedBuildEvent:                    &buildpb.OrderedBuildEvent{},
	}
	if err := proto.Unmarshal(first, tool.OrderedBuildEvent); err != nil {
		t.Fatal(err)
	}
	data := delimited(t, tool)
	r, got := mustRead(t, data, "tool", Options{})
	if r.Format() != FormatPublish || len(got) != 1 {
		t.Fatalf("read %v, %d events; want publish, 1", r.Format(), len(got))
	}
	want := &PublishInfo{NotificationKeywords: []string{"a", "b"}, ProjectID: "p", CheckPrecedingLifecycleEventsPresent: true}
	if !reflect.DeepEqual(want, got[0].s.Publish) {
		t.Errorf("Publish = %+v, want %+v", got[0].s.Publish, want)
	}
	if !got[0].ev.IsBazel() || !bytes.Equal(got[0].ev.AppendEncoding(nil, got[0].s), first) {
		t.Errorf("the event of the tool request is not the OrderedBuildEvent, compacted")
	}
}

// delimited encodes messages as varint-delimited frames.
func delimited(t testing.TB, ms ...proto.Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, m := range ms {
		if _, err := protodelim.MarshalTo(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCompressed reads gzip and zstd versions of every form, made here, and
// compares them with the uncompressed reading.
func TestCompressed(t *testing.T) {
	for _, file := range []string{"test_mixed.bep", "bes_test_mixed.obe", "bes_test_mixed.lifecycle.obe", "test_mixed.json"} {
		data := testdata(t, file)
		_, plain := mustRead(t, data, file, Options{})
		for _, c := range []struct {
			name string
			data []byte
		}{{"gzip", gzipped(t, data)}, {"zstd", zstded(t, data)}} {
			t.Run(file+"/"+c.name, func(t *testing.T) {
				for _, rd := range []struct {
					name string
					r    io.Reader
				}{
					{"bytes", bytes.NewReader(c.data)},
					{"onebyte", iotest.OneByteReader(bytes.NewReader(c.data))},
				} {
					r, err := NewReader(rd.r, file, Options{})
					if err != nil {
						t.Fatal(err)
					}
					items, err := readAll(t, r)
					if err != nil {
						t.Fatal(err)
					}
					if r.Compression() != c.name {
						t.Errorf("Compression() = %q, want %q", r.Compression(), c.name)
					}
					if r.Offset() != int64(len(data)) {
						t.Errorf("Offset() = %d, want the decompressed size %d", r.Offset(), len(data))
					}
					compareItems(t, items, plain)
					if err := r.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				}
			})
		}
	}
	// The committed zstd file.
	_, items := mustRead(t, testdata(t, "test_mixed.json.zst"), "test_mixed.json.zst", Options{})
	_, plain := mustRead(t, testdata(t, "test_mixed.json"), "test_mixed.json", Options{})
	compareItems(t, items, plain)
}

// compareItems checks that two readings gave the same streams and the same
// event encodings.
func compareItems(t *testing.T, got, want []item) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].s.Key != want[i].s.Key {
			t.Fatalf("event %d: stream %s, want %s", i, got[i].s.Key, want[i].s.Key)
		}
		if !bytes.Equal(got[i].ev.AppendEncoding(nil, got[i].s), want[i].ev.AppendEncoding(nil, want[i].s)) {
			t.Fatalf("event %d differs", i)
		}
	}
}

// TestOBERoundTrip: the events of an OBE file encode back to the file.
func TestOBERoundTrip(t *testing.T) {
	data := testdata(t, "bes_test_mixed.obe")
	_, items := mustRead(t, data, "obe", Options{})
	var out []byte
	for _, it := range items {
		enc := it.ev.AppendEncoding(nil, it.s)
		out = protowire.AppendVarint(out, uint64(len(enc)))
		out = append(out, enc...)
	}
	if !bytes.Equal(out, data) {
		t.Fatalf("re-encoding differs from the input (%d vs %d bytes)", len(out), len(data))
	}
	// The events own their bytes: a second reading of a copy that is then
	// overwritten must not change the first.
	cp := bytes.Clone(data)
	_, items2 := mustRead(t, cp, "obe", Options{})
	for i := range cp {
		cp[i] = 0
	}
	for i, it := range items2 {
		if !bytes.Equal(it.ev.AppendEncoding(nil, it.s), items[i].ev.AppendEncoding(nil, items[i].s)) {
			t.Fatalf("event %d aliases the input", i)
		}
	}
}

// TestBuildIDEquivalence: Bazel's binary file, read with the build id of its
// BES stream, gives that stream.
func TestBuildIDEquivalence(t *testing.T) {
	_, obeItems := mustRead(t, testdata(t, "bes_test_mixed.obe"), "obe", Options{})
	buildID := obeItems[0].s.ID.BuildId
	_, bepItems := mustRead(t, testdata(t, "bes_test_mixed.bep"), "bep", Options{BuildID: buildID})

	if len(bepItems) != len(obeItems) {
		t.Fatalf("bep gives %d events, obe %d", len(bepItems), len(obeItems))
	}
	bs, os := bepItems[0].s, obeItems[0].s
	if bs.Key != os.Key {
		t.Errorf("key %q, want %q", bs.Key, os.Key)
	}
	if !bytes.Equal(bs.IDBytes, os.IDBytes) {
		t.Errorf("stream id bytes differ: %x vs %x", bs.IDBytes, os.IDBytes)
	}
	payloads := map[string]int{}
	for _, it := range obeItems {
		if it.ev.IsBazel() {
			payloads[string(it.ev.Payload)]++
		}
	}
	for i, it := range bepItems {
		if it.s != bs {
			t.Fatalf("event %d in another stream %s", i, it.s.Key)
		}
		if it.ev.Seq != int64(i+1) {
			t.Errorf("event %d has seq %d", i, it.ev.Seq)
		}
		if !it.ev.IsBazel() {
			continue
		}
		if payloads[string(it.ev.Payload)] == 0 {
			t.Errorf("event %d: payload not in the BES stream (or more often)", i)
		}
		payloads[string(it.ev.Payload)]--
	}
	// The final event equals the BES stream's, but for the event time,
	// which the binary file does not have.
	lastBEP := bepItems[len(bepItems)-1]
	lastOBE := obeItems[len(obeItems)-1]
	obe := &buildpb.OrderedBuildEvent{}
	if err := proto.Unmarshal(lastOBE.ev.Raw, obe); err != nil {
		t.Fatal(err)
	}
	obe.Event.EventTime = nil
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(obe)
	if err != nil {
		t.Fatal(err)
	}
	if got := lastBEP.ev.AppendEncoding(nil, lastBEP.s); !bytes.Equal(got, want) {
		t.Errorf("final event\n%x\nwant\n%x", got, want)
	}
	if lastBEP.ev.Seq != 106 || lastOBE.ev.Seq != 106 {
		t.Errorf("final seqs %d and %d, want 106", lastBEP.ev.Seq, lastOBE.ev.Seq)
	}
}

// TestNDJSONMatchesBEP: the JSON file's events are, as messages, those of
// the binary file (as a multiset: Bazel writes them in a slightly different
// order).
func TestNDJSONMatchesBEP(t *testing.T) {
	for _, name := range []string{"test_mixed", "build_ok", "query"} {
		t.Run(name, func(t *testing.T) {
			_, bin := mustRead(t, testdata(t, name+".bep"), name+".bep", Options{})
			_, js := mustRead(t, testdata(t, name+".json"), name+".json", Options{})
			if len(bin) != len(js) || bin[0].s.Key != js[0].s.Key {
				t.Fatalf("%d events of %s vs %d of %s", len(bin), bin[0].s.Key, len(js), js[0].s.Key)
			}
			decode := func(its []item) []*buildeventstream.BuildEvent {
				var out []*buildeventstream.BuildEvent
				for _, it := range its {
					if !it.ev.IsBazel() {
						continue
					}
					m := &buildeventstream.BuildEvent{}
					if err := proto.Unmarshal(it.ev.Payload, m); err != nil {
						t.Fatal(err)
					}
					out = append(out, m)
				}
				return out
			}
			want := decode(bin)
			used := make([]bool, len(want))
		next:
			for i, m := range decode(js) {
				for j, w := range want {
					if !used[j] && proto.Equal(m, w) {
						used[j] = true
						continue next
					}
				}
				t.Errorf("JSON event %d has no equal in the binary file", i)
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	data := testdata(t, "truncated-test_mixed.bep")
	const wantMsg = "truncated-test_mixed.bep: byte 24361 (event 62): truncated message: want 232 bytes, got 198: unexpected EOF"
	for _, c := range []struct {
		name   string
		input  []byte
		suffix string
	}{
		{"plain", data, ""},
		{"gzip", gzipped(t, data), ""},
		{"zstd", zstded(t, data), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(c.input), "truncated-test_mixed.bep", Options{})
			if err != nil {
				t.Fatal(err)
			}
			items, err := readAll(t, r)
			if len(items) != 62 {
				t.Errorf("%d events before the error, want 62", len(items))
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			if e.Offset != 24361 || e.Index != 62 || e.Resumable() {
				t.Errorf("Offset %d, Index %d, Resumable %v; want 24361, 62, false", e.Offset, e.Index, e.Resumable())
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %v does not wrap io.ErrUnexpectedEOF", err)
			}
			if err.Error() != wantMsg {
				t.Errorf("error\n%s\nwant\n%s", err, wantMsg)
			}
			if _, _, again := r.Next(); again != err {
				t.Errorf("Next after the error returned %v", again)
			}
		})
	}
	// A compressed stream cut short is a truncation too.
	gz := gzipped(t, testdata(t, "test_mixed.bep"))
	r, err := NewReader(bytes.NewReader(gz[:len(gz)/2]), "cut.gz", Options{})
	if err != nil {
		t.Fatal(err)
	}
	items, err := readAll(t, r)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(items) == 0 {
		t.Errorf("cut gzip: %d events, error %v; want some events and io.ErrUnexpectedEOF", len(items), err)
	}
}

// bepFrames returns the first n frames of test_mixed.bep, delimited.
func bepPrefix(t testing.TB, n int) []byte {
	data := testdata(t, "test_mixed.bep")
	var out []byte
	for _, f := range frames(t, data)[:n] {
		out = protowire.AppendBytes(out, f)
	}
	return out
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// TestBadInput: every bad input is one *Error, after the good events.
func TestBadInput(t *testing.T) {
	two := bepPrefix(t, 2)
	started := `{"id":{"started":{}},"started":{"uuid":"u"}}` + "\n"
	progress := `{"id":{"progress":{}},"progress":{"stdout":"` + strings.Repeat("x", 200) + `"}}`
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa")
	const notBEP = ": byte 0: not a BEP file (want varint-delimited OrderedBuildEvent, BuildEvent or publish requests, or NDJSON)"
	tests := []struct {
		name  string
		input []byte
		opts  Options
		// openErr is the whole message of NewReader's error, if it fails.
		openErr string
		// else the events before the error, and the error's parts.
		events    int
		offset    int64
		index     int
		msg       string // the error's message after "name: byte N (event I): "
		is        error
		resumable bool
		rest      int // events after a resumable error
	}{
		{name: "empty", input: nil, openErr: "in: empty input"},
		{name: "empty bep", input: nil, opts: Options{Format: FormatBEP}, openErr: "in: empty input"},
		// Blank lines only: empty too, not a frame of length '\n' cut short.
		{name: "newline", input: []byte("\n"), openErr: "in: empty input"},
		{name: "blank lines", input: []byte(" \r\n\t\n\n"), openErr: "in: empty input"},
		{name: "text", input: []byte("hello, world\nthis is text\n"), openErr: "in" + notBEP},
		{name: "png", input: png, openErr: "in" + notBEP},
		{name: "zeros", input: make([]byte, 100), openErr: "in" + notBEP},
		{name: "random", input: pseudoRandom(4096), openErr: "in" + notBEP},
		{name: "json array", input: []byte(`[{"id":{}}]` + "\n"), openErr: "in" + notBEP},
		{name: "json without id", input: []byte(`{"foo":1}` + "\n"), openErr: "in" + notBEP},
		// An input cut inside its first frame is cut short like one cut
		// later, in either form (issue 13): a length prefix cut short, or
		// whole with nothing after it; a JSON value cut before the name
		// of its first member ends.
		{
			name: "lone varint", input: []byte{0x80},
			offset: 0, index: 0, msg: "truncated length prefix after 1 bytes: unexpected EOF", is: io.ErrUnexpectedEOF,
		},
		{
			name: "lone length prefix", input: []byte{0xcb, 0x04},
			offset: 0, index: 0, msg: "truncated message: want 587 bytes, got 0: unexpected EOF", is: io.ErrUnexpectedEOF,
		},
		{
			name: "json cut in its first name", input: []byte(`{"i`),
			offset: 0, index: 0, msg: "line 1: truncated JSON: unexpected EOF", is: io.ErrUnexpectedEOF,
		},
		{
			name: "json cut after its brace", input: []byte("\n{ "),
			offset: 1, index: 0, msg: "line 2: truncated JSON: unexpected EOF", is: io.ErrUnexpectedEOF,
		},
		{name: "json cut in a name that is no field", input: []byte(`{"ix`), openErr: "in" + notBEP},
		{name: "json with another first value", input: []byte(`{1`), openErr: "in" + notBEP},
		{
			name: "truncated varint", input: cat(two, []byte{0x80}),
			events: 2, offset: int64(len(two)), index: 2,
			msg: "truncated length prefix after 1 bytes: unexpected EOF", is: io.ErrUnexpectedEOF,
		},
		{
			name: "truncated body", input: cat(two, []byte{10, 1, 2, 3}),
			events: 2, offset: int64(len(two)), index: 2,
			msg: "truncated message: want 10 bytes, got 3: unexpected EOF", is: io.ErrUnexpectedEOF,
		},
		{
			name: "invalid varint", input: cat(two, bytes.Repeat([]byte{0xff}, 11)),
			events: 2, offset: int64(len(two)), index: 2,
			msg: "invalid varint length prefix", is: errInvalidVarint,
		},
		{
			name: "varint overflow", input: cat(two, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}),
			events: 2, offset: int64(len(two)), index: 2,
			msg: "invalid varint length prefix", is: errInvalidVarint,
		},
		{
			name: "oversize", input: cat(two, protowire.AppendVarint(nil, 1<<40)),
			opts:   Options{MaxEventSize: 1 << 20},
			events: 2, offset: int64(len(two)), index: 2,
			msg: "message size 1099511627776 exceeds the limit of 1048576 bytes",
		},
		{
			name: "oversize default", input: cat(two, protowire.AppendVarint(nil, DefaultMaxEventSize+1), []byte("abc")),
			events: 2, offset: int64(len(two)), index: 2,
			msg: "message size 67108865 exceeds the limit of 67108864 bytes",
		},
		{
			name: "bad protobuf in bep", input: cat(two, []byte{2, 0x0a, 5}, two),
			events: 2, offset: int64(len(two)), index: 2,
			msg: "invalid BuildEvent: BuildEvent field 1: unexpected EOF", resumable: true, rest: 2,
		},
		{
			name: "bad wire type in bep", input: cat(two, []byte{3, 0xa2, 0x01, 0x00}),
			events: 2, offset: int64(len(two)), index: 2,
			msg: "invalid BuildEvent: BuildEvent field 20 has wire type length-delimited, want varint", resumable: true,
		},
		{
			name: "bad json line", input: []byte(started + "\n" + `{"id":{"progress":{}},"progress":}` + "\n" + started),
			events: 1, offset: int64(len(started) + 1), index: 1,
			// The value is skipped up to the next line starting with '{'.
			msg: "line 3: invalid JSON BuildEvent: invalid character '}' looking for the beginning of a value at byte 79 (line 3); skipped to byte 81", resumable: true,
			rest: 1,
		},
		{
			name: "truncated json line", input: []byte(started + `{"id":{"progress":{}},"progress":{"std`),
			events: 1, offset: int64(len(started)), index: 1,
			msg: "line 2: truncated JSON: unexpected EOF", is: io.ErrUnexpectedEOF,
		},
		{
			name: "oversize json line", input: []byte(started + progress + "\r\n"),
			opts:   Options{MaxEventSize: 100},
			events: 1, offset: int64(len(started)), index: 1,
			msg: "line 2: message size 247 exceeds the limit of 100 bytes",
		},
		{
			// Line endings do not count.
			name: "json line at the limit", input: []byte(started + progress + "\r\n" + "{"),
			opts:   Options{MaxEventSize: len(progress)},
			events: 2, offset: int64(len(started) + len(progress) + 2), index: 2,
			msg: "line 3: truncated JSON: unexpected EOF", is: io.ErrUnexpectedEOF,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tt.input), "in", tt.opts)
			if tt.openErr != "" {
				var e *Error
				if !errors.As(err, &e) || err.Error() != tt.openErr || !errors.Is(err, ErrNotBEP) {
					t.Fatalf("NewReader: error %v (%T), want *Error %q wrapping ErrNotBEP", err, err, tt.openErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewReader: %v", err)
			}
			items, err := readAll(t, r)
			if len(items) != tt.events {
				t.Errorf("%d events before the error, want %d", len(items), tt.events)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			if e.Offset != tt.offset || e.Index != tt.index || e.Resumable() != tt.resumable {
				t.Errorf("Offset %d, Index %d, Resumable %v; want %d, %d, %v", e.Offset, e.Index, e.Resumable(), tt.offset, tt.index, tt.resumable)
			}
			// protobuf-go randomizes the space after "proto:".
			if got := strings.ReplaceAll(e.Err.Error(), "\u00a0", " "); got != tt.msg {
				t.Errorf("cause %q, want %q", got, tt.msg)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error does not wrap %v", tt.is)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message has more than one line: %q", err)
			}
			if strings.HasPrefix(tt.msg, "message size") {
				var se *SizeTooLargeError
				if !errors.As(err, &se) {
					t.Errorf("error does not wrap a *SizeTooLargeError")
				}
			}
			if tt.resumable {
				// The reader goes on after the bad frame.
				rest, err := readAll(t, r)
				if err != nil || len(rest) != tt.rest {
					t.Errorf("after the resumable error: %d events, %v; want %d", len(rest), err, tt.rest)
				}
			} else if _, _, again := r.Next(); again != err {
				t.Errorf("Next after a fatal error returned %v", again)
			}
		})
	}
}

// pseudoRandom returns n bytes of a fixed pseudo-random sequence.
func pseudoRandom(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// TestOversizeDoesNotAllocate: a frame claiming a huge size is refused
// before any buffer of that size exists.
func TestOversizeDoesNotAllocate(t *testing.T) {
	for _, claim := range []uint64{1 << 40, 60 << 20} {
		input := cat(bepPrefix(t, 1), protowire.AppendVarint(nil, claim), make([]byte, 1000))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		r, err := NewReader(bytes.NewReader(input), "in", Options{MaxEventSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		_, err = readAll(t, r)
		runtime.ReadMemStats(&after)
		var se *SizeTooLargeError
		if !errors.As(err, &se) || se.Size != claim || se.Max != 1<<20 {
			t.Fatalf("claim %d: error %v, want a SizeTooLargeError", claim, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
			t.Errorf("claim %d: allocated %d bytes", claim, got)
		}
	}
	// Within the limit, a short input claiming a large frame allocates
	// about what arrives, not the claim.
	input := cat(protowire.AppendVarint(nil, 60<<20), make([]byte, 1000))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := NewReader(bytes.NewReader(input), "in", Options{Format: FormatBEP})
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAll(t, r)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("error %v, want truncation", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Errorf("allocated %d bytes for a 1000-byte body", got)
	}
}

// TestReaders: the reader works on any io.Reader, however it returns data.
func TestReaders(t *testing.T) {
	data := testdata(t, "bes_test_mixed.obe")
	_, want := mustRead(t, data, "obe", Options{})
	trunc := testdata(t, "truncated-test_mixed.bep")
	for _, c := range []struct {
		name string
		r    func([]byte) io.Reader
	}{
		{"onebyte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
		{"half", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
		{"dataerr", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
		{"small bufio", func(b []byte) io.Reader { return bufio.NewReaderSize(bytes.NewReader(b), 16) }},
		{"big bufio", func(b []byte) io.Reader { return bufio.NewReaderSize(bytes.NewReader(b), 1<<20) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := NewReader(c.r(data), "obe", Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, r)
			if err != nil {
				t.Fatal(err)
			}
			compareItems(t, got, want)

			r, err = NewReader(c.r(trunc), "t", Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err = readAll(t, r)
			var e *Error
			if len(got) != 62 || !errors.As(err, &e) || e.Offset != 24361 || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("truncated: %d events, error %v", len(got), err)
			}
		})
	}
	// A read error is reported with its position and is not a truncation.
	boom := errors.New("boom")
	r, err := NewReader(io.MultiReader(bytes.NewReader(bepPrefix(t, 3)), iotest.ErrReader(boom)), "in", Options{})
	if err != nil {
		t.Fatal(err)
	}
	items, err := readAll(t, r)
	if len(items) != 3 || !errors.Is(err, boom) || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("%d events, error %v; want 3 and boom", len(items), err)
	}
	if _, err := NewReader(iotest.ErrReader(boom), "in", Options{}); !errors.Is(err, boom) {
		t.Errorf("NewReader on a failing reader: %v", err)
	}
}

// TestInvalidStreamID: an OrderedBuildEvent whose stream id is not valid
// UTF-8 is reported, and the reader goes on.
func TestInvalidStreamID(t *testing.T) {
	fs := frames(t, testdata(t, "bes_test_mixed.obe"))
	bad := &buildpb.OrderedBuildEvent{}
	if err := proto.Unmarshal(fs[1], bad); err != nil {
		t.Fatal(err)
	}
	// proto.Marshal refuses invalid UTF-8, so patch the encoding.
	enc := bytes.Clone(fs[1])
	i := bytes.Index(enc, []byte(bad.StreamId.BuildId))
	enc[i] = 0xff
	var input []byte
	input = protowire.AppendBytes(input, fs[0])
	input = protowire.AppendBytes(input, enc)
	input = protowire.AppendBytes(input, fs[2])
	r, err := NewReader(bytes.NewReader(input), "in", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	var errs []error
	for {
		_, ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, err)
			var e *Error
			if !errors.As(err, &e) || !e.Resumable() || e.Index != 1 || !strings.Contains(err.Error(), "build_id") {
				t.Fatalf("error %v", err)
			}
			continue
		}
		got = append(got, ev.Seq)
	}
	if !equalInts(got, []int64{1, 3}) || len(errs) != 1 {
		t.Errorf("events %v, errors %v; want [1 3] and one error", got, errs)
	}
}

// TestAmbiguousStart: a publish request of 123 bytes starts with `{"`, like
// JSON, and must still be read as a publish request.
func TestAmbiguousStart(t *testing.T) {
	fs := frames(t, testdata(t, "bes_test_mixed.lifecycle.obe"))
	obe := &buildpb.OrderedBuildEvent{}
	if err := proto.Unmarshal(frames(t, testdata(t, "bes_test_mixed.obe"))[105], obe); err != nil {
		t.Fatal(err)
	}
	req := &buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: obe}
	for n := 0; proto.Size(req) < 123; n++ {
		req.ProjectId = strings.Repeat("p", n)
	}
	data := delimited(t, req)
	if !bytes.HasPrefix(data, []byte(`{"`)) {
		t.Fatalf("the request starts with %q", data[:2])
	}
	data = append(data, protowire.AppendBytes(nil, fs[0])...)
	r, items := mustRead(t, data, "in", Options{})
	if r.Format() != FormatPublish || len(items) != 2 {
		t.Errorf("read as %v with %d events, want publish with 2", r.Format(), len(items))
	}
}

// TestConcatenated: Bazel files one after the other are read as one stream
// each; a stream ends after the event with last_message.
func TestConcatenated(t *testing.T) {
	data := cat(testdata(t, "build_ok.bep"), testdata(t, "test_mixed.bep"))
	_, items := mustRead(t, data, "in", Options{})
	if len(items) != 82+106 {
		t.Fatalf("%d events", len(items))
	}
	if items[81].s == items[82].s || items[82].ev.Seq != 1 || items[81].ev.Seq != 82 {
		t.Errorf("the second file does not start a new stream")
	}
}

// TestOpen reads a file by path and closes it.
func TestOpen(t *testing.T) {
	path := filepath.Join("..", "testdata", "build_ok.bep")
	r, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Name() != path {
		t.Errorf("Name() = %q", r.Name())
	}
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, _, err := r.Next(); err == nil || err == io.EOF {
		t.Errorf("Next after Close: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: %v", err)
	}
	if _, err := NewReader(bytes.NewReader(nil), "in", Options{BuildID: "\xff"}); err == nil {
		t.Errorf("invalid UTF-8 build id accepted")
	}
}

// TestLargeEvent: a frame larger than the first buffer is read whole, into
// a buffer of exactly its size.
func TestLargeEvent(t *testing.T) {
	big, err := proto.Marshal(bigProgress(t, 3<<20+17, true))
	if err != nil {
		t.Fatal(err)
	}
	input := cat(protowire.AppendBytes(nil, big), bepPrefix(t, 2)[len(protowire.AppendBytes(nil, frames(t, testdata(t, "test_mixed.bep"))[0])):])
	for _, rd := range []io.Reader{bytes.NewReader(input), iotest.HalfReader(bytes.NewReader(input))} {
		r, err := NewReader(rd, "in", Options{})
		if err != nil {
			t.Fatal(err)
		}
		items, err := readAll(t, r)
		if err != nil || len(items) != 2 {
			t.Fatalf("%d events, %v", len(items), err)
		}
		p := items[0].ev.Payload
		if !bytes.Equal(p, big) || cap(p) != len(p) {
			t.Errorf("large payload differs (len %d, cap %d, want %d)", len(p), cap(p), len(big))
		}
		if items[0].s.ID.InvocationId != "inv" {
			t.Errorf("invocation id %q", items[0].s.ID.InvocationId)
		}
	}
	// Beyond a small limit it is refused.
	r, err := NewReader(bytes.NewReader(input), "in", Options{MaxEventSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, r); err == nil || !strings.Contains(err.Error(), "byte 0 (event 0): message size") {
		t.Errorf("error %v", err)
	}
}
