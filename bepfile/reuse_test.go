package bepfile

import (
	"bytes"
	"testing"
)

// TestReuse checks that a reader with Options.Reuse yields the same events
// as one without, for every binary form, including frames larger than the
// reader's buffer.
func TestReuse(t *testing.T) {
	for _, name := range []string{"test_mixed.bep", "bes_test_mixed.obe", "bes_test_mixed.lifecycle.obe", "truncated-test_mixed.bep"} {
		data := testdata(t, name)
		k1, e1 := readAllLenient(t, data, Options{})
		k2, e2 := readAllLenient(t, data, Options{Reuse: true})
		if len(e1) != len(e2) || len(e1) == 0 {
			t.Fatalf("%s: %d events without Reuse, %d with", name, len(e1), len(e2))
		}
		for i := range e1 {
			if k1[i] != k2[i] || e1[i].Seq != e2[i].Seq || !bytes.Equal(e1[i].Payload, e2[i].Payload) || !bytes.Equal(e1[i].Raw, e2[i].Raw) {
				t.Fatalf("%s: event %d differs with Reuse", name, i)
			}
		}
	}
}

// readAllLenient is readAll that stops quietly at the first error.
func readAllLenient(t *testing.T, data []byte, opts Options) (keys []string, evs []Event) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), "in", opts)
	if err != nil {
		t.Fatal(err)
	}
	for {
		s, ev, err := r.Next()
		if err != nil {
			return keys, evs
		}
		e := *ev
		e.Payload, e.Raw = bytes.Clone(ev.Payload), bytes.Clone(ev.Raw)
		keys = append(keys, s.Key)
		evs = append(evs, e)
	}
}

// TestOwnedEventsAreSeparate checks that events sharing a chunk do not
// share capacity: appending to one event's payload cannot change the next.
func TestOwnedEventsAreSeparate(t *testing.T) {
	r, err := NewReader(bytes.NewReader(testdata(t, "test_mixed.bep")), "in", Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, a, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(b.Payload)
	_ = append(a.Payload, 0xff, 0xff, 0xff)
	if !bytes.Equal(b.Payload, want) {
		t.Fatal("appending to one event's payload changed the next event")
	}
}

// TestLargeFrames reads frames larger than the reader's buffer, with and
// without Reuse.
func TestLargeFrames(t *testing.T) {
	// A BuildEvent with a progress payload larger than the buffer.
	var ev []byte
	stdout := bytes.Repeat([]byte("x"), bufSize+bufSize/2)
	progress := append([]byte{0x0a}, appendVarint(nil, uint64(len(stdout)))...)
	progress = append(progress, stdout...)
	ev = append(ev, 0x1a)
	ev = append(ev, appendVarint(nil, uint64(len(progress)))...)
	ev = append(ev, progress...)
	var data []byte
	for range 3 {
		data = append(data, appendVarint(nil, uint64(len(ev)))...)
		data = append(data, ev...)
	}
	for _, reuse := range []bool{false, true} {
		_, evs := readAllLenient(t, data, Options{Format: FormatBEP, Reuse: reuse})
		if len(evs) != 3 {
			t.Fatalf("reuse %v: %d events, want 3", reuse, len(evs))
		}
		for _, e := range evs {
			if !bytes.Equal(e.Payload, ev) {
				t.Fatalf("reuse %v: payload differs", reuse)
			}
		}
	}
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
