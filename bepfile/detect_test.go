package bepfile

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// bigProgress returns a BuildEvent with n bytes of stdout, encoded.
func bigProgress(t testing.TB, n int, started bool) *bes.BuildEvent {
	t.Helper()
	ev := &bes.BuildEvent{
		Id: &bes.BuildEventId{Id: &bes.BuildEventId_Progress{Progress: &bes.BuildEventId_ProgressId{}}},
		Payload: &bes.BuildEvent_Progress{Progress: &bes.Progress{
			Stdout: strings.Repeat("x", n),
		}},
	}
	if started {
		ev.Id = &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}}
		ev.Payload = &bes.BuildEvent_Started{Started: &bes.BuildStarted{Uuid: "inv", Command: strings.Repeat("c", n)}}
	}
	return ev
}

// TestDetect: each form is detected, also when its first frame or line is
// longer than the detection looks at, or the input is cut inside it.
func TestDetect(t *testing.T) {
	big := bigProgress(t, 200<<10, true)
	bigBin, err := proto.Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	bigJSON, err := protojson.Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	bigJSON = bytes.ReplaceAll(bigJSON, []byte("\n"), nil) // protojson may add no newlines, but be sure
	anyv, err := anypb.New(big)
	if err != nil {
		t.Fatal(err)
	}
	anyv.TypeUrl = BazelEventTypeURL
	id := &buildpb.StreamId{BuildId: "b", InvocationId: "i", Component: buildpb.StreamId_TOOL}
	bigOBE := &buildpb.OrderedBuildEvent{StreamId: id, SequenceNumber: 1, Event: &buildpb.BuildEvent{Event: &buildpb.BuildEvent_BazelEvent{BazelEvent: anyv}}}
	bigTool := &buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: bigOBE, ProjectId: "p"}
	bigLife := &buildpb.PublishLifecycleEventRequest{
		ServiceLevel: buildpb.PublishLifecycleEventRequest_INTERACTIVE,
		BuildEvent:   &buildpb.OrderedBuildEvent{StreamId: id, SequenceNumber: 1, Event: &buildpb.BuildEvent{Event: &buildpb.BuildEvent_BuildEnqueued_{BuildEnqueued: &buildpb.BuildEvent_BuildEnqueued{}}}},
		ProjectId:    strings.Repeat("p", 100<<10),
	}

	tests := []struct {
		name   string
		input  []byte
		format Format
		events int // complete events (not counting a finish event)
	}{
		{"bep", testdata(t, "test_mixed.bep"), FormatBEP, 106},
		{"obe", testdata(t, "bes_test_mixed.obe"), FormatOBE, 106},
		{"publish", testdata(t, "bes_test_mixed.lifecycle.obe"), FormatPublish, 4},
		{"ndjson", testdata(t, "test_mixed.json"), FormatNDJSON, 106},
		{"ndjson crlf", bytes.ReplaceAll(testdata(t, "query.json"), []byte("\n"), []byte("\r\n")), FormatNDJSON, 16},
		{"ndjson leading blank line", append([]byte("\n \n"), testdata(t, "query.json")...), FormatNDJSON, 16},
		{"ndjson no final newline", bytes.TrimSuffix(testdata(t, "query.json"), []byte("\n")), FormatNDJSON, 16},
		{"bep first frame cut", testdata(t, "test_mixed.bep")[:300], FormatBEP, 0},
		{"obe first frame cut", testdata(t, "bes_test_mixed.obe")[:300], FormatOBE, 0},
		{"big bep", protowire.AppendBytes(nil, bigBin), FormatBEP, 1},
		{"big bep cut", protowire.AppendBytes(nil, bigBin)[:100<<10], FormatBEP, 0},
		{"big ndjson", append(bigJSON, '\n'), FormatNDJSON, 1},
		{"big ndjson cut", bigJSON[:100<<10], FormatNDJSON, 0},
		{"big obe", delimited(t, bigOBE), FormatOBE, 1},
		{"big tool request", delimited(t, bigTool), FormatPublish, 1},
		{"big lifecycle request", delimited(t, bigLife), FormatPublish, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tt.input), "in", Options{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Format() != tt.format {
				t.Errorf("detected %v, want %v", r.Format(), tt.format)
			}
			items, err := readAll(t, r)
			n := 0
			for _, it := range items {
				if it.ev.IsBazel() || it.s.ID.Component != buildpb.StreamId_TOOL {
					n++
				}
			}
			if n != tt.events && !(n == tt.events-1 && len(items) == tt.events) {
				t.Errorf("%d events, want %d (error %v)", len(items), tt.events, err)
			}
		})
	}
}

// blockingReader returns its data, then blocks until released.
type blockingReader struct {
	data    []byte
	release chan struct{}
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		<-b.release
		return 0, io.EOF
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

// TestDetectReadsLittle: on a pipe that has delivered only the first event,
// detection decides without waiting for more.
func TestDetectReadsLittle(t *testing.T) {
	for _, c := range []struct {
		file   string
		format Format
	}{
		{"test_mixed.bep", FormatBEP},
		{"bes_test_mixed.obe", FormatOBE},
		{"test_mixed.json", FormatNDJSON},
	} {
		data := testdata(t, c.file)
		var first int
		if c.format == FormatNDJSON {
			first = bytes.IndexByte(data, '\n') + 1
		} else {
			size, n := protowire.ConsumeVarint(data)
			first = n + int(size)
		}
		br := &blockingReader{data: data[:first], release: make(chan struct{})}
		done := make(chan Format)
		go func() {
			r, err := NewReader(br, c.file, Options{})
			if err != nil {
				t.Error(err)
				done <- FormatAuto
				return
			}
			done <- r.Format()
		}()
		select {
		case f := <-done:
			if f != c.format {
				t.Errorf("%s: detected %v", c.file, f)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: detection waits for more than the first event", c.file)
		}
		close(br.release)
	}
}

// TestDetectFunc checks detect directly on prefixes.
func TestDetectFunc(t *testing.T) {
	tests := []struct {
		name string
		p    string
		eof  bool
		want Format
	}{
		{"json object with id", `{"id":{"started":{}}}` + "\n", false, FormatNDJSON},
		{"json object at eof", `{"id":{}}`, true, FormatNDJSON},
		{"json object without id", `{"x":1}` + "\n", true, FormatAuto},
		{"long json prefix", `{"id":{"started":{}},"started":{"uuid":"` + strings.Repeat("u", 100), false, FormatNDJSON},
		{"long json prefix, other first key", `{"x":{"started":{}},"started":{"uuid":"` + strings.Repeat("u", 100), false, FormatAuto},
		// JSON BuildEvents pretty-printed over several lines (`jq .
		// build.json`, trunk-io's fixture) are read as Bazel's JSON file:
		// a stream of JSON values, whatever their layout (issue 10; they
		// were refused as "not a BEP file" before).
		{"pretty json", "{\n  \"id\": {}\n}\n", true, FormatNDJSON},
		{"pretty json, first value cut", "{\n  \"id\": {\n    \"started\": {}\n  },\n  \"started\": {\n    \"uuid\": \"u", false, FormatNDJSON},
		{"pretty json, sorted keys, cut", "{\n  \"children\": [\n    {", false, FormatNDJSON},
		{"two values on a line", `{"id":{}}{"id":{}}`, true, FormatNDJSON},
		{"cut json at eof", `{"id":{"started":{}},"sta`, true, FormatNDJSON},
		{"cut json, other first key", `{"x":{"started":{}},"sta`, true, FormatAuto},
		{"json syntax error", `{"id":{}]` + "\n", true, FormatAuto},
		{"binary frame of 123 bytes", "\x7b\x0a\x05\x1a\x03\x0a\x01x\x2a\x72" + strings.Repeat("x", 114), false, FormatBEP},
		{"bep id only", "\x04\x0a\x02\x1a\x00", true, FormatBEP},
		{"obe stream id only", "\x05\x0a\x03\x0a\x01b", true, FormatOBE},
		{"empty frame", "\x00", true, FormatAuto},
		{"html", "<!doctype html>\n<html></html>\n", true, FormatAuto},
		{"gzip magic without gzip", "\x1f\x8b", true, FormatAuto},
	}
	for _, tt := range tests {
		if got := detect([]byte(tt.p), tt.eof); got != tt.want {
			t.Errorf("%s: detect = %v, want %v", tt.name, got, tt.want)
		}
	}
}
