package bepfile

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// startedEvent encodes BuildEvent{id: {started: {}}, started: {uuid}}.
func startedEvent(uuid string) []byte {
	return msg(bytesField(1, bytesField(3, nil)), bytesField(5, bytesField(1, []byte(uuid))))
}

// ownEvents returns n encoded BuildEvents of a made-up build: started,
// then progress and test results.
func ownEvents(n int) [][]byte {
	evs := [][]byte{startedEvent("inv-sync")}
	for i := 1; len(evs) < n; i++ {
		if i%2 == 0 {
			evs = append(evs, testResultEvent("//t:t", varintField(tTRStatus, 1), bytesField(tTRStatusDetails, []byte(strings.Repeat("d", i)))))
		} else {
			evs = append(evs, progressEvent(uint64(i), "line\n", strings.Repeat("e", i)))
		}
	}
	return evs
}

// delimit writes frames, each with its length prefix.
func delimit(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = protowire.AppendBytes(b, f)
	}
	return b
}

// readErr reads data and returns the events and the errors, going on
// after resumable ones.
func readErr(t *testing.T, data []byte, opts Options) (items []item, errs []*Error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), "in", opts)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	for {
		s, ev, err := r.Next()
		if err == io.EOF {
			return items, errs
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			errs = append(errs, e)
			if !e.Resumable() {
				if _, _, again := r.Next(); again != err {
					t.Errorf("Next after a fatal error returned %v", again)
				}
				return items, errs
			}
			continue
		}
		items = append(items, item{s, ev})
	}
}

// TestOutOfSync: after a frame that does not parse, frames that do not
// parse either mean the framing is lost: the reader stops at the first
// bad frame, with one fatal error, and lists no garbage as events.
func TestOutOfSync(t *testing.T) {
	evs := ownEvents(12)
	good := delimit(evs[:4]...)
	// A rewriting tool that lengthened a string of event 4 without fixing
	// the length prefix: the frame ends 9 bytes before the event does, and
	// everything after is framed from inside event 4.
	bad := evs[4]
	long := append(bytes.Clone(bad[:len(bad)-3]), "/rewritten/path"...)
	long = append(long, bad[len(bad)-3:]...)
	shifted := append(protowire.AppendVarint(nil, uint64(len(bad)-9)), long...)
	shifted = append(shifted, delimit(evs[5:]...)...)

	cases := []struct {
		name string
		data []byte
		opts Options
	}{
		{"rewritten", cat(good, shifted), Options{}},
		{"rewritten bep", cat(good, shifted), Options{Format: FormatBEP}},
		{"garbage appended", cat(good, pseudoRandom(5000)), Options{Format: FormatBEP}},
		{"empty frames", cat(good, make([]byte, 64)), Options{Format: FormatBEP}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			items, errs := readErr(t, tc.data, tc.opts)
			if len(items) != 4 {
				t.Errorf("%d events, want exactly the 4 good ones", len(items))
			}
			for i, it := range items {
				if it.ev.Seq != int64(i+1) || !bytes.Equal(it.ev.Payload, evs[i]) {
					t.Errorf("event %d: seq %d, payload differs: %v", i, it.ev.Seq, !bytes.Equal(it.ev.Payload, evs[i]))
				}
			}
			if len(errs) != 1 {
				t.Fatalf("%d errors, want 1: %v", len(errs), errs)
			}
			e := errs[0]
			if e.Resumable() || e.Offset != int64(len(good)) || e.Index != 4 {
				t.Errorf("error %q: offset %d, index %d, resumable %v; want fatal at byte %d, event 4", e, e.Offset, e.Index, e.Resumable(), len(good))
			}
			if errors.Is(e, io.ErrUnexpectedEOF) {
				t.Errorf("error %q wraps io.ErrUnexpectedEOF: the input is not cut short", e)
			}
		})
	}
	// The rewritten file names the frames out of sync.
	_, errs := readErr(t, cat(good, shifted), Options{})
	if !errors.Is(errs[0], ErrOutOfSync) || !strings.Contains(errs[0].Error(), "want varint-delimited BuildEvent messages") {
		t.Errorf("error %q, want ErrOutOfSync naming what was expected", errs[0])
	}
	if want := "in: byte " + strconv.Itoa(len(good)) + " (event 4): invalid BuildEvent: BuildEvent field 10: unexpected EOF; the next frame is no BuildEvent either: frames out of sync from here (want varint-delimited BuildEvent messages), the rest of the input is not read"; errs[0].Error() != want {
		t.Errorf("error\n%q, want\n%q", errs[0], want)
	}
}

// TestOneBadFrame: a complete frame with a bad payload among good frames
// is skipped with a resumable error; every other event is read.
func TestOneBadFrame(t *testing.T) {
	evs := ownEvents(8)
	garbled := []byte{0x0a, 0x05, 0x12} // id claiming 5 bytes, 1 there
	hollow := []byte{}                  // an empty frame: no id, no payload
	for _, tc := range []struct {
		name string
		bad  []byte
		msg  string
	}{
		{"garbled", garbled, "invalid BuildEvent: BuildEvent field 1: unexpected EOF"},
		{"hollow", hollow, "invalid BuildEvent: neither id nor payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := cat(delimit(evs[:3]...), delimit(tc.bad), delimit(evs[3:]...))
			items, errs := readErr(t, data, Options{Format: FormatBEP})
			if len(items) != 8 {
				t.Errorf("%d events, want 8", len(items))
			}
			if len(errs) != 1 || !errs[0].Resumable() || errs[0].Index != 3 || errs[0].Err.Error() != tc.msg {
				t.Errorf("errors %v, want one resumable at event 3: %s", errs, tc.msg)
			}
		})
	}
	// Also when the bad frame is the last one.
	items, errs := readErr(t, cat(delimit(evs...), delimit(garbled)), Options{Format: FormatBEP})
	if len(items) != 8 || len(errs) != 1 || !errs[0].Resumable() {
		t.Errorf("bad last frame: %d events, errors %v", len(items), errs)
	}
}

// obeFrames wraps BuildEvents as OrderedBuildEvents of one stream.
func obeFrames(t *testing.T, evs [][]byte) [][]byte {
	t.Helper()
	var out [][]byte
	id := &buildpb.StreamId{BuildId: "b", InvocationId: "i", Component: buildpb.StreamId_TOOL}
	for i, e := range evs {
		obe := &buildpb.OrderedBuildEvent{StreamId: id, SequenceNumber: int64(i + 1), Event: &buildpb.BuildEvent{
			Event: &buildpb.BuildEvent_BazelEvent{BazelEvent: &anypb.Any{TypeUrl: BazelEventTypeURL, Value: e}},
		}}
		b, err := proto.Marshal(obe)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestOutOfSyncOBE(t *testing.T) {
	fs := obeFrames(t, ownEvents(10))
	good := delimit(fs[:5]...)
	// Frame 5's length prefix two bytes short: the rest is read from
	// inside it.
	shifted := append(protowire.AppendVarint(nil, uint64(len(fs[5])-2)), fs[5]...)
	shifted = append(shifted, delimit(fs[6:]...)...)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"shifted", cat(good, shifted)},
		{"garbage", cat(good, pseudoRandom(3000))},
		{"empty frames", cat(good, make([]byte, 20))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, errs := readErr(t, tc.data, Options{Format: FormatOBE})
			if len(items) != 5 {
				t.Errorf("%d events, want 5", len(items))
			}
			if len(errs) != 1 || errs[0].Resumable() || errs[0].Offset != int64(len(good)) || errs[0].Index != 5 {
				t.Errorf("errors %v, want one fatal at byte %d (event 5)", errs, len(good))
			}
		})
	}
	// One bad frame among good ones is skipped.
	data := cat(good, delimit([]byte{0x0a, 0x09, 0x01}), delimit(fs[5:]...))
	items, errs := readErr(t, data, Options{Format: FormatOBE})
	if len(items) != 10 || len(errs) != 1 || !errs[0].Resumable() {
		t.Errorf("one bad OBE frame: %d events, errors %v; want 10 and one resumable", len(items), errs)
	}
}

// TestNDJSONUnknown: an enum name and a field that bes does not know, in
// Bazel's JSON file, are kept and noticed by the rule the binary form
// follows: the status is a number with no name (as the binary file's 99
// is), and each is named once in Reader.Found.
func TestNDJSONUnknown(t *testing.T) {
	started := `{"id":{"started":{}},"started":{"uuid":"u","someOtherFutureField":{"x":[1,2]}}}`
	result := `{"id":{"testResult":{"label":"//t:t","run":1,"shard":1,"attempt":1}},` +
		`"testResult":{"status":"NEW_STATUS","statusDetails":"d","testActionOutput":[{"name":"test.log","newFileField":1}],` +
		`"executionInfo":{"strategy":"linux-sandbox"}},"lastMessage":true}`
	r, err := NewReader(strings.NewReader(started+"\n"+result+"\n"), "in.json", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var found []Damage
	var payloads [][]byte
	for {
		_, ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		found = append(found, r.Found())
		payloads = append(payloads, ev.Payload)
	}
	if len(found) != 3 {
		t.Fatalf("%d events, want 3", len(found))
	}
	if want := []Unknown{{Path: "started", Field: `"someOtherFutureField"`}}; !equalUnknowns(found[0].Unknown, want) {
		t.Errorf("event 1: %+v, want %+v", found[0].Unknown, want)
	}
	want := []Unknown{{Path: "testResult.status", Value: `"NEW_STATUS"`}, {Path: "testResult.testActionOutput", Field: `"newFileField"`}}
	if !equalUnknowns(found[1].Unknown, want) || found[1].Damaged() {
		t.Errorf("event 2: %+v, want %+v", found[1], want)
	}
	if len(found[2].Unknown) != 0 {
		t.Errorf("the finish event: %+v", found[2])
	}
	if got := found[1].Unknown[0].String(); got != `testResult.status: value "NEW_STATUS" unknown to bes (a newer Bazel?)` {
		t.Errorf("notice %q", got)
	}

	// The JSON event decodes to a status without a name, as the binary
	// event with status 99 does; the rest of the event is kept.
	fromJSON := &bes.BuildEvent{}
	if _, err := DecodeBuildEvent(payloads[1], fromJSON); err != nil {
		t.Fatal(err)
	}
	binary := testResultEvent("//t:t", varintField(tTRStatus, 99))
	fromBinary := &bes.BuildEvent{}
	d, err := DecodeBuildEvent(binary, fromBinary)
	if err != nil {
		t.Fatal(err)
	}
	for _, be := range []*bes.BuildEvent{fromJSON, fromBinary} {
		if _, named := bes.TestStatus_name[int32(be.GetTestResult().GetStatus())]; named {
			t.Errorf("status %v has a name", be.GetTestResult().GetStatus())
		}
	}
	if fromJSON.GetTestResult().GetStatus() != bes.TestStatus(UnknownEnumNumber("NEW_STATUS")) {
		t.Errorf("JSON status %d, want UnknownEnumNumber", fromJSON.GetTestResult().GetStatus())
	}
	if fromJSON.GetTestResult().GetStatusDetails() != "d" || fromJSON.GetTestResult().GetExecutionInfo().GetStrategy() != "linux-sandbox" ||
		fromJSON.GetTestResult().GetTestActionOutput()[0].GetName() != "test.log" || !fromJSON.GetLastMessage() {
		t.Errorf("JSON event lost fields: %v", fromJSON)
	}
	if len(d.Unknown) != 1 || d.Unknown[0].Path != "testResult.status" || found[1].Unknown[0].key() != d.Unknown[0].key() {
		t.Errorf("binary: %+v; the two forms must notice the same field", d.Unknown)
	}
	// One Notices says the field once, whichever form came first.
	var n Notices
	lines := n.New("x", found[1].Unknown)
	lines = append(lines, n.New("x", d.Unknown)...)
	if len(lines) != 2 {
		t.Errorf("notices %q, want one per field", lines)
	}
}

func equalUnknowns(a, b []Unknown) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(us []Unknown) map[Unknown]bool {
		m := map[Unknown]bool{}
		for _, u := range us {
			m[u] = true
		}
		return m
	}
	ka, kb := key(a), key(b)
	for u := range ka {
		if !kb[u] {
			return false
		}
	}
	return true
}

// TestNDJSONInvalidUTF8: a JSON line that is not valid UTF-8 is decoded
// with U+FFFD and says so.
func TestNDJSONInvalidUTF8(t *testing.T) {
	line := `{"id":{"progress":{}},"progress":{"stderr":"bad ` + "\xff\xfe" + ` bytes"}}`
	r, err := NewReader(strings.NewReader(`{"id":{"started":{}},"started":{"uuid":"u"}}`+"\n"+line+"\n"), "in.json", Options{Format: FormatNDJSON})
	if err != nil {
		t.Fatal(err)
	}
	r.Next()
	_, ev, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	be := &bes.BuildEvent{}
	if err := proto.Unmarshal(ev.Payload, be); err != nil {
		t.Fatal(err)
	}
	if be.GetProgress().GetStderr() != "bad \uFFFD\uFFFD bytes" {
		t.Errorf("stderr %q", be.GetProgress().GetStderr())
	}
	if f := r.Found(); len(f.Repaired) != 1 {
		t.Errorf("Found %+v, want the line repaired", f)
	}
}

// TestPosition: every event read from an input knows where it was read;
// the finish event the reader adds does not.
func TestPosition(t *testing.T) {
	evs := ownEvents(4)
	evs[3] = append(bytes.Clone(evs[3]), varintField(20, 1)...) // last_message
	data := delimit(evs...)
	var starts []int64
	for off, i := 0, 0; i < len(evs); i++ {
		starts = append(starts, int64(off))
		off += protowire.SizeBytes(len(evs[i]))
	}
	items, errs := readErr(t, data, Options{})
	if len(errs) != 0 || len(items) != 5 {
		t.Fatalf("%d events, errors %v", len(items), errs)
	}
	for i, it := range items[:4] {
		off, idx, ok := it.ev.Position()
		if !ok || off != starts[i] || idx != i {
			t.Errorf("event %d: Position() = %d, %d, %v; want %d, %d, true", i, off, idx, ok, starts[i], i)
		}
	}
	if _, _, ok := items[4].ev.Position(); ok {
		t.Error("the finish event has a position")
	}
	// JSON lines: blank lines do not count as events but as bytes.
	j := "{\"id\":{\"started\":{}},\"started\":{\"uuid\":\"u\"}}\n\n{\"id\":{\"progress\":{}},\"progress\":{}}\n"
	items, errs = readErr(t, []byte(j), Options{})
	if len(errs) != 0 || len(items) != 2 {
		t.Fatalf("JSON: %d events, errors %v", len(items), errs)
	}
	if off, idx, ok := items[1].ev.Position(); !ok || off != int64(strings.Index(j, "\n\n")+2) || idx != 1 {
		t.Errorf("JSON line 3: Position() = %d, %d, %v", off, idx, ok)
	}
	var zero Event
	if _, _, ok := zero.Position(); ok {
		t.Error("an Event no reader read has a position")
	}
}
