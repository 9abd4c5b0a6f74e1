package bepfile

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// Field numbers used to build events by hand, from
// bepfile/proto/bes/bep/build_event_stream.proto.
const (
	tProgressID       = 2  // BuildEventId.progress
	tTestResultID     = 8  // BuildEventId.test_result (TestResultId)
	tProgress         = 3  // BuildEvent.progress
	tTestResult       = 10 // BuildEvent.test_result
	tStdout           = 1  // Progress.stdout
	tStderr           = 2  // Progress.stderr
	tTRStatus         = 5  // TestResult.status
	tTRStatusDetails  = 9  // TestResult.status_details
	tTROutput         = 2  // TestResult.test_action_output (File)
	tTRCachedLocally  = 4  // TestResult.cached_locally
	tFileName         = 1  // File.name
	tFileURI          = 2  // File.uri
	tTestResultIDLbl  = 1  // TestResultId.label
	tOpaqueCount      = 1  // ProgressId.opaque_count
	tTestStatusFailed = 4  // TestStatus.FAILED
)

// msg concatenates encoded fields.
func msg(fields ...[]byte) []byte { return bytes.Join(fields, nil) }

func bytesField(num protowire.Number, v []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func varintField(num protowire.Number, v uint64) []byte {
	b := protowire.AppendTag(nil, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// progressEvent encodes a BuildEvent{id: {progress: {opaque_count: n}},
// progress: {stdout, stderr}} with the strings' bytes as given.
func progressEvent(n uint64, stdout, stderr string) []byte {
	return msg(
		bytesField(1, bytesField(tProgressID, varintField(tOpaqueCount, n))),
		bytesField(tProgress, msg(bytesField(tStdout, []byte(stdout)), bytesField(tStderr, []byte(stderr)))),
	)
}

// testResultEvent encodes a BuildEvent with a TestResult of label and the
// given TestResult fields.
func testResultEvent(label string, fields ...[]byte) []byte {
	return msg(
		bytesField(1, bytesField(tTestResultID, bytesField(tTestResultIDLbl, []byte(label)))),
		bytesField(tTestResult, msg(fields...)),
	)
}

func TestDecodeBuildEventInvalidUTF8(t *testing.T) {
	payload := progressEvent(3, "ok\n", "compiling \xff\xfe caf\xe9\n")
	orig := bytes.Clone(payload)
	// Go's protobuf refuses it: the reason this rule exists.
	if err := proto.Unmarshal(payload, &bes.BuildEvent{}); err == nil {
		t.Fatal("proto.Unmarshal accepted invalid UTF-8; the test input is wrong")
	}
	be := &bes.BuildEvent{}
	d, err := DecodeBuildEvent(payload, be)
	if err != nil {
		t.Fatalf("DecodeBuildEvent: %v", err)
	}
	if got, want := be.GetProgress().GetStderr(), "compiling \uFFFD\uFFFD caf\uFFFD\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
	if got := be.GetProgress().GetStdout(); got != "ok\n" {
		t.Errorf("stdout = %q, want %q", got, "ok\n")
	}
	if got := be.GetId().GetProgress().GetOpaqueCount(); got != 3 {
		t.Errorf("id opaque_count = %d, want 3", got)
	}
	if !slices.Equal(d.Repaired, []string{"progress.stderr"}) || len(d.Corrupt) != 0 || len(d.Unknown) != 0 {
		t.Errorf("damage = %+v, want Repaired [progress.stderr] only", d)
	}
	if !d.Damaged() {
		t.Error("Damaged() = false")
	}
	if got, want := d.String(), "invalid UTF-8 in progress.stderr (replaced by U+FFFD)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if !bytes.Equal(payload, orig) {
		t.Error("the payload was modified")
	}
}

func TestDecodeBuildEventNestedUTF8(t *testing.T) {
	// A string two messages deep (TestResult.test_action_output[1].name),
	// after a valid element of the same repeated field.
	payload := testResultEvent("//t:t",
		varintField(tTRStatus, tTestStatusFailed),
		bytesField(tTROutput, msg(bytesField(tFileName, []byte("test.log")), bytesField(tFileURI, []byte("file:///x/test.log")))),
		bytesField(tTROutput, msg(bytesField(tFileName, []byte("out\x80.xml")))),
	)
	be := &bes.BuildEvent{}
	d, err := DecodeBuildEvent(payload, be)
	if err != nil {
		t.Fatal(err)
	}
	outs := be.GetTestResult().GetTestActionOutput()
	if len(outs) != 2 || outs[0].GetName() != "test.log" || outs[1].GetName() != "out\uFFFD.xml" {
		t.Errorf("test_action_output = %v", outs)
	}
	if be.GetTestResult().GetStatus() != bes.TestStatus_FAILED || be.GetId().GetTestResult().GetLabel() != "//t:t" {
		t.Errorf("status %v label %q", be.GetTestResult().GetStatus(), be.GetId().GetTestResult().GetLabel())
	}
	if !slices.Equal(d.Repaired, []string{"testResult.testActionOutput.name"}) {
		t.Errorf("Repaired = %q", d.Repaired)
	}
}

func TestDecodeBuildEventCorruptNested(t *testing.T) {
	// test_action_output's File claims 40 bytes inside a message of 12: the
	// TestResult is not well-formed from there on.
	file := protowire.AppendTag(nil, tFileName, protowire.BytesType)
	file = protowire.AppendVarint(file, 40)
	file = append(file, "short"...)
	tr := msg(
		varintField(tTRStatus, tTestStatusFailed),
		bytesField(tTRStatusDetails, []byte("boom")),
		bytesField(tTROutput, file),
		varintField(tTRCachedLocally, 1),
	)
	payload := testResultEvent("//t:t", tr)
	if err := proto.Unmarshal(payload, &bes.BuildEvent{}); err == nil {
		t.Fatal("proto.Unmarshal accepted the corrupt message; the test input is wrong")
	}
	be := &bes.BuildEvent{}
	d, err := DecodeBuildEvent(payload, be)
	if err != nil {
		t.Fatalf("DecodeBuildEvent: %v", err)
	}
	r := be.GetTestResult()
	if r.GetStatus() != bes.TestStatus_FAILED || r.GetStatusDetails() != "boom" || be.GetId().GetTestResult().GetLabel() != "//t:t" {
		t.Errorf("decoded %v", be)
	}
	// The File is decoded up to its fault (nothing), the field after it kept.
	if len(r.GetTestActionOutput()) != 1 || r.GetTestActionOutput()[0].GetName() != "" || !r.GetCachedLocally() {
		t.Errorf("test_action_output %v cached_locally %v", r.GetTestActionOutput(), r.GetCachedLocally())
	}
	if want := []string{"testResult.testActionOutput: field 1: unexpected EOF"}; !slices.Equal(d.Corrupt, want) {
		t.Errorf("Corrupt = %q, want %q", d.Corrupt, want)
	}
	if !strings.Contains(d.String(), "corrupt testResult.testActionOutput") {
		t.Errorf("String() = %q", d.String())
	}
}

func TestDecodeBuildEventWrongWireType(t *testing.T) {
	// TestResult.status (an enum: varint) as a fixed32: left out, damaged.
	tr := msg(protowire.AppendFixed32(protowire.AppendTag(nil, tTRStatus, protowire.Fixed32Type), 4), bytesField(tTRStatusDetails, []byte("d")))
	be := &bes.BuildEvent{}
	d, err := DecodeBuildEvent(testResultEvent("//t:t", tr), be)
	if err != nil {
		t.Fatal(err)
	}
	if be.GetTestResult().GetStatus() != bes.TestStatus_NO_STATUS || be.GetTestResult().GetStatusDetails() != "d" {
		t.Errorf("decoded %v", be.GetTestResult())
	}
	if want := []string{"testResult.status: wire type fixed32, want varint"}; !slices.Equal(d.Corrupt, want) {
		t.Errorf("Corrupt = %q, want %q", d.Corrupt, want)
	}
}

func TestDecodeBuildEventTopLevelMalformed(t *testing.T) {
	good := progressEvent(1, "a", "b")
	payload := append(bytes.Clone(good), bytesField(tTestResult, nil)[0], 50) // field 10, 50 bytes, none there
	be := &bes.BuildEvent{}
	d, err := DecodeBuildEvent(payload, be)
	if !errors.Is(err, ErrNotBuildEvent) {
		t.Fatalf("err = %v, want ErrNotBuildEvent", err)
	}
	if got, want := err.Error(), "invalid BuildEvent: field 10: unexpected EOF"; got != want {
		t.Errorf("err = %q, want %q", got, want)
	}
	if be.GetProgress().GetStderr() != "b" {
		t.Errorf("the fields before the fault were not decoded: %v", be)
	}
	if want := []string{"BuildEvent: field 10: unexpected EOF"}; !slices.Equal(d.Corrupt, want) {
		t.Errorf("Corrupt = %q", d.Corrupt)
	}
	if _, err := CheckBuildEvent(payload); !errors.Is(err, ErrNotBuildEvent) {
		t.Errorf("CheckBuildEvent: err = %v", err)
	}
}

func TestDecodeBuildEventUnknown(t *testing.T) {
	// A newer Bazel: TestResult.status 99, an unknown field 42 in
	// TestResult, an unknown payload field 90 in the BuildEvent, status
	// given twice (the second is the value).
	tr := msg(varintField(tTRStatus, 98), varintField(tTRStatus, 99), bytesField(42, []byte("new")))
	payload := append(testResultEvent("//t:t", tr), varintField(90, 7)...)
	be := &bes.BuildEvent{}
	d, err := DecodeBuildEvent(payload, be)
	if err != nil {
		t.Fatal(err)
	}
	if d.Damaged() {
		t.Errorf("Damaged() = true for unknown values: %+v", d)
	}
	if got := be.GetTestResult().GetStatus(); got != 99 {
		t.Errorf("status = %d, want 99", got)
	}
	if len(be.GetTestResult().ProtoReflect().GetUnknown()) == 0 || len(be.ProtoReflect().GetUnknown()) == 0 {
		t.Error("unknown fields were not kept")
	}
	want := []Unknown{
		{Path: "testResult.status", Value: "98"}, // one per field: the first value
		{Path: "testResult", Field: "42"},
		{Path: "", Field: "90"},
	}
	if !slices.Equal(d.Unknown, want) {
		t.Errorf("Unknown = %+v, want %+v", d.Unknown, want)
	}
	lines := []string{}
	for _, u := range d.Unknown {
		lines = append(lines, u.String())
	}
	wantLines := []string{
		"testResult.status: value 98 unknown to bes (a newer Bazel?)",
		"testResult: field 42 unknown to bes (a newer Bazel?)",
		"BuildEvent: field 90 unknown to bes (a newer Bazel?)",
	}
	if !slices.Equal(lines, wantLines) {
		t.Errorf("lines = %q, want %q", lines, wantLines)
	}
}

func TestNotices(t *testing.T) {
	var n Notices
	a := []Unknown{{Path: "testResult.status", Value: "99"}, {Path: "testResult", Field: "42"}}
	b := []Unknown{{Path: "testResult.status", Value: "100"}, {Path: "", Field: "42"}}
	got := n.New("x.bep", a)
	got = append(got, n.New("x.bep", b)...)
	got = append(got, n.New("x.bep", a)...)
	got = append(got, n.New("y.bep", a[:1])...)
	want := []string{
		"x.bep: testResult.status: value 99 unknown to bes (a newer Bazel?)",
		"x.bep: testResult: field 42 unknown to bes (a newer Bazel?)",
		"x.bep: BuildEvent: field 42 unknown to bes (a newer Bazel?)",
		"y.bep: testResult.status: value 99 unknown to bes (a newer Bazel?)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	var none *Notices
	if l := none.New("x", a); l != nil {
		t.Errorf("nil Notices said %q", l)
	}
}

func TestCheckBuildEventCleanAllocatesNothing(t *testing.T) {
	payload := testResultEvent("//t:t", varintField(tTRStatus, tTestStatusFailed),
		bytesField(tTROutput, msg(bytesField(tFileName, []byte("test.log")))))
	allocs := testing.AllocsPerRun(100, func() {
		d, err := CheckBuildEvent(payload)
		if err != nil || d.Damaged() || len(d.Unknown) > 0 {
			t.Fatalf("%+v %v", d, err)
		}
	})
	if allocs != 0 {
		t.Errorf("CheckBuildEvent of a clean event: %v allocations, want 0", allocs)
	}
}

func TestDecodeBuildEventMatchesUnmarshal(t *testing.T) {
	// On every event of the sample files, the lenient decode is
	// proto.Unmarshal's, with nothing to report.
	for _, name := range []string{"../testdata/test_mixed.bep", "../testdata/build_keep_going_fail.bep"} {
		r, err := Open(name, Options{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for {
			_, ev, err := r.Next()
			if err != nil {
				break
			}
			if !ev.IsBazel() {
				continue
			}
			n++
			want := &bes.BuildEvent{}
			if err := proto.Unmarshal(ev.Payload, want); err != nil {
				t.Fatal(err)
			}
			got := &bes.BuildEvent{}
			d, err := DecodeBuildEvent(ev.Payload, got)
			if err != nil || d.Damaged() || len(d.Unknown) > 0 {
				t.Errorf("%s event %d: %+v %v", name, ev.Seq, d, err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("%s event %d: decoded differently", name, ev.Seq)
			}
		}
		r.Close()
		if n < 50 {
			t.Errorf("%s: %d events", name, n)
		}
	}
}

func TestUnknownEnumNumber(t *testing.T) {
	a, b := UnknownEnumNumber("NEW_STATUS"), UnknownEnumNumber("OTHER")
	if a == b || a < 1<<29 || a >= 1<<29+1<<28 || b < 1<<29 {
		t.Errorf("UnknownEnumNumber: %d %d", a, b)
	}
	if _, ok := bes.TestStatus_name[int32(a)]; ok {
		t.Errorf("%d has a name", a)
	}
}

// BenchmarkDecodeBuildEvent compares the lenient decode with
// proto.Unmarshal, and the walk alone, on the events of a real file.
func BenchmarkDecodeBuildEvent(b *testing.B) {
	var payloads [][]byte
	size := 0
	r, err := Open("../testdata/test_mixed.bep", Options{})
	if err != nil {
		b.Fatal(err)
	}
	for {
		_, ev, err := r.Next()
		if err != nil {
			break
		}
		if ev.IsBazel() {
			payloads = append(payloads, ev.Payload)
			size += len(ev.Payload)
		}
	}
	r.Close()
	be := &bes.BuildEvent{}
	b.Run("Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			for _, p := range payloads {
				proto.Unmarshal(p, be)
			}
		}
	})
	b.Run("Check", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			for _, p := range payloads {
				CheckBuildEvent(p)
			}
		}
	})
	b.Run("Decode", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			for _, p := range payloads {
				DecodeBuildEvent(p, be)
			}
		}
	})
}

// FuzzDecodeBuildEvent: whatever the bytes, DecodeBuildEvent does not
// panic, leaves the input alone, and gives a message protobuf can encode
// (every string valid UTF-8); when proto.Unmarshal accepts the bytes and
// nothing is damaged, it gives proto.Unmarshal's message; CheckBuildEvent
// finds what DecodeBuildEvent finds.
func FuzzDecodeBuildEvent(f *testing.F) {
	f.Add(progressEvent(1, "ok", "bad \xff"))
	f.Add(testResultEvent("//t:t", varintField(tTRStatus, 99), bytesField(42, []byte("x"))))
	f.Add(testResultEvent("//t:t", bytesField(tTROutput, []byte{0x0a, 0x28, 's'})))
	r, err := Open("../testdata/test_mixed.bep", Options{})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		_, ev, err := r.Next()
		if err != nil {
			break
		}
		if ev.IsBazel() {
			f.Add(ev.Payload)
		}
	}
	r.Close()
	f.Fuzz(func(t *testing.T, payload []byte) {
		orig := bytes.Clone(payload)
		be := &bes.BuildEvent{}
		d, err := DecodeBuildEvent(payload, be)
		if !bytes.Equal(payload, orig) {
			t.Fatal("the payload was modified")
		}
		if _, merr := proto.Marshal(be); merr != nil {
			t.Fatalf("the decoded message does not encode: %v (damage %+v, err %v)", merr, d, err)
		}
		cd, cerr := CheckBuildEvent(payload)
		if (cerr == nil) != (err == nil) || len(cd.Repaired) != len(d.Repaired) || len(cd.Unknown) != len(d.Unknown) {
			t.Fatalf("CheckBuildEvent %+v %v, DecodeBuildEvent %+v %v", cd, cerr, d, err)
		}
		want := &bes.BuildEvent{}
		if proto.Unmarshal(payload, want) == nil && !d.Damaged() && !proto.Equal(be, want) {
			t.Fatal("decoded otherwise than proto.Unmarshal")
		}
		if err != nil && !errors.Is(err, ErrNotBuildEvent) {
			t.Fatalf("error %v does not wrap ErrNotBuildEvent", err)
		}
	})
}
