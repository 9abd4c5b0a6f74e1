package bepgen

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// TestDeterministic checks that a seed gives the same bytes, and another
// seed other bytes.
func TestDeterministic(t *testing.T) {
	gen := func(seed uint64) []byte {
		var b bytes.Buffer
		if _, err := WriteBEP(&b, Config{Seed: seed, Targets: 300}); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	if a, b := gen(1), gen(1); !bytes.Equal(a, b) {
		t.Error("the same seed gave different files")
	}
	if a, b := gen(1), gen(2); bytes.Equal(a, b) {
		t.Error("two seeds gave the same file")
	}
}

// TestFileAndTwin reads a generated binary file with bepfile and checks it
// against its JSON twin and its statistics.
func TestFileAndTwin(t *testing.T) {
	cfg := Config{Seed: 7, Size: 1 << 20}
	var bin, js bytes.Buffer
	st, err := WriteBEP(&bin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteNDJSON(&js, cfg); err != nil {
		t.Fatal(err)
	}
	if st.Bytes != int64(bin.Len()) || st.Bytes < 1<<19 || st.Bytes > 2<<20 {
		t.Errorf("%d bytes written (stats say %d), want about %d", bin.Len(), st.Bytes, cfg.Size)
	}
	r, err := bepfile.NewReader(bytes.NewReader(bin.Bytes()), "gen.bep", bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Format() != bepfile.FormatBEP {
		t.Fatalf("detected as %v", r.Format())
	}
	lines := bufio.NewScanner(&js)
	lines.Buffer(nil, 64<<20)
	kinds := map[string]int{}
	n, last := 0, false
	for {
		_, ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !ev.IsBazel() {
			continue // component_stream_finished
		}
		n++
		p, err := bepfile.Peek(ev.Payload)
		if err != nil {
			t.Fatal(err)
		}
		kinds[p.Kind()]++
		last = p.LastMessage
		if !lines.Scan() {
			t.Fatalf("the JSON twin ends before event %d", n)
		}
		var a, b bes.BuildEvent
		if err := proto.Unmarshal(ev.Payload, &a); err != nil {
			t.Fatal(err)
		}
		if err := protojson.Unmarshal(lines.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&a, &b) {
			t.Fatalf("event %d differs from its JSON twin", n)
		}
	}
	if n != st.Events || !last {
		t.Errorf("%d events (stats say %d), last message %v", n, st.Events, last)
	}
	for _, k := range []string{"started", "configured", "action", "namedSetOfFiles", "completed", "testResult", "testSummary", "progress", "finished", "structuredCommandLine"} {
		if kinds[k] == 0 {
			t.Errorf("no %s event", k)
		}
	}
}

// TestCapture checks that a capture holds the streams asked for, each
// complete.
func TestCapture(t *testing.T) {
	var b bytes.Buffer
	st, err := WriteOBE(&b, CaptureConfig{Seed: 1, Streams: 12, MinTargets: 1, MaxTargets: 5})
	if err != nil {
		t.Fatal(err)
	}
	r, err := bepfile.NewReader(&b, "capture.obe", bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]int{}
	for {
		s, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		events[s.Key]++
	}
	if len(events) != 12 || st.Streams != 12 {
		t.Fatalf("%d streams read, %d written, want 12", len(events), st.Streams)
	}
}
