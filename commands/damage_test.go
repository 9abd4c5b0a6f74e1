package commands

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// Events of a made-up build, encoded by hand with protowire (field numbers
// from bepfile/proto/bes/bep/build_event_stream.proto), so that they can
// hold what Go's protobuf would refuse to write.

func dmgBytes(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func dmgVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func dmgCat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// dmgStarted: BuildEvent{id: {started: {}}, started: {uuid, command}}.
func dmgStarted(uuid string) []byte {
	return dmgCat(dmgBytes(1, dmgBytes(3, nil)), dmgBytes(5, dmgCat(dmgBytes(1, []byte(uuid)), dmgBytes(4, []byte("test")))))
}

// dmgProgress: BuildEvent{id: {progress: {opaque_count}}, progress: {stderr}}.
func dmgProgress(n uint64, stderr string) []byte {
	return dmgCat(dmgBytes(1, dmgBytes(2, dmgVarint(1, n))), dmgBytes(3, dmgBytes(2, []byte(stderr))))
}

// dmgTestResult: BuildEvent{id: {test_result: {label, run, shard, attempt}},
// test_result: {status, fields...}}.
func dmgTestResult(label string, status uint64, fields ...[]byte) []byte {
	id := dmgCat(dmgBytes(1, []byte(label)), dmgVarint(2, 1), dmgVarint(3, 1), dmgVarint(4, 1))
	return dmgCat(dmgBytes(1, dmgBytes(8, id)), dmgBytes(10, dmgCat(append([][]byte{dmgVarint(5, status)}, fields...)...)))
}

// dmgFinished: BuildEvent{id: {build_finished: {}}, finished: {exit_code:
// {name: SUCCESS}}, last_message: true}.
func dmgFinished() []byte {
	return dmgCat(dmgBytes(1, dmgBytes(9, nil)), dmgBytes(14, dmgBytes(3, dmgBytes(1, []byte("SUCCESS")))), dmgVarint(20, 1))
}

// dmgBEP frames BuildEvents as Bazel's binary file does.
func dmgBEP(evs ...[]byte) []byte {
	var b []byte
	for _, e := range evs {
		b = protowire.AppendBytes(b, e)
	}
	return b
}

// dmgOBE wraps payloads as a BES capture of stream b.3.i: each an Any of
// the type URL (Bazel's when "").
func dmgOBE(t *testing.T, typeURLs []string, payloads ...[]byte) []byte {
	t.Helper()
	var b []byte
	for i, p := range payloads {
		url := bepfile.BazelEventTypeURL
		if i < len(typeURLs) && typeURLs[i] != "" {
			url = typeURLs[i]
		}
		obe := &buildpb.OrderedBuildEvent{
			StreamId:       &buildpb.StreamId{BuildId: "b", InvocationId: "i", Component: buildpb.StreamId_TOOL},
			SequenceNumber: int64(i + 1),
			Event:          &buildpb.BuildEvent{Event: &buildpb.BuildEvent_BazelEvent{BazelEvent: &anypb.Any{TypeUrl: url, Value: p}}},
		}
		raw, err := proto.Marshal(obe)
		if err != nil {
			t.Fatal(err)
		}
		b = protowire.AppendBytes(b, raw)
	}
	return b
}

func dmgWrite(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ndjsonLines parses dump's NDJSON output into generic JSON values.
func ndjsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("invalid JSON line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	return lines
}

// dumpedStderr returns event.bazelEvent.progress.stderr of a dumped line.
func dumpedStderr(m map[string]any) (string, bool) {
	ev, _ := m["event"].(map[string]any)
	be, _ := ev["bazelEvent"].(map[string]any)
	p, _ := be["progress"].(map[string]any)
	s, ok := p["stderr"].(string)
	return s, ok
}

// TestDumpInvalidUTF8: a Progress event whose stderr is not UTF-8
// (bazelbuild/bazel#11125) is printed with U+FFFD, every other event is
// printed, one stderr line names the file, byte and event, and the exit
// status is 9; obe gives the bytes back unchanged.
func TestDumpInvalidUTF8(t *testing.T) {
	evs := [][]byte{dmgStarted("inv-utf8"), dmgProgress(1, "ok\n"), dmgProgress(2, "gcc: \xff\xfe caf\xe9\n"), dmgProgress(3, "done\n"), dmgFinished()}
	bep := dmgBEP(evs...)
	badOffset := len(dmgBEP(evs[:2]...))
	obe := dmgOBE(t, nil, evs...)
	obeOffset := 0
	for i, b := 0, obe; i < 2; i++ {
		_, n := protowire.ConsumeBytes(b)
		obeOffset += n
		b = b[n:]
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		offset int
		events int // lines dumped
	}{
		{"in.bep", bep, badOffset, 6}, // with the finish event bes adds
		{"in.obe", obe, obeOffset, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := dmgWrite(t, tc.name, tc.data)
			wantLine := fmt.Sprintf("bes: %s: byte %d (event 2): invalid UTF-8 in progress.stderr (replaced by U+FFFD)\n", in, tc.offset)
			out, stderr, code := runCLI(t, "dump", in, "--format", "ndjson")
			if code != ExitDamaged || stderr != wantLine {
				t.Errorf("ndjson: exit %d, stderr %q; want 9 and %q", code, stderr, wantLine)
			}
			lines := ndjsonLines(t, out)
			if len(lines) != tc.events {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), tc.events, out)
			}
			if s, _ := dumpedStderr(lines[2]); s != "gcc: \uFFFD\uFFFD caf\uFFFD\n" {
				t.Errorf("stderr printed as %q", s)
			}
			if s, _ := dumpedStderr(lines[3]); s != "done\n" {
				t.Errorf("the event after the bad one: %q", s)
			}
			// Every other format reads by the same rule.
			for _, format := range []string{"json", "table"} {
				out, stderr, code := runCLI(t, "dump", in, "--format", format)
				if code != ExitDamaged || stderr != wantLine || !strings.Contains(out, "progress") {
					t.Errorf("%s: exit %d, stderr %q", format, code, stderr)
				}
				if format == "json" && !strings.Contains(out, `gcc: \ufffd\ufffd caf\ufffd`) && !strings.Contains(out, "gcc: \uFFFD\uFFFD caf\uFFFD") {
					t.Errorf("json: the repaired stderr is missing:\n%s", out)
				}
			}
			// query sees the repaired string, and prints what matched.
			out, stderr, code = runCLI(t, "query", `event.progress.stderr.contains("caf")`, in, "--format", "ndjson")
			if code != ExitDamaged || stderr != wantLine || len(ndjsonLines(t, out)) != 1 {
				t.Errorf("query: exit %d, stderr %q, out %q", code, stderr, out)
			}
			// obe decodes nothing: the bytes as read (for a BEP file, as
			// wrapped), no complaint.
			out, stderr, code = runCLI(t, "dump", in, "--format", "obe")
			if code != ExitOK || stderr != "" || !bytes.Contains([]byte(out), []byte("gcc: \xff\xfe caf\xe9\n")) {
				t.Errorf("obe: exit %d, stderr %q", code, stderr)
			}
			if tc.name == "in.obe" && out != string(tc.data) {
				t.Error("obe: not the bytes that were read")
			}
			// From the store: the stored bytes are unchanged, the line
			// names the stream and event.
			storeDir := filepath.Join(t.TempDir(), "store")
			if _, stderr, code := runCLI(t, "ingest", "--store", storeDir, in); code != ExitOK {
				t.Fatalf("ingest: exit %d: %s", code, stderr)
			}
			key := "inv-utf8.3.inv-utf8"
			if tc.name == "in.obe" {
				key = "b.3.i"
			}
			stored, _, _ := runCLI(t, "dump", "--store", storeDir, key, "--format", "obe")
			if !bytes.Contains([]byte(stored), []byte("gcc: \xff\xfe caf\xe9\n")) {
				t.Error("the stored bytes were changed")
			}
			out, stderr, code = runCLI(t, "dump", "--store", storeDir, key, "--format", "ndjson")
			if want := "bes: stream " + key + ", event 3: invalid UTF-8 in progress.stderr (replaced by U+FFFD)\n"; code != ExitDamaged || stderr != want || len(ndjsonLines(t, out)) != tc.events {
				t.Errorf("stored: exit %d, stderr %q; want %q", code, stderr, want)
			}
		})
	}
}

// TestDumpUnknownAny: an event of another build tool (an Any of a type bes
// does not know) is printed as protojson prints an Any it cannot resolve,
// its type and base64 value; the others are printed; exit 9.
func TestDumpUnknownAny(t *testing.T) {
	foreign := []byte("\x0a\x05hello\x10\x2a") // another tool's message
	data := dmgOBE(t, []string{"", "type.googleapis.com/othertool.Event"}, dmgStarted("i"), foreign, dmgFinished())
	in := dmgWrite(t, "capture.obe", data)
	out, stderr, code := runCLI(t, "dump", in, "--format", "ndjson")
	if code != ExitDamaged || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, in+": byte ") ||
		!strings.Contains(stderr, `(event 1): payload of type "type.googleapis.com/othertool.Event" unknown to bes`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	lines := ndjsonLines(t, out)
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	be := lines[1]["event"].(map[string]any)["bazelEvent"].(map[string]any)
	if be["@type"] != "type.googleapis.com/othertool.Event" || be["value"] != base64.StdEncoding.EncodeToString(foreign) || len(be) != 2 {
		t.Errorf("the foreign event printed as %v", be)
	}
	if lines[1]["sequenceNumber"] != "2" || lines[2]["sequenceNumber"] != "3" {
		t.Errorf("sequence numbers %v %v", lines[1]["sequenceNumber"], lines[2]["sequenceNumber"])
	}
}

// TestDumpCorruptAndUndecodable: a corrupt nested message is decoded in
// part; an event whose BuildEvent cannot be decoded at all is an error
// object in its place, with its stream, sequence number and where it was
// read; a frame the reader skipped is an error object too; every other
// event is printed.
func TestDumpCorruptAndUndecodable(t *testing.T) {
	// TestResult.test_action_output (File) claims 40 bytes of 6.
	badFile := dmgCat(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.BytesType), 40), []byte("short"))
	corrupt := dmgTestResult("//t:t", 4, dmgBytes(9, []byte("boom")), dmgBytes(2, badFile))
	undecodable := append(dmgProgress(7, "x"), 0x52, 50) // field 10 claiming 50 bytes, at the top level
	evs := [][]byte{dmgStarted("i"), corrupt, undecodable, dmgFinished()}
	data := dmgOBE(t, nil, evs...)
	in := dmgWrite(t, "capture.obe", data)
	out, stderr, code := runCLI(t, "dump", in, "--format", "ndjson")
	if code != ExitDamaged || strings.Count(stderr, "\n") != 2 {
		t.Errorf("exit %d, stderr %q; want 9 and two lines", code, stderr)
	}
	if !strings.Contains(stderr, "(event 1): corrupt testResult.testActionOutput: field 1: unexpected EOF (decoded in part)") ||
		!strings.Contains(stderr, "(event 2): invalid BuildEvent: field 10: unexpected EOF (printed as an error object") {
		t.Errorf("stderr %q", stderr)
	}
	lines := ndjsonLines(t, out)
	if len(lines) != 4 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	tr := lines[1]["event"].(map[string]any)["bazelEvent"].(map[string]any)["testResult"].(map[string]any)
	if tr["status"] != "FAILED" || tr["statusDetails"] != "boom" {
		t.Errorf("the corrupt event lost what could be decoded: %v", tr)
	}
	eo := lines[2]
	if eo["error"] != "invalid BuildEvent: field 10: unexpected EOF" || eo["sequenceNumber"] != "3" || eo["file"] != in ||
		eo["index"] != float64(2) || eo["offset"] == nil || eo["streamId"] == nil || eo["event"] != nil {
		t.Errorf("error object %v", eo)
	}

	// A BEP frame the reader skips (one bad frame among good ones) is an
	// error object in its place too.
	bep := dmgBEP(dmgStarted("inv-skip"), dmgProgress(1, "a"), []byte{0x0a, 0x05, 0x12}, dmgProgress(2, "b"), dmgFinished())
	in = dmgWrite(t, "skip.bep", bep)
	out, stderr, code = runCLI(t, "dump", in, "--format", "ndjson")
	off := len(dmgBEP(dmgStarted("inv-skip"), dmgProgress(1, "a")))
	want := fmt.Sprintf("bes: %s: byte %d (event 2): invalid BuildEvent: BuildEvent field 1: unexpected EOF\n", in, off)
	if code != ExitDamaged || stderr != want {
		t.Errorf("skipped frame: exit %d, stderr %q; want %q", code, stderr, want)
	}
	lines = ndjsonLines(t, out)
	if len(lines) != 6 || lines[2]["error"] != "invalid BuildEvent: BuildEvent field 1: unexpected EOF" ||
		lines[2]["offset"] != float64(off) || lines[2]["index"] != float64(2) || lines[2]["file"] != in {
		t.Errorf("skipped frame: %d lines, third %v", len(lines), lines[2])
	}
	if s, _ := dumpedStderr(lines[3]); s != "b" {
		t.Errorf("the event after the skipped frame: %v", lines[3])
	}
	// --format json: the skipped frame after the streams.
	out, _, code = runCLI(t, "dump", in, "--format", "json")
	var arr []map[string]any
	if err := json.Unmarshal([]byte(out), &arr); err != nil || code != ExitDamaged {
		t.Fatalf("json: exit %d, %v:\n%s", code, err, out)
	}
	if len(arr) != 2 || len(arr[0]["events"].([]any)) != 5 || arr[1]["error"] == nil || arr[1]["offset"] != float64(off) {
		t.Errorf("json: %v", arr)
	}
}

// TestDumpOutOfSync: garbage after N good events (frames out of sync)
// gives exactly the N events and one line naming the file, byte, event and
// what was expected.
func TestDumpOutOfSync(t *testing.T) {
	evs := [][]byte{dmgStarted("inv-sync"), dmgProgress(1, "one"), dmgProgress(2, "two"), dmgTestResult("//t:t", 1)}
	good := dmgBEP(evs...)
	// An event whose length prefix is 4 bytes short (a rewriting tool
	// that lengthened a string), then more events, all read out of sync.
	next := dmgProgress(3, "three/rewritten/longer")
	shifted := dmgCat(protowire.AppendVarint(nil, uint64(len(next)-4)), next, dmgBEP(dmgProgress(4, "four"), dmgFinished()))
	in := dmgWrite(t, "sync.bep", dmgCat(good, shifted))
	out, stderr, code := runCLI(t, "dump", in, "--format", "ndjson")
	lines := ndjsonLines(t, out)
	if len(lines) != 4 {
		t.Errorf("%d events dumped, want exactly the 4 good ones:\n%s", len(lines), out)
	}
	want := fmt.Sprintf("bes: %s: byte %d (event 4): invalid BuildEvent: BuildEvent field 3: unexpected EOF; the next frame is no BuildEvent either: frames out of sync from here (want varint-delimited BuildEvent messages), the rest of the input is not read\n", in, len(good))
	if code != ExitError || stderr != want {
		t.Errorf("exit %d, stderr\n%q; want 1 and\n%q", code, stderr, want)
	}
	// Every reading command stops there alike.
	out, _, _ = runCLI(t, "dump", in)
	if n := strings.Count(out, "\n"); n != 5 { // header and 4 rows
		t.Errorf("table: %d lines:\n%s", n, out)
	}
}

// TestUnknownValuesOneRule: an enum value and a field that bes does not
// know give the same decoded class from the binary file and from the JSON
// file (a TestStatus without a name), and each is said once per field on
// stderr.
func TestUnknownValuesOneRule(t *testing.T) {
	// Binary: status 99 twice, 98 once, and a field 77 in TestResult.
	bep := dmgBEP(dmgStarted("inv-new"),
		dmgTestResult("//t:a", 99, dmgVarint(77, 1)),
		dmgTestResult("//t:b", 99),
		dmgTestResult("//t:c", 98),
		dmgFinished())
	binIn := dmgWrite(t, "new.bep", bep)
	out, stderr, code := runCLI(t, "dump", binIn, "--format", "ndjson")
	wantBin := "bes: " + binIn + ": testResult.status: value 99 unknown to bes (a newer Bazel?)\n" +
		"bes: " + binIn + ": testResult: field 77 unknown to bes (a newer Bazel?)\n"
	if code != ExitOK || stderr != wantBin {
		t.Errorf("binary: exit %d, stderr\n%q; want\n%q", code, stderr, wantBin)
	}
	lines := ndjsonLines(t, out)
	statusOf := func(m map[string]any) any {
		return m["event"].(map[string]any)["bazelEvent"].(map[string]any)["testResult"].(map[string]any)["status"]
	}
	if statusOf(lines[1]) != float64(99) || statusOf(lines[3]) != float64(98) {
		t.Errorf("binary statuses %v %v", statusOf(lines[1]), statusOf(lines[3]))
	}

	// JSON: the same invocation as Bazel 9 might write it, with a status
	// name and a field bes does not know.
	started := `{"id":{"started":{}},"started":{"uuid":"inv-new","command":"test"}}`
	result := func(label string) string {
		return `{"id":{"testResult":{"label":"` + label + `","run":1,"shard":1,"attempt":1}},"testResult":{"status":"NEW_STATUS","futureField":{"x":1}}}`
	}
	finished := `{"id":{"buildFinished":{}},"finished":{"exitCode":{"name":"SUCCESS"}},"lastMessage":true}`
	jsonIn := dmgWrite(t, "new.json", []byte(strings.Join([]string{started, result("//t:a"), result("//t:b"), finished}, "\n")+"\n"))
	out, stderr, code = runCLI(t, "dump", jsonIn, "--format", "ndjson")
	wantJSON := []string{
		"bes: " + jsonIn + `: testResult.status: value "NEW_STATUS" unknown to bes (a newer Bazel?)`,
		"bes: " + jsonIn + `: testResult: field "futureField" unknown to bes (a newer Bazel?)`,
	}
	if code != ExitOK || strings.Count(stderr, "\n") != 2 || !strings.Contains(stderr, wantJSON[0]) || !strings.Contains(stderr, wantJSON[1]) {
		t.Errorf("JSON: exit %d, stderr\n%q; want\n%q", code, stderr, wantJSON)
	}
	lines = ndjsonLines(t, out)
	st, ok := statusOf(lines[1]).(float64)
	if !ok || st != float64(bepfile.UnknownEnumNumber("NEW_STATUS")) {
		t.Errorf("JSON status %v, want the number bes gives the name", statusOf(lines[1]))
	}
	// Both are a TestStatus number without a name: the same class.
	for _, n := range []int32{99, int32(st)} {
		if _, named := bes.TestStatus_name[n]; named {
			t.Errorf("status %d has a name", n)
		}
	}
	// query by status: the unknown statuses match as numbers, and the
	// notices are said once.
	_, stderr, code = runCLI(t, "query", "event.test_result.status == 99", binIn)
	if code != ExitOK || stderr != wantBin {
		t.Errorf("query: exit %d, stderr %q", code, stderr)
	}
}
