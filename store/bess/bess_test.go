package bess

import (
	"bytes"
	"errors"
	"io"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"

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
