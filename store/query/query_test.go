package query

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/store"
)

func testdata(name string) string { return filepath.Join("..", "..", "testdata", name) }

// readStreams reads every stream of a file of testdata/ into memory.
func readStreams(t testing.TB, name string) []*store.Stream {
	t.Helper()
	r, err := bepfile.Open(testdata(name), bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mem := store.New()
	for {
		s, ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		mem.GetStreamFor(s).Append(*ev)
	}
	return mem.Streams()
}

// matches runs f over the streams and returns "seq kind label" per match.
func matches(t testing.TB, f store.Filter, streams ...*store.Stream) []string {
	t.Helper()
	var out []string
	for _, s := range streams {
		for ev, err := range s.Query(context.Background(), f) {
			if err != nil {
				t.Fatal(err)
			}
			v := newView(ev)
			out = append(out, fmt.Sprintf("%d %s %s", v.seq(), v.kind(), v.label()))
		}
	}
	return out
}

func mustCompile(t testing.TB, expr string, opts ...Option) *Filter {
	t.Helper()
	f, err := Compile(expr, opts...)
	if err != nil {
		t.Fatalf("Compile(%q): %v", expr, err)
	}
	return f
}

// testAttempt names one testResult: label, run, shard, attempt.
type testAttempt struct {
	Label               string
	Run, Shard, Attempt int32
}

// bazelTestResults decodes a Bazel binary file independently of bes's
// reader (protodelim and the generated types) and returns the test
// results whose status keep accepts.
func bazelTestResults(t *testing.T, name string, keep func(bes.TestStatus) bool) []testAttempt {
	t.Helper()
	f, err := os.Open(testdata(name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var out []testAttempt
	for {
		ev := &bes.BuildEvent{}
		if err := protodelim.UnmarshalFrom(br, ev); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		id := ev.GetId().GetTestResult()
		if id == nil || !keep(ev.GetTestResult().GetStatus()) {
			continue
		}
		out = append(out, testAttempt{id.GetLabel(), id.GetRun(), id.GetShard(), id.GetAttempt()})
	}
	return out
}

// queriedTestResults runs f over a file and returns the test results it
// matched, decoded.
func queriedTestResults(t *testing.T, f store.Filter, streams ...*store.Stream) []testAttempt {
	t.Helper()
	var out []testAttempt
	for _, s := range streams {
		for ev, err := range s.Query(context.Background(), f) {
			if err != nil {
				t.Fatal(err)
			}
			v := newView(ev)
			be := &bes.BuildEvent{}
			if err := proto.Unmarshal(v.payload(), be); err != nil {
				t.Fatal(err)
			}
			id := be.GetId().GetTestResult()
			if id == nil {
				t.Fatalf("seq %d matched, kind %s: not a test result", v.seq(), v.kind())
			}
			out = append(out, testAttempt{id.GetLabel(), id.GetRun(), id.GetShard(), id.GetAttempt()})
		}
	}
	return out
}

func sortAttempts(a []testAttempt) []testAttempt {
	slices.SortFunc(a, func(x, y testAttempt) int {
		return strings.Compare(fmt.Sprint(x), fmt.Sprint(y))
	})
	return a
}

// TestNonPassingTestResults: test_mixed has 14 testResults; 5 of them did
// not pass: //tests:flaky attempt 1 (FAILED), //tests:fail attempts 1 and 2
// (FAILED), //tests:timeout attempts 1 and 2 (TIMEOUT). The expression, the
// status filter, and the expression through the envelope all find exactly
// those that an independent decoding of the file finds.
func TestNonPassingTestResults(t *testing.T) {
	streams := readStreams(t, "test_mixed.bep")
	all := bazelTestResults(t, "test_mixed.bep", func(bes.TestStatus) bool { return true })
	if len(all) != 14 {
		t.Fatalf("test_mixed.bep has %d test results, the corpus manifest says 14", len(all))
	}
	want := sortAttempts(bazelTestResults(t, "test_mixed.bep", func(s bes.TestStatus) bool { return s != bes.TestStatus_PASSED }))
	wantExact := []testAttempt{
		{"//tests:fail", 1, 1, 1}, {"//tests:fail", 1, 1, 2},
		{"//tests:flaky", 1, 1, 1},
		{"//tests:timeout", 1, 1, 1}, {"//tests:timeout", 1, 1, 2},
	}
	if fmt.Sprint(want) != fmt.Sprint(wantExact) {
		t.Fatalf("independent decoding: %v, want %v", want, wantExact)
	}
	status, err := Status("failed", "Timeout")
	if err != nil {
		t.Fatal(err)
	}
	kind, err := Kind("testResult")
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]store.Filter{
		"expr":                      mustCompile(t, `kind == "testResult" && event.test_result.status != PASSED`),
		"qualified enum":            mustCompile(t, `kind == "testResult" && event.test_result.status != build_event_stream.TestStatus.PASSED`),
		"enum in container":         mustCompile(t, `has(event.test_result) && event.test_result.status in [TestStatus.FAILED, TestStatus.TIMEOUT]`),
		"envelope":                  mustCompile(t, `kind == "testResult" && envelope.event.bazel_event.test_result.status != PASSED`),
		"shortcuts":                 And(kind, status),
		"shortcut and expression":   And(kind, mustCompile(t, `event.test_result.status != build_event_stream.PASSED`)),
		"expression with a nil And": And(nil, mustCompile(t, `kind == "testResult" && event.test_result.status != 1`), nil),
	} {
		t.Run(name, func(t *testing.T) {
			got := sortAttempts(queriedTestResults(t, f, streams...))
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	streams := readStreams(t, "test_mixed.bep")
	for _, c := range []struct {
		statuses []string
		want     []string // "kind label" of the matches
	}{
		{[]string{"flaky"}, []string{"testSummary //tests:flaky"}},
		{[]string{"timeout"}, []string{"testResult //tests:timeout", "testResult //tests:timeout", "testSummary //tests:timeout"}},
		// FAILED is a test status and a target status: the targets of
		// test_mixed all built, so only tests match.
		{[]string{"FAILED"}, []string{"testResult //tests:fail", "testResult //tests:fail", "testResult //tests:flaky", "testSummary //tests:fail"}},
		{[]string{"no_status"}, nil},
	} {
		f, err := Status(c.statuses...)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range matches(t, f, streams...) {
			got = append(got, m[strings.IndexByte(m, ' ')+1:])
		}
		slices.Sort(got)
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("Status(%v) = %q, want %q", c.statuses, got, c.want)
		}
	}
	// 16 targets built in build_ok, 3 failed in build_keep_going_fail
	// (fails_to_build, depends_on_failure, missing_input).
	for _, c := range []struct {
		file, status string
		want         int
	}{
		{"build_ok.bep", "success", 16},
		{"build_ok.bep", "failed", 0},
		{"build_keep_going_fail.bep", "FAILED", 3},
	} {
		f, err := Status(c.status)
		if err != nil {
			t.Fatal(err)
		}
		got := matches(t, f, readStreams(t, c.file)...)
		if len(got) != c.want {
			t.Errorf("%s: Status(%s) matched %d: %q, want %d", c.file, c.status, len(got), got, c.want)
		}
		cel := mustCompile(t, fmt.Sprintf(`kind == "completed" && event.completed.success == %v`, c.status == "success"))
		if n := len(matches(t, cel, readStreams(t, c.file)...)); n != c.want {
			t.Errorf("%s: the expression matched %d, want %d", c.file, n, c.want)
		}
	}
	if _, err := Status("passd"); err == nil || !strings.Contains(err.Error(), `unknown status "passd"`) {
		t.Errorf("Status(passd): %v", err)
	}
}

// TestLabel: the events of test_mixed whose id carries the label
// //tests:fail are its targetConfigured, targetCompleted, two testResults
// and testSummary; //tests:fa matches the same (there is no other //tests:fa…
// target). The label filter and the CEL variable agree.
func TestLabel(t *testing.T) {
	streams := readStreams(t, "test_mixed.bep")
	f, err := Label("//tests:fa")
	if err != nil {
		t.Fatal(err)
	}
	got := matches(t, f, streams...)
	var kinds []string
	for _, m := range got {
		parts := strings.Fields(m)
		if parts[2] != "//tests:fail" {
			t.Errorf("matched %q", m)
		}
		kinds = append(kinds, parts[1])
	}
	slices.Sort(kinds)
	if want := []string{"completed", "configured", "testResult", "testResult", "testSummary"}; fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("kinds %v, want %v", kinds, want)
	}
	viaCEL := matches(t, mustCompile(t, `label.matches("//tests:fa")`), streams...)
	if fmt.Sprint(viaCEL) != fmt.Sprint(got) {
		t.Errorf("label.matches: %q, want %q", viaCEL, got)
	}
	// The action of build_keep_going_fail that failed carries its label in
	// ActionCompletedId.label (field 2); aborted events in their
	// configured or unconfigured label ids.
	keep := readStreams(t, "build_keep_going_fail.bep")
	for expr, want := range map[string][]string{
		`kind == "action" && !event.action.success`: {"action //broken:fails_to_build"},
		`kind == "aborted"`:                         {"aborted //broken:bad_dep", "aborted //broken:does_not_exist.txt", "aborted //no/such/package:file.txt"},
	} {
		var got []string
		for _, m := range matches(t, mustCompile(t, expr), keep...) {
			got = append(got, m[strings.IndexByte(m, ' ')+1:])
		}
		slices.Sort(got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %q, want %q", expr, got, want)
		}
	}
	if _, err := Label("("); err == nil {
		t.Error("Label(\"(\"): no error")
	}
}

// TestLabelOfEveryEvent checks the label read from the wire against the
// label of the decoded id, found by reflection, for every event of the
// sample files. In test_mixed, 37 events have a label under //tests:: the
// configured, completed and testSummary events of its 8 tests there, and 13
// of the 14 test results (the 14th is //cc:greet_test's).
func TestLabelOfEveryEvent(t *testing.T) {
	counts := map[string]int{}
	for _, name := range []string{"build_ok.bep", "build_keep_going_fail.bep", "test_mixed.bep", "test_cached.bep", "query.bep", "bes_test_mixed.obe"} {
		for _, s := range readStreams(t, name) {
			for ev := range s.Query(context.Background(), nil) {
				v := newView(ev)
				want := ""
				if p := v.payload(); p != nil {
					be := &bes.BuildEvent{}
					if err := proto.Unmarshal(p, be); err != nil {
						t.Fatal(err)
					}
					want = reflectLabel(be.GetId())
				}
				if got := v.label(); got != want {
					t.Fatalf("%s seq %d: label %q, want %q", name, v.seq(), got, want)
				}
				if strings.HasPrefix(want, "//tests:") {
					counts[name]++
				}
			}
		}
	}
	if counts["test_mixed.bep"] != 37 {
		t.Errorf("%d events of test_mixed.bep have a //tests: label, want 37", counts["test_mixed.bep"])
	}
}

// reflectLabel returns the field label of the set member of a decoded
// BuildEventId.
func reflectLabel(id *bes.BuildEventId) string {
	m := id.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("id"))
	if fd == nil {
		return ""
	}
	sub := m.Get(fd).Message()
	lf := sub.Descriptor().Fields().ByName("label")
	if lf == nil {
		return ""
	}
	return sub.Get(lf).String()
}

// TestEnvelopeEvents: events that are not Bazel events have the JSON name
// of the envelope's event as kind, a time, and an empty event.
func TestEnvelopeEvents(t *testing.T) {
	life := readStreams(t, "bes_test_mixed.lifecycle.obe")
	got := matches(t, mustCompile(t, `time != null && time > timestamp("2020-01-01T00:00:00Z") && !has(event.id)`), life...)
	slices.Sort(got)
	want := []string{"1 buildEnqueued ", "1 invocationAttemptStarted ", "2 buildFinished ", "2 invocationAttemptFinished "}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("lifecycle events: %q, want %q", got, want)
	}
	tool := readStreams(t, "bes_test_mixed.obe")
	if got := matches(t, mustCompile(t, `kind == "componentStreamFinished" && envelope.event.component_stream_finished.type == google.devtools.build.v1.BuildEvent.BuildComponentStreamFinished.FinishType.FINISHED`), tool...); fmt.Sprint(got) != "[106 componentStreamFinished ]" {
		t.Errorf("componentStreamFinished: %q", got)
	}
	// Bazel's own file has no times; the capture has one on every event.
	if got := matches(t, mustCompile(t, `time != null`), readStreams(t, "test_mixed.bep")...); len(got) != 0 {
		t.Errorf("time != null matched %d events of a .bep", len(got))
	}
	if got := matches(t, mustCompile(t, `time != null && seq == envelope.sequence_number && stream.endsWith(envelope.stream_id.invocation_id)`), tool...); len(got) != 106 {
		t.Errorf("matched %d events of the capture, want 106", len(got))
	}
	k, err := Kind("buildEnqueued", "componentStreamFinished")
	if err != nil {
		t.Fatal(err)
	}
	if got := matches(t, k, append(life, tool...)...); fmt.Sprint(got) != "[1 buildEnqueued  106 componentStreamFinished ]" {
		t.Errorf("Kind: %q", got)
	}
	if _, err := Kind("testResults"); err == nil || !strings.Contains(err.Error(), `unknown kind "testResults"`) {
		t.Errorf("Kind(testResults): %v", err)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, c := range []struct{ expr, want string }{
		{`kidn == "testResult"`, "1:1: undeclared reference to 'kidn' (variables: kind, label, seq, time, stream, event, envelope)"},
		{`kind == "testResult" && kidn`, "1:25: undeclared reference to 'kidn'"},
		{`event.test_reslt.status == FAILED`, "1:6: undefined field 'test_reslt'"},
		{"kind == \"testResult\" &&\n  event.test_result.status == PASSD", "2:31: undeclared reference to 'PASSD'"},
		{`kind`, "1:1: the expression is string, want bool"},
		{`kind ==`, "1:8: Syntax error"},
		{`seq == "1"`, "1:5: found no matching overload for '_==_' applied to '(int, string)'"},
	} {
		_, err := Compile(c.expr)
		var qe *Error
		if !errors.As(err, &qe) {
			t.Errorf("Compile(%q) = %v, want an *Error", c.expr, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Compile(%q) = %q, want %q…", c.expr, err, c.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("Compile(%q): the error is not one line: %q", c.expr, err)
		}
	}
}

// TestEvalError: an event the expression cannot judge ends the query with
// an error naming the stream and the sequence number.
func TestEvalError(t *testing.T) {
	streams := readStreams(t, "test_mixed.bep")
	f := mustCompile(t, `{"testResult": 1}[kind] == 1`)
	var err error
	for _, err = range streams[0].Query(context.Background(), f) {
		if err != nil {
			break
		}
	}
	var ee *EvalError
	if !errors.As(err, &ee) {
		t.Fatalf("got %v, want an *EvalError", err)
	}
	if ee.Stream != streams[0].Key() || ee.Seq != 1 || !strings.Contains(ee.Error(), "no such key: started") {
		t.Errorf("got %+v (%v)", ee, ee)
	}
	// dyn results are checked per event.
	f = mustCompile(t, `envelope.event.bazel_event.id`)
	if _, err := f.Match(streams[0], firstEvent(streams[0])); err == nil || !strings.Contains(err.Error(), "want bool") {
		t.Errorf("non-bool result: %v", err)
	}
}

func firstEvent(s *store.Stream) *bepfile.Event {
	for ev := range s.Query(context.Background(), nil) {
		return ev
	}
	return nil
}

// TestLazyDecoding counts the payloads decoded: none for expressions that
// do not reach event, only the test results when kind comes first.
func TestLazyDecoding(t *testing.T) {
	streams := readStreams(t, "test_mixed.bep") // 105 Bazel events + componentStreamFinished
	for _, c := range []struct {
		expr             string
		matched, decoded int
	}{
		{`kind == "testResult"`, 14, 0},
		{`label.startsWith("//tests:") && seq > 0 && stream != "" && time == null`, 37, 0},
		{`kind == "testResult" && event.test_result.status != PASSED`, 5, 14},
		{`event.test_result.status != PASSED && kind == "testResult"`, 5, 105},
		{`event.last_message || event.id.test_result.label == "//tests:fail" && event.test_result.status == FAILED`, 3, 105},
	} {
		decoded := 0
		f := mustCompile(t, c.expr, withDecodeHook(func() { decoded++ }))
		if got := len(matches(t, f, streams...)); got != c.matched || decoded != c.decoded {
			t.Errorf("%s: matched %d, decoded %d; want %d and %d", c.expr, got, decoded, c.matched, c.decoded)
		}
	}
}

func BenchmarkQueryKindOnly(b *testing.B) {
	benchmarkQuery(b, `kind == "testResult"`)
}

func BenchmarkQueryEvent(b *testing.B) {
	benchmarkQuery(b, `event.test_result.status == FAILED`)
}

func BenchmarkQueryKindThenEvent(b *testing.B) {
	benchmarkQuery(b, `kind == "testResult" && event.test_result.status == FAILED`)
}

func BenchmarkQueryStatusFilter(b *testing.B) {
	k, _ := Kind("testResult")
	s, _ := Status("failed")
	benchmarkFilter(b, And(k, s), 0)
}

// benchmarkQuery runs the expression over large_test (32030 events; 1000
// test results, all PASSED).
func benchmarkQuery(b *testing.B, expr string) {
	benchmarkFilter(b, mustCompile(b, expr), -1)
}

func benchmarkFilter(b *testing.B, f store.Filter, want int) {
	streams := readStreams(b, "large_test.bep.gz")
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, err := range streams[0].Query(context.Background(), f) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if want >= 0 && n != want {
			b.Fatalf("%d matches, want %d", n, want)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(streams[0].Len()), "ns/event")
}

// nestedMaps is an expression of n nested map()s over lists of ten:
// 10^(n+1) list elements, CEL cost and memory multiplying with each level
// (issue 13: eight took 5.6 GB and 34 s without a cost limit).
func nestedMaps(n int) string {
	const l = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
	e := l
	for i := 0; i < n; i++ {
		e = fmt.Sprintf("%s.map(x%d, %s)", l, i, e)
	}
	return "size(" + e + ") > 0"
}

// TestCostLimit: an expression over the cost limit stops on the first
// event with an *EvalError wrapping a *CostError (ErrCostLimit), spending
// no more than about its limit; one under it runs (issue 13).
func TestCostLimit(t *testing.T) {
	streams := readStreams(t, "test_mixed.bep")
	ev := firstEvent(streams[0])
	// Five map()s (a cost of 344,433) are within the default limit.
	if ok, err := mustCompile(t, nestedMaps(5)).Match(streams[0], ev); !ok || err != nil {
		t.Fatalf("5 map()s: %v, %v; want true within the default limit", ok, err)
	}
	// Six (10^7 list elements, a cost of about 3.4 million) are not.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := mustCompile(t, nestedMaps(6)).Match(streams[0], ev)
	runtime.ReadMemStats(&after)
	t.Logf("6 map()s: %d MB allocated", (after.TotalAlloc-before.TotalAlloc)>>20)
	var ee *EvalError
	var ce *CostError
	if !errors.As(err, &ee) || !errors.As(err, &ce) || !errors.Is(err, ErrCostLimit) {
		t.Fatalf("6 map()s: got %v, want an *EvalError wrapping a *CostError", err)
	}
	if ce.Limit != DefaultCostLimit || ee.Seq != 1 || ee.Stream != streams[0].Key() {
		t.Errorf("6 map()s: got %+v in %+v", ce, ee)
	}
	if !strings.Contains(err.Error(), "exceeds the cost limit of 1000000 per event") {
		t.Errorf("message %q", err)
	}
	// Without the limit this evaluation allocates about 130 MB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("6 map()s allocated %d MB before they were stopped", alloc>>20)
	}
	// WithCostLimit moves the limit both ways.
	if _, err := mustCompile(t, nestedMaps(4), WithCostLimit(1000)).Match(streams[0], ev); !errors.Is(err, ErrCostLimit) {
		t.Errorf("4 map()s with a limit of 1000: %v, want ErrCostLimit", err)
	}
	if ok, err := mustCompile(t, nestedMaps(6), WithCostLimit(10_000_000)).Match(streams[0], ev); !ok || err != nil {
		t.Errorf("6 map()s with a limit of 10 million: %v, %v", ok, err)
	}
}

// TestCostLimitRealQueries: comprehensions over every event of a large
// real build (the corpus's 4,000 test targets) stay within the default
// limit.
func TestCostLimitRealQueries(t *testing.T) {
	streams := readStreams(t, "large_test.bep.gz")
	for _, expr := range []string{
		`event.named_set_of_files.files.exists(f, f.name.endsWith(".nothing"))`,
		`event.named_set_of_files.files.filter(f, f.name.contains("test")).map(f, f.name + "!").size() > 1000000`,
		`event.test_summary.passed.exists(f, f.uri.matches("x$")) || event.test_result.test_action_output.exists(f, f.name == "")`,
		`event.children.exists(c, c.target_completed.label.matches("^//nothing")) || event.children.size() > 100000`,
	} {
		if got := matches(t, mustCompile(t, expr), streams...); len(got) != 0 {
			t.Errorf("%s matched %d events, want none", expr, len(got))
		}
	}
}

// TestInterrupt: an evaluation stops soon after the context of WithContext
// is cancelled (Ctrl-C), whatever its cost limit, with the context's error.
func TestInterrupt(t *testing.T) {
	streams := readStreams(t, "test_mixed.bep")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	_, err := mustCompile(t, nestedMaps(8), WithCostLimit(math.MaxUint64), WithContext(ctx)).Match(streams[0], firstEvent(streams[0]))
	var ee *EvalError
	if !errors.As(err, &ee) || !errors.Is(err, context.Canceled) || errors.Is(err, ErrCostLimit) {
		t.Fatalf("got %v, want an *EvalError wrapping context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stopped after %v", d)
	}
}
