package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"google.golang.org/protobuf/encoding/protowire"
)

func TestMetaOBE(t *testing.T) {
	obes, frames := readOBEs(t, "bes_test_mixed.obe")
	info := bepfile.NewStream(obes[0].GetStreamId())
	// Once with every event whole (Raw), once compacted where possible.
	for _, compact := range []bool{false, true} {
		var m Meta
		var scratch []byte
		for _, f := range frames {
			ev := bepfile.Event{Raw: f}
			if compact {
				scratch, _ = ev.Compact(info, scratch)
			}
			m.Observe(&ev)
		}
		if m.Events != int64(len(frames)) || !m.Complete || m.Command != "test" ||
			m.Result != "TESTS_FAILED" || m.ExitCode != 3 || !m.HasExitCode ||
			m.UUID != obes[0].GetStreamId().GetInvocationId() {
			t.Errorf("compact=%v: Meta = %+v", compact, m)
		}
		if m.Start.IsZero() || m.Finish.Before(m.Start) || m.Finish.Sub(m.Start) > time.Hour {
			t.Errorf("compact=%v: start %v, finish %v", compact, m.Start, m.Finish)
		}
	}
}

func TestMetaBEP(t *testing.T) {
	for _, tc := range []struct {
		file     string
		complete bool
		command  string
		result   string
		code     int32
	}{
		{"build_ok.bep", true, "build", "SUCCESS", 0},
		{"build_keep_going_fail.bep", true, "build", "BUILD_FAILURE", 1},
		{"test_mixed.bep", true, "test", "TESTS_FAILED", 3},
		{"query.bep", true, "query", "SUCCESS", 0},
		{"truncated-test_mixed.bep", false, "test", "", 0},
	} {
		// Bazel's events alone: the stream has not ended yet, even after
		// last_message (a server killed before the finish event).
		var m Meta
		frames := readFrames(t, tc.file)
		for _, f := range frames {
			m.Observe(&bepfile.Event{Payload: f})
		}
		if m.Events != int64(len(frames)) || m.Complete || m.Command != tc.command ||
			m.Result != tc.result || m.ExitCode != tc.code || m.HasExitCode != (tc.result != "") || m.Start.IsZero() {
			t.Errorf("%s, Bazel's events alone: Meta = %+v", tc.file, m)
		}
		// As bepfile reads the file: with the component_stream_finished
		// event Bazel's BES client sends after last_message.
		m = Meta{}
		r, err := bepfile.Open(filepath.Join("..", "testdata", tc.file), bepfile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for {
			_, ev, err := r.Next()
			if err != nil {
				break
			}
			m.Observe(ev)
		}
		r.Close()
		want := int64(len(frames))
		if tc.complete {
			want++
		}
		if m.Events != want || m.Complete != tc.complete || m.Command != tc.command ||
			m.Result != tc.result || m.ExitCode != tc.code || m.HasExitCode != (tc.result != "") || m.Start.IsZero() {
			t.Errorf("%s, as bepfile reads it: Meta = %+v", tc.file, m)
		}
		if tc.complete && !m.Finish.After(m.Start) {
			t.Errorf("%s: start %v, finish %v", tc.file, m.Start, m.Finish)
		}
	}
}

// TestMetaTimestamps checks that the Timestamp fields win over the millis
// fields, and that malformed payloads are ignored.
func TestMetaTimestamps(t *testing.T) {
	msg := func(fields ...[]byte) []byte {
		var b []byte
		for _, f := range fields {
			b = append(b, f...)
		}
		return b
	}
	bytesField := func(num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	varintField := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	ts := msg(varintField(1, 1800000000), varintField(2, 5))
	started := bytesField(5, msg(varintField(2, 1000), bytesField(9, ts), bytesField(5, []byte("build"))))
	finished := bytesField(14, msg(varintField(2, 1700000000123), bytesField(3, msg(bytesField(1, []byte("SUCCESS"))))))
	var m Meta
	m.Observe(&bepfile.Event{Payload: started})
	m.Observe(&bepfile.Event{Payload: finished})
	m.Observe(&bepfile.Event{Payload: []byte{0xff, 0xff}}) // garbage
	m.Observe(&bepfile.Event{Raw: []byte{0x1a, 0x05, 1}})  // truncated envelope
	if want := time.Unix(1800000000, 5).UTC(); !m.Start.Equal(want) {
		t.Errorf("Start = %v, want %v", m.Start, want)
	}
	if want := time.UnixMilli(1700000000123).UTC(); !m.Finish.Equal(want) {
		t.Errorf("Finish = %v, want %v", m.Finish, want)
	}
	if m.Command != "build" || m.Result != "SUCCESS" || !m.HasExitCode || m.ExitCode != 0 || m.Complete || m.Events != 4 {
		t.Errorf("Meta = %+v", m)
	}
}
