package bess

import (
	"bytes"
	"errors"
	"io"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile"
)

// TestRoundTripAndContinue writes a stream in two parts, the second by an
// Encoder that continues the file a Reader read, and reads back every
// event, sequence numbers and times relative to the previous record
// included; a record cut short is a *CorruptError wrapping
// io.ErrUnexpectedEOF at the record's offset.
func TestRoundTripAndContinue(t *testing.T) {
	st := bepfile.NewStream(&buildpb.StreamId{BuildId: "b", InvocationId: "i", Component: buildpb.StreamId_TOOL})
	evs := []bepfile.Event{
		{Seq: 1, HasTime: true, Time: bepfile.Timestamp{Seconds: 1700000000, Nanos: 5}, Payload: []byte("one")},
		{Seq: 2, Payload: []byte{}},
		{Seq: 9, HasTime: true, Time: bepfile.Timestamp{Seconds: 1699999999}, Raw: []byte("raw")},
		{Seq: 10, HasTime: true, Time: bepfile.Timestamp{Seconds: 1700000001, Nanos: 999999999}, Payload: []byte("four")},
	}
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	if _, err := enc.Header(st); err != nil {
		t.Fatal(err)
	}
	for i := range evs[:2] {
		enc.Record(&evs[i])
	}
	rd, err := NewReader(bytes.NewReader(buf.Bytes()), "f", int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := rd.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	more := NewEncoder(&buf)
	more.Continue(rd)
	for i := range evs[2:] {
		more.Record(&evs[2+i])
	}
	rd, err = NewReader(bytes.NewReader(buf.Bytes()), "f", int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if rd.Stream().Key != st.Key || !bytes.Equal(rd.Stream().IDBytes, st.IDBytes) {
		t.Errorf("stream %+v", rd.Stream())
	}
	for i, want := range evs {
		got, err := rd.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got.Seq != want.Seq || got.HasTime != want.HasTime || got.Time != want.Time || !bytes.Equal(got.Payload, want.Payload) || !bytes.Equal(got.Raw, want.Raw) {
			t.Errorf("event %d = %+v, want %+v", i, got, want)
		}
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Errorf("after the last event: %v", err)
	}
	cut := buf.Bytes()[:buf.Len()-2]
	rd, _ = NewReader(bytes.NewReader(cut), "f", int64(len(cut)))
	var last error
	start := int64(0)
	for {
		start = rd.Offset()
		if _, last = rd.Next(); last != nil {
			break
		}
	}
	var ce *CorruptError
	if !errors.As(last, &ce) || !errors.Is(last, io.ErrUnexpectedEOF) || ce.Offset < start {
		t.Errorf("cut file: %v", last)
	}
}

// encodeFile returns a stream file of evs, as an Encoder writes it.
func encodeFile(t *testing.T, st *bepfile.Stream, evs []bepfile.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	if _, err := enc.Header(st); err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if _, err := enc.Record(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// readAll reads every event of a stream file; the error is the first that
// is not io.EOF.
func readAll(data []byte) ([]*bepfile.Event, error) {
	rd, err := NewReader(bytes.NewReader(data), "f", int64(len(data)))
	if err != nil {
		return nil, err
	}
	var out []*bepfile.Event
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// TestEveryFlippedByteCaught flips each byte of a version 2 file in turn
// (issue 13: a flipped byte in a stored stream was served as data): the
// reader never returns all the events as if nothing happened; it fails
// with a *CorruptError at the offset of the header or record that holds
// the byte, wrapping ErrChecksum when the record's shape survived.
func TestEveryFlippedByteCaught(t *testing.T) {
	st := bepfile.NewStream(&buildpb.StreamId{BuildId: "b", InvocationId: "i", Component: buildpb.StreamId_TOOL})
	evs := []bepfile.Event{
		{Seq: 1, HasTime: true, Time: bepfile.Timestamp{Seconds: 1700000000, Nanos: 5}, Payload: []byte("payload one")},
		{Seq: 2, Raw: []byte("a raw event")},
		{Seq: 7, HasTime: true, Time: bepfile.Timestamp{Seconds: 1700000003}, Payload: []byte("three")},
	}
	file := encodeFile(t, st, evs)
	// The offsets where the header and each record start.
	var starts []int64
	rd, err := NewReader(bytes.NewReader(file), "f", int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	if rd.Version() != Version {
		t.Fatalf("a new file has version %d", rd.Version())
	}
	starts = append(starts, 0)
	for {
		off := rd.Offset()
		if _, err := rd.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		starts = append(starts, off)
	}
	checksums := 0
	for i := range file {
		bad := bytes.Clone(file)
		bad[i] ^= 0x10
		got, err := readAll(bad)
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Errorf("byte %d flipped: %d events, error %v; want a *CorruptError", i, len(got), err)
			continue
		}
		holder := int64(0)
		for _, s := range starts {
			if s <= int64(i) {
				holder = s
			}
		}
		if ce.Offset < holder || ce.Offset > int64(i) {
			t.Errorf("byte %d flipped: error at offset %d, the byte's record starts at %d: %v", i, ce.Offset, holder, err)
		}
		if errors.Is(err, ErrChecksum) {
			checksums++
		}
	}
	if checksums < len(file)/2 {
		t.Errorf("only %d of %d flips were checksum mismatches", checksums, len(file))
	}
}

// TestReadsVersion1 reads a file in the format of bes before issue 13
// (no checksums), built here byte by byte, and continues it: the records
// added are version 1 records, so the file stays one format.
func TestReadsVersion1(t *testing.T) {
	st := bepfile.NewStream(&buildpb.StreamId{BuildId: "b", InvocationId: "i", Component: buildpb.StreamId_TOOL})
	v1 := []byte("BESS\x01")
	v1 = append(v1, byte(len(st.IDBytes)))
	v1 = append(v1, st.IDBytes...)
	v1 = append(v1, 0)                         // no type URL
	v1 = append(v1, 0x02, 0x80, 0x01, 0x00, 3) // flagTime, seconds +64, nanos 0, 3 bytes
	v1 = append(v1, "one"...)                  //
	v1 = append(v1, 0x04, 5, 2, 'h', 'i')      // flagSeq 5, "hi"
	rd, err := NewReader(bytes.NewReader(v1), "v1", int64(len(v1)))
	if err != nil {
		t.Fatal(err)
	}
	if rd.Version() != Version1 || rd.Stream().Key != st.Key {
		t.Fatalf("version %d, key %q", rd.Version(), rd.Stream().Key)
	}
	var got []*bepfile.Event
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if len(got) != 2 || string(got[0].Payload) != "one" || got[0].Time.Seconds != 64 || got[1].Seq != 5 || string(got[1].Payload) != "hi" {
		t.Fatalf("events %+v %+v", got[0], got[1])
	}
	var more bytes.Buffer
	enc := NewEncoder(&more)
	enc.Continue(rd)
	enc.Record(&bepfile.Event{Seq: 6, Payload: []byte("six")})
	if want := []byte{0, 3, 's', 'i', 'x'}; !bytes.Equal(more.Bytes(), want) {
		t.Errorf("a version 1 file continued with % x, want % x", more.Bytes(), want)
	}
	all, err := readAll(append(bytes.Clone(v1), more.Bytes()...))
	if err != nil || len(all) != 3 || all[2].Seq != 6 {
		t.Errorf("continued file: %d events, %v", len(all), err)
	}
}

// benchFile returns a stream file of n events of size bytes each (Bazel's
// events in testdata's large corpus average 259 bytes), in format version
// 2, or version 1 (no checksums) with v1.
func benchFile(b *testing.B, n, size int, v1 bool) []byte {
	st := bepfile.NewStream(&buildpb.StreamId{BuildId: "b", InvocationId: "i", Component: buildpb.StreamId_TOOL})
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	if v1 {
		buf.WriteString(Magic)
		buf.WriteByte(Version1)
		buf.Write(protowire.AppendBytes(nil, st.IDBytes))
		buf.Write(protowire.AppendString(nil, st.TypeURL))
		enc.v1 = true
	} else if _, err := enc.Header(st); err != nil {
		b.Fatal(err)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
	for i := range n {
		ev := bepfile.Event{Seq: int64(i + 1), HasTime: true, Time: bepfile.Timestamp{Seconds: 1700000000 + int64(i/100), Nanos: int32(i)}, Payload: payload}
		if _, err := enc.Record(&ev); err != nil {
			b.Fatal(err)
		}
	}
	return buf.Bytes()
}

// BenchmarkRead reads a stream file of 32,000 events of 259 bytes whole, in
// format version 1 and version 2 (a CRC-32C checked per record): what the
// checksums cost a reader (issue 13).
func BenchmarkRead(b *testing.B) {
	for _, v1 := range []bool{true, false} {
		name := "format=v2"
		if v1 {
			name = "format=v1"
		}
		b.Run(name, func(b *testing.B) {
			file := benchFile(b, 32000, 259, v1)
			b.SetBytes(int64(len(file)))
			for b.Loop() {
				rd, err := NewReader(bytes.NewReader(file), "bench", int64(len(file)))
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					if _, err := rd.Next(); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != 32000 {
					b.Fatalf("%d events", n)
				}
			}
		})
	}
}

// TestWholeFileCut: a file written whole (version 3: WholeHeader, records,
// End) reads back every event; cut at any byte after its header it fails
// with ErrCut, never a clean end, so that a cut committed stream is not
// taken for a live one being written (issue 13).
// Without the whole flag (OpenHeader, what a writer that goes on appending
// writes over it), the file reads as ending at its end record, and a cut
// is a write in progress again.
func TestWholeFileCut(t *testing.T) {
	st := bepfile.NewStream(&buildpb.StreamId{BuildId: "b", InvocationId: "i", Component: buildpb.StreamId_TOOL})
	evs := []bepfile.Event{
		{Seq: 1, HasTime: true, Time: bepfile.Timestamp{Seconds: 1700000000, Nanos: 5}, Payload: []byte("payload one")},
		{Seq: 2, Raw: []byte("a raw event")},
		{Seq: 7, Payload: []byte("three")},
	}
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	hn, _ := enc.WholeHeader(st)
	for i := range evs {
		enc.Record(&evs[i])
	}
	recordsEnd := buf.Len()
	enc.End(int64(len(evs)))
	file := buf.Bytes()
	got, err := readAll(file)
	if err != nil || len(got) != len(evs) {
		t.Fatalf("whole file: %d events, %v", len(got), err)
	}
	rd, _ := NewReader(bytes.NewReader(file), "f", int64(len(file)))
	if !rd.Whole() || rd.Version() != Version3 {
		t.Fatalf("whole %v, version %d", rd.Whole(), rd.Version())
	}
	for {
		if _, err := rd.Next(); err != nil {
			break
		}
	}
	if rd.EndOffset() != int64(recordsEnd) {
		t.Errorf("end record at %d, want %d", rd.EndOffset(), recordsEnd)
	}
	for n := hn; n < len(file); n++ {
		_, err := readAll(file[:n])
		var ce *CorruptError
		if !errors.As(err, &ce) || !errors.Is(err, ErrCut) {
			t.Fatalf("cut at %d: %v, want ErrCut", n, err)
		}
	}
	// Data after the end record, or an end record that miscounts.
	if _, err := readAll(append(bytes.Clone(file), 0)); err == nil || errors.Is(err, ErrCut) {
		t.Errorf("a byte after the end record: %v", err)
	}
	var bad bytes.Buffer
	benc := NewEncoder(&bad)
	benc.WholeHeader(st)
	benc.Record(&evs[0])
	benc.End(2)
	if _, err := readAll(bad.Bytes()); err == nil {
		t.Error("an end record counting 2 of 1 records read")
	}
	// Opened again for appending: the header without the flag.
	open := OpenHeader(st)
	if len(open) != hn {
		t.Fatalf("OpenHeader has %d bytes, WholeHeader %d", len(open), hn)
	}
	reopened := append(append([]byte{}, open...), file[hn:]...)
	if got, err := readAll(reopened); err != nil || len(got) != len(evs) {
		t.Errorf("reopened file with its end record: %d events, %v", len(got), err)
	}
	if _, err := readAll(reopened[:recordsEnd-2]); !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrCut) {
		t.Errorf("reopened file cut in a record: %v, want io.ErrUnexpectedEOF", err)
	}
}
