package commands

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

const nonPassing = `kind == "testResult" && event.test_result.status != PASSED`

func TestQueryCLI(t *testing.T) {
	td := func(name string) string { return filepath.Join("..", "testdata", name) }
	storeDir := t.TempDir()
	s := "--store=" + storeDir
	if _, stderr, code := runCLI(t, "ingest", s, td("test_mixed.bep"), td("test_cached.bep"), td("bes_test_mixed.obe"), td("bes_test_mixed.lifecycle.obe")); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	cases := []cliCase{
		// The 5 test results of test_mixed that did not pass: //tests:fail
		// attempts 1 and 2, //tests:flaky attempt 1, //tests:timeout
		// attempts 1 and 2. The expression and the filter flags agree.
		{name: "non-passing test results", args: []string{"query", nonPassing, td("test_mixed.bep")}, golden: "query_test_mixed_failing.txt"},
		{name: "filter flags", args: []string{"query", "--kind", "testResult", "--status", "failed,TIMEOUT", td("test_mixed.bep")}, golden: "query_test_mixed_failing.txt"},
		{name: "repeated filter flags", args: []string{"query", "-k", "testResult", "-s", "failed", "-s", "timeout", td("test_mixed.bep")}, golden: "query_test_mixed_failing.txt"},
		{name: "filter flags and EXPR", args: []string{"query", "--kind", "testSummary,testResult", "--label", "^//tests:", "event.test_result.status != PASSED && !has(event.test_summary)", td("test_mixed.bep")}, golden: "query_test_mixed_failing.txt"},
		{name: "expression after the file", args: []string{"query", "--kind", "testResult", td("test_mixed.bep"), "event.test_result.status in [FAILED, TIMEOUT]"}, golden: "query_test_mixed_failing.txt"},
		// //tests:fail: configured, completed, 2 testResults, testSummary.
		{name: "label", args: []string{"query", "--label", "//tests:fa", td("test_mixed.bep")}, golden: "query_label_fail.txt"},
		// The flaky test's summaries in three stored streams: test_mixed,
		// test_cached and the BES capture (which has times).
		{name: "store --match", args: []string{"query", s, "--match", `\.3\.`, "--kind", "testSummary", "--status", "FLAKY"}, golden: "query_store_flaky.txt"},
		// An invocation id names the tool stream and the invocation's
		// lifecycle stream.
		{name: "store by invocation id", args: []string{"query", s, `kind in ["componentStreamFinished", "invocationAttemptStarted"]`, "8b58a6b7-1857-43e5-b701-ebbabc33fc5c"},
			golden: "query_invocation_envelope.txt"},
		{name: "nothing matched", args: []string{"query", "--status", "failed", td("build_ok.bep")}, stdout: "SEQ  KIND  ID\n", code: ExitNoData},
		{name: "nothing matched, json", args: []string{"query", "-o", "json", "label == '//nothing'", td("build_ok.bep")}, stdout: "[]\n", code: ExitNoData},
		{name: "bad expression", args: []string{"query", `seq > 0 && kidn == "testResult"`, td("test_mixed.bep")},
			stderr: "bes: query: 1:12: undeclared reference to 'kidn' (variables: kind, label, seq, time, stream, event, envelope)\n", code: ExitUsage},
		{name: "bad field on line 2", args: []string{"query", "kind == \"testResult\" &&\n  event.test_result.staus == FAILED", td("test_mixed.bep")},
			stderr: "bes: query: 2:20: undefined field 'staus'\n", code: ExitUsage},
		{name: "not a bool", args: []string{"query", "label", td("test_mixed.bep")}, stderr: "query: 1:1: the expression is string, want bool", code: ExitUsage},
		{name: "neither stream nor expression", args: []string{"query", s, "--kind", "testResult", "kidn == 1"}, stderr: `query: "kidn == 1" is neither a stream nor a valid EXPR: 1:1: undeclared reference`, code: ExitUsage},
		{name: "file instead of EXPR", args: []string{"query", td("test_mixed.bep")}, stderr: "is a file: give the EXPR first", code: ExitUsage},
		{name: "no EXPR", args: []string{"query"}, stderr: "query: name an EXPR", code: ExitUsage},
		{name: "no stream", args: []string{"query", s, "seq == 1"}, stderr: "query: name a STREAM", code: ExitUsage},
		{name: "unknown kind", args: []string{"query", "--kind", "testResults", td("test_mixed.bep")}, stderr: `--kind: unknown kind "testResults"`, code: ExitUsage},
		{name: "unknown status", args: []string{"query", "--status", "broken", td("test_mixed.bep")}, stderr: `--status: unknown status "broken"`, code: ExitUsage},
		{name: "bad label regex", args: []string{"query", "--label", "(", td("test_mixed.bep")}, stderr: "--label: invalid label pattern", code: ExitUsage},
		{name: "evaluation error", args: []string{"query", `{"testResult": true}[kind]`, td("test_mixed.bep")},
			stderr: "query: stream 657fb236-551f-4f88-ab84-e114caf29e48.3.657fb236-551f-4f88-ab84-e114caf29e48, seq 1: no such key: started\n", code: ExitError},
		// Over the cost limit (issue 13): eight nested map()s took 5.6 GB
		// and 34 s; now one error line and exit 10, from files and from
		// the store. --cost-limit moves the limit.
		{name: "over budget", args: []string{"query", nestedMaps(8), td("test_mixed.bep")},
			stderr: "bes: query: stream 657fb236-551f-4f88-ab84-e114caf29e48.3.657fb236-551f-4f88-ab84-e114caf29e48, seq 1: the expression exceeds the cost limit of 1000000 per event", code: ExitOverBudget},
		{name: "over budget, store", args: []string{"query", s, "--match", ".", "-o", "json", nestedMaps(8)},
			stderr: "seq 1: the expression exceeds the cost limit of 1000000 per event", code: ExitOverBudget},
		{name: "over a lower budget", args: []string{"query", "--cost-limit", "1000", `kind == "started" && ` + nestedMaps(3), td("test_mixed.bep")},
			stderr: "seq 1: the expression exceeds the cost limit of 1000 per event", code: ExitOverBudget},
		{name: "within budget", args: []string{"query", `kind == "started" && ` + nestedMaps(5), td("test_mixed.bep")}, stdout: "1    started", code: ExitOK},
		{name: "cost limit 0", args: []string{"query", "--cost-limit", "0", "true", td("test_mixed.bep")}, stderr: "--cost-limit: want a positive number", code: ExitUsage},
		{name: "truncated input", args: []string{"query", "--kind", "testResult", td("truncated-test_mixed.bep")},
			stdout: "testResult", stderr: "byte 24361 (event 62)", code: ExitPartial},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, c.args...)
			if code != c.code {
				t.Errorf("exit status %d, want %d\nstderr: %s", code, c.code, stderr)
			}
			if c.stderr == "" && stderr != "" {
				t.Errorf("unexpected stderr: %s", stderr)
			}
			if c.stderr != "" {
				if !strings.Contains(stderr, c.stderr) {
					t.Errorf("stderr %q does not contain %q", stderr, c.stderr)
				}
				if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
					t.Errorf("stderr must be one line: %q", stderr)
				}
			}
			if c.stdout != "" && !strings.Contains(stdout, c.stdout) {
				t.Errorf("stdout does not contain %q:\n%s", c.stdout, stdout)
			}
			if c.golden != "" {
				checkGolden(t, c.golden, stdout)
			}
		})
	}
}

// TestQueryEqualsDumpFiltered: the json, ndjson and obe outputs of a query
// are dump's outputs with the events the expression rejects left out, for
// two files at once. Which events those are is decided here independently,
// by decoding each dumped event: test_mixed has 5 non-passing test results,
// test_cached 5 (the cached FLAKY result of //tests:flaky, and two attempts
// each of //tests:fail and //tests:timeout, which ran again).
func TestQueryEqualsDumpFiltered(t *testing.T) {
	files := []string{filepath.Join("..", "testdata", "test_mixed.bep"), filepath.Join("..", "testdata", "test_cached.bep")}
	run := func(args ...string) string {
		t.Helper()
		stdout, stderr, code := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		return stdout
	}
	keep := func(obe *buildpb.OrderedBuildEvent) bool {
		be := &bes.BuildEvent{}
		if err := obe.GetEvent().GetBazelEvent().UnmarshalTo(be); err != nil {
			return false
		}
		return be.GetTestResult() != nil && be.GetTestResult().GetStatus() != bes.TestStatus_PASSED
	}

	t.Run("obe", func(t *testing.T) {
		dump := splitFrames(t, run(append([]string{"dump", "-o", "obe"}, files...)...))
		var want bytes.Buffer
		kept := 0
		for _, frame := range dump {
			obe := &buildpb.OrderedBuildEvent{}
			if err := proto.Unmarshal(frame, obe); err != nil {
				t.Fatal(err)
			}
			if keep(obe) {
				want.Write(binary.AppendUvarint(nil, uint64(len(frame))))
				want.Write(frame)
				kept++
			}
		}
		if kept != 10 {
			t.Fatalf("%d non-passing test results in dump's output, want 10", kept)
		}
		if got := run(append([]string{"query", "-o", "obe", nonPassing}, files...)...); got != want.String() {
			t.Errorf("query -o obe differs from dump -o obe filtered (%d bytes, want %d)", len(got), want.Len())
		}
	})

	t.Run("ndjson", func(t *testing.T) {
		var want []string
		for _, line := range strings.SplitAfter(run(append([]string{"dump", "-o", "ndjson"}, files...)...), "\n") {
			if line == "" {
				continue
			}
			if keep(obeFromJSON(t, line)) {
				want = append(want, line)
			}
		}
		if len(want) != 10 {
			t.Fatalf("%d non-passing test results in dump's output, want 10", len(want))
		}
		if got := run(append([]string{"query", "-o", "ndjson", nonPassing}, files...)...); got != strings.Join(want, "") {
			t.Errorf("query -o ndjson differs from dump -o ndjson filtered:\n%s", lineDiff(strings.Join(want, ""), got))
		}
	})

	t.Run("json", func(t *testing.T) {
		var dump []map[string]any
		if err := json.Unmarshal([]byte(run(append([]string{"dump", "-o", "json"}, files...)...)), &dump); err != nil {
			t.Fatal(err)
		}
		if len(dump) != 2 {
			t.Fatalf("dump printed %d streams, want 2", len(dump))
		}
		var want []any
		for _, st := range dump {
			var evs []any
			for _, ev := range st["events"].([]any) {
				b, _ := json.Marshal(ev)
				if keep(obeFromJSON(t, string(b))) {
					evs = append(evs, ev)
				}
			}
			if len(evs) != 5 {
				t.Errorf("stream %v: %d non-passing test results, want 5", st["streamId"], len(evs))
			}
			want = append(want, map[string]any{"streamId": st["streamId"], "events": evs})
		}
		var got []any
		if err := json.Unmarshal([]byte(run(append([]string{"query", "-o", "json", nonPassing}, files...)...)), &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("query -o json differs from dump -o json filtered:\n got %v\nwant %v", got, want)
		}
	})
}

func obeFromJSON(t *testing.T, line string) *buildpb.OrderedBuildEvent {
	t.Helper()
	obe := &buildpb.OrderedBuildEvent{}
	// The Bazel payload is an Any: resolve its type with the registry
	// that holds build_event_stream.BuildEvent (linked in by bes).
	if err := protojson.Unmarshal([]byte(line), obe); err != nil {
		t.Fatalf("%v\n%s", err, line)
	}
	return obe
}

// splitFrames splits varint-delimited output into its frames.
func splitFrames(t *testing.T, s string) [][]byte {
	t.Helper()
	var frames [][]byte
	br := bufio.NewReader(strings.NewReader(s))
	for {
		n, err := binary.ReadUvarint(br)
		if err == io.EOF {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
}

// TestQueryAcrossStreams counts, with the store, the non-passing test
// results of every stored tool stream: test_mixed and the BES capture of
// the same test run (5 each), test_cached (5); the lifecycle streams have
// none. The figures are checked against an independent decoding of the
// input files.
func TestQueryAcrossStreams(t *testing.T) {
	td := func(name string) string { return filepath.Join("..", "testdata", name) }
	s := "--store=" + t.TempDir()
	if _, stderr, code := runCLI(t, "ingest", s, td("test_mixed.bep"), td("test_cached.bep"), td("bes_test_mixed.obe"), td("bes_test_mixed.lifecycle.obe")); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	stdout, stderr, code := runCLI(t, "query", s, "--match", "", "-o", "ndjson", nonPassing)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		got[obeFromJSON(t, line).GetStreamId().GetInvocationId()]++
	}
	want := map[string]int{}
	for _, name := range []string{"test_mixed.bep", "test_cached.bep"} {
		inv, n := countNonPassing(t, td(name), false)
		want[inv] += n
	}
	inv, n := countNonPassing(t, td("bes_test_mixed.obe"), true)
	want[inv] += n
	if len(want) != 3 || !reflect.DeepEqual(got, want) {
		t.Errorf("non-passing test results per invocation: %v, want %v", got, want)
	}
	for inv, n := range want {
		if n != 5 {
			t.Errorf("invocation %s: %d non-passing test results, want 5", inv, n)
		}
	}
}

// countNonPassing decodes a .bep (or, with obe, a capture of
// OrderedBuildEvents) with protodelim and returns the invocation id and the
// number of test results that did not pass.
func countNonPassing(t *testing.T, path string, obe bool) (string, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	inv, n := "", 0
	for {
		be := &bes.BuildEvent{}
		if obe {
			o := &buildpb.OrderedBuildEvent{}
			if err := protodelim.UnmarshalFrom(br, o); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			inv = o.GetStreamId().GetInvocationId()
			if o.GetEvent().GetBazelEvent() == nil {
				continue
			}
			if err := o.GetEvent().GetBazelEvent().UnmarshalTo(be); err != nil {
				t.Fatal(err)
			}
		} else if err := protodelim.UnmarshalFrom(br, be); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if u := be.GetStarted().GetUuid(); u != "" && !obe {
			inv = u
		}
		if be.GetTestResult() != nil && be.GetTestResult().GetStatus() != bes.TestStatus_PASSED {
			n++
		}
	}
	return inv, n
}

// nestedMaps is an expression of n nested map()s over lists of ten (10^(n+1)
// list elements; five cost 344,433 in CEL's count, six 3.4 million).
func nestedMaps(n int) string {
	const l = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
	e := l
	for i := 0; i < n; i++ {
		e = l + ".map(x" + string(rune('a'+i)) + ", " + e + ")"
	}
	return "size(" + e + ") > 0"
}
