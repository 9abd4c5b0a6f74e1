package bepfile

//lint:file-ignore SA1019 The events are made as Bazel 4.2 writes them, with the *_millis times the current schema deprecates.

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// javaOrder encodes ev as Go does, then puts its top-level fields after
// the id in descending field-number order (repeated fields keep their
// relative order): other bytes for the same message. (The id stays first,
// as in every file Bazel writes, which the form detection relies on.)
func javaOrder(t testing.TB, ev *bes.BuildEvent) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	type field struct {
		num protowire.Number
		raw []byte
	}
	var fields []field
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if n < 0 || m < 0 {
			t.Fatalf("bad encoding of %v", ev)
		}
		fields = append(fields, field{num, b[:n+m]})
		b = b[n+m:]
	}
	slices.SortStableFunc(fields, func(x, y field) int {
		rank := func(f field) protowire.Number { // the id first, then descending
			if f.num == 1 {
				return -1 << 30
			}
			return -f.num
		}
		return cmp.Compare(rank(x), rank(y))
	})
	var out []byte
	for _, f := range fields {
		out = append(out, f.raw...)
	}
	return out
}

// queryRun returns the events of a `bazel query` as Bazel 4 writes them:
// a BuildStarted without uuid, started at startMillis.
func queryRun(startMillis int64) []*bes.BuildEvent {
	progressID := func(n int32) *bes.BuildEventId {
		return &bes.BuildEventId{Id: &bes.BuildEventId_Progress{Progress: &bes.BuildEventId_ProgressId{OpaqueCount: n}}}
	}
	finishedID := &bes.BuildEventId{Id: &bes.BuildEventId_BuildFinished{BuildFinished: &bes.BuildEventId_BuildFinishedId{}}}
	return []*bes.BuildEvent{
		{
			Id:       &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}},
			Children: []*bes.BuildEventId{progressID(0), finishedID},
			Payload:  &bes.BuildEvent_Started{Started: &bes.BuildStarted{StartTimeMillis: startMillis, Command: "query", ServerPid: 12462}},
		},
		{
			Id:       progressID(0),
			Children: []*bes.BuildEventId{progressID(1)},
			Payload:  &bes.BuildEvent_Progress{Progress: &bes.Progress{Stderr: "Loading: 0 packages loaded\n"}},
		},
		{
			Id:          finishedID,
			LastMessage: true,
			Payload: &bes.BuildEvent_Finished{Finished: &bes.BuildFinished{
				ExitCode:         &bes.BuildFinished_ExitCode{Name: "SUCCESS"},
				FinishTimeMillis: startMillis + 352,
			}},
		},
	}
}

// bepBytes writes events as Bazel's binary file, each in javaOrder.
func bepBytes(t testing.TB, evs []*bes.BuildEvent) []byte {
	var out []byte
	for _, ev := range evs {
		out = protowire.AppendBytes(out, javaOrder(t, ev))
	}
	return out
}

// jsonBytes writes events as Bazel's JSON file.
func jsonBytes(t testing.TB, evs []*bes.BuildEvent) []byte {
	var out bytes.Buffer
	for _, ev := range evs {
		b, err := protojson.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(b)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// streamsOf reads data and returns the ids of its streams, in order.
func streamsOf(t testing.TB, data []byte, opts Options) []*Stream {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data), "input", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []*Stream
	for {
		s, _, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
}

// wantID is the synthesized invocation id of a stream whose first event is
// ev, computed as documented: the SHA-256 of its deterministic encoding.
func wantID(t testing.TB, ev *bes.BuildEvent) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "nouuid-" + hex.EncodeToString(sum[:16])
}

// TestSynthesizedID: a Bazel file whose first event names no invocation
// gets an id of its own, from a digest of that event: the same from the
// binary and the JSON file of one run, another for another run or another
// first event; a file with a uuid keeps it.
func TestSynthesizedID(t *testing.T) {
	runA, runB := queryRun(1795464889362), queryRun(1795464899362)
	idA, idB := wantID(t, runA[0]), wantID(t, runB[0])
	if idA == idB {
		t.Fatalf("two runs, one id %s", idA)
	}
	if goBytes, _ := proto.Marshal(runA[0]); bytes.Equal(javaOrder(t, runA[0]), goBytes) {
		t.Fatal("the binary file's first event has Go's bytes: the test would not compare messages")
	}
	for _, tc := range []struct {
		name string
		data []byte
		opts Options
		key  string
	}{
		{"run A, binary", bepBytes(t, runA), Options{}, idA + ".3." + idA},
		{"run A, JSON", jsonBytes(t, runA), Options{}, idA + ".3." + idA},
		{"run A, binary, form given", bepBytes(t, runA), Options{Format: FormatBEP}, idA + ".3." + idA},
		{"run B, binary", bepBytes(t, runB), Options{}, idB + ".3." + idB},
		{"run B, JSON", jsonBytes(t, runB), Options{}, idB + ".3." + idB},
		{"run A with --build-id", bepBytes(t, runA), Options{BuildID: "ci-42"}, "ci-42.3." + idA},
		{"an excerpt of run A", bepBytes(t, runA[1:]), Options{}, wantID(t, runA[1]) + ".3." + wantID(t, runA[1])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := streamsOf(t, tc.data, tc.opts)
			if len(ss) != 1 {
				t.Fatalf("%d streams, want 1", len(ss))
			}
			s := ss[0]
			if s.Key != tc.key {
				t.Errorf("key %q, want %q", s.Key, tc.key)
			}
			if !IsSynthesizedID(s.ID.InvocationId) || !strings.HasPrefix(s.ID.InvocationId, SynthesizedIDPrefix) || len(s.ID.InvocationId) != len(SynthesizedIDPrefix)+32 {
				t.Errorf("invocation id %q is not a synthesized one", s.ID.InvocationId)
			}
		})
	}
	if id := wantID(t, runA[1]); id == idA {
		t.Errorf("the excerpt has the id of the whole run")
	}

	// Two runs in one file (Bazel's files concatenated): two streams.
	both := append(bepBytes(t, runA), bepBytes(t, runB)...)
	ss := streamsOf(t, both, Options{})
	if len(ss) != 2 || ss[0].Key != idA+".3."+idA || ss[1].Key != idB+".3."+idB {
		t.Errorf("concatenated runs: streams %v", ss)
	}

	// A BuildStarted with a uuid keeps it.
	withUUID := queryRun(1795464889362)
	withUUID[0].GetStarted().Uuid = "0b0e6c8e-3c39-4a64-a7c1-2a4d52f5a001"
	ss = streamsOf(t, bepBytes(t, withUUID), Options{})
	if len(ss) != 1 || ss[0].Key != "0b0e6c8e-3c39-4a64-a7c1-2a4d52f5a001.3.0b0e6c8e-3c39-4a64-a7c1-2a4d52f5a001" || IsSynthesizedID(ss[0].ID.InvocationId) {
		t.Errorf("with a uuid: streams %v", ss)
	}
	if IsSynthesizedID("0b0e6c8e-3c39-4a64-a7c1-2a4d52f5a001") || IsSynthesizedID("") {
		t.Error("IsSynthesizedID of a uuid or of nothing")
	}
}

// TestCanonicalBuildEvent: two encodings of one event, in other field and
// map entry orders, have one canonical encoding, Go's deterministic one;
// fields bes does not know are dropped; bytes that do not decode are kept.
func TestCanonicalBuildEvent(t *testing.T) {
	ev := &bes.BuildEvent{
		Id: &bes.BuildEventId{Id: &bes.BuildEventId_BuildMetadata{BuildMetadata: &bes.BuildEventId_BuildMetadataId{}}},
		Payload: &bes.BuildEvent_BuildMetadata{BuildMetadata: &bes.BuildMetadata{
			Metadata: map[string]string{"ALPHA": "1", "BETA": "2", "GAMMA": "3"},
		}},
	}
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	// The metadata map's entries in descending key order, the payload
	// before the id: as Java may write them.
	var md []byte
	for _, k := range []string{"GAMMA", "BETA", "ALPHA"} {
		var entry []byte
		entry = protowire.AppendTag(entry, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, k)
		entry = protowire.AppendTag(entry, 2, protowire.BytesType)
		entry = protowire.AppendString(entry, ev.GetBuildMetadata().Metadata[k])
		md = protowire.AppendTag(md, 1, protowire.BytesType)
		md = protowire.AppendBytes(md, entry)
	}
	fd := ev.ProtoReflect().Descriptor().Fields()
	idBytes, err := proto.Marshal(ev.Id)
	if err != nil {
		t.Fatal(err)
	}
	var java []byte
	java = protowire.AppendTag(java, fd.ByName("build_metadata").Number(), protowire.BytesType)
	java = protowire.AppendBytes(java, md)
	java = protowire.AppendTag(java, fd.ByName("id").Number(), protowire.BytesType)
	java = protowire.AppendBytes(java, idBytes)
	// A field no schema has.
	withUnknown := protowire.AppendTag(slices.Clone(java), 9999, protowire.VarintType)
	withUnknown = protowire.AppendVarint(withUnknown, 7)

	if bytes.Equal(java, want) {
		t.Fatal("the test's Java order is Go's")
	}
	for name, in := range map[string][]byte{"go": want, "java": java, "unknown field": withUnknown} {
		got, ok := CanonicalBuildEvent(in)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("%s: CanonicalBuildEvent = %x, %v; want %x", name, got, ok, want)
		}
	}
	bad := []byte{0x0a, 0x05, 0x01} // field 1 claims 5 bytes, has 1
	if got, ok := CanonicalBuildEvent(bad); ok || !bytes.Equal(got, bad) {
		t.Errorf("undecodable: CanonicalBuildEvent = %x, %v; want the bytes, false", got, ok)
	}
}

// TestCanonicalInvalidUTF8: a Progress event whose stderr is not UTF-8
// (bazelbuild/bazel#11125) and the same event with each bad byte as U+FFFD,
// as Bazel's JSON file holds it, are one event.
func TestCanonicalInvalidUTF8(t *testing.T) {
	progress := func(stderr string) []byte {
		var p []byte
		p = protowire.AppendTag(p, 2, protowire.BytesType) // Progress.stderr
		p = protowire.AppendString(p, stderr)
		var id []byte
		id = protowire.AppendTag(id, 1, protowire.BytesType) // BuildEventId.progress
		id = protowire.AppendBytes(id, nil)
		var be []byte
		be = protowire.AppendTag(be, 1, protowire.BytesType)
		be = protowire.AppendBytes(be, id)
		be = protowire.AppendTag(be, 3, protowire.BytesType) // BuildEvent.progress
		be = protowire.AppendBytes(be, p)
		return be
	}
	raw, rawOK := CanonicalBuildEvent(progress("cc: caf\xe9 \xff\n"))
	fixed, fixedOK := CanonicalBuildEvent(progress("cc: caf\uFFFD \uFFFD\n"))
	if !rawOK || !fixedOK || !bytes.Equal(raw, fixed) {
		t.Errorf("canonical encodings differ (ok %v, %v):\n%q\n%q", rawOK, fixedOK, raw, fixed)
	}
}
