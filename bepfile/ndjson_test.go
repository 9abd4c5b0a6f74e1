package bepfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// jsonLines returns the non-blank lines of an NDJSON file.
func jsonLines(t testing.TB, data []byte) [][]byte {
	t.Helper()
	var lines [][]byte
	for l := range bytes.Lines(data) {
		if l = bytes.TrimSpace(l); len(l) > 0 {
			lines = append(lines, l)
		}
	}
	return lines
}

// indented returns the JSON value v pretty-printed as `jq .` lays it out
// (two spaces a level), without a final newline.
func indented(t testing.TB, v []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, v, "", "  "); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// joinValues joins values with sep (and ends the stream with end), and
// returns the offset of each value in the result.
func joinValues(values [][]byte, sep, end string) ([]byte, []int64) {
	var out []byte
	var starts []int64
	for i, v := range values {
		if i > 0 {
			out = append(out, sep...)
		}
		starts = append(starts, int64(len(out)))
		out = append(out, v...)
	}
	return append(out, end...), starts
}

// prettyValues pretty-prints every line of an NDJSON file.
func prettyValues(t testing.TB, data []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, l := range jsonLines(t, data) {
		out = append(out, indented(t, l))
	}
	return out
}

// TestPrettyJSON: JSON BuildEvents read the same whatever their layout:
// pretty-printed over several lines, several on one line, mixed with
// Bazel's one per line; each event knows the offset and index of its value.
func TestPrettyJSON(t *testing.T) {
	one := testdata(t, "test_mixed.json")
	_, want := mustRead(t, one, "one", Options{})
	lines := jsonLines(t, one)
	pretty := prettyValues(t, one)
	if len(lines) < 100 || len(want) != len(lines)+1 {
		t.Fatalf("%d lines, %d events", len(lines), len(want))
	}
	if bytes.Count(pretty[0], []byte("\n")) < 10 {
		t.Fatalf("the first value is not pretty-printed:\n%s", pretty[0])
	}
	mixed := make([][]byte, len(lines))
	for i := range lines {
		if mixed[i] = lines[i]; i%2 == 0 {
			mixed[i] = pretty[i]
		}
	}
	crlf := make([][]byte, len(pretty))
	for i, v := range pretty {
		crlf[i] = bytes.ReplaceAll(v, []byte("\n"), []byte("\r\n"))
	}
	for _, tc := range []struct {
		name      string
		values    [][]byte
		sep, end  string
		formatted Format
	}{
		{"pretty", pretty, "\n", "\n", FormatAuto},
		{"pretty, forced", pretty, "\n", "\n", FormatNDJSON},
		{"pretty crlf, no final newline", crlf, "\r\n", "", FormatAuto},
		{"pretty, blank lines between", pretty, "\n\n  \n", "\n", FormatAuto},
		{"all on one line", lines, "", "\n", FormatAuto},
		{"one line, blanks between", lines, " \t ", "", FormatAuto},
		{"mixed layouts", mixed, "\n", "\n", FormatAuto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, starts := joinValues(tc.values, tc.sep, tc.end)
			r, got := mustRead(t, data, "in", Options{Format: tc.formatted})
			if r.Format() != FormatNDJSON {
				t.Errorf("format %v", r.Format())
			}
			compareItems(t, got, want)
			for i, it := range got[:len(starts)] {
				if off, idx, ok := it.ev.Position(); !ok || off != starts[i] || idx != i {
					t.Fatalf("event %d: Position() = %d, %d, %v; want %d, %d", i, off, idx, ok, starts[i], i)
				}
			}
		})
	}

	// Longer than the reader's buffer: values across its end, and one value
	// of 3 MiB, pretty-printed.
	prettyFile, _ := joinValues(pretty, "\n", "\n")
	reps := bufSize/len(prettyFile) + 2
	_, wantMany := mustRead(t, bytes.Repeat(one, reps), "one", Options{})
	_, gotMany := mustRead(t, bytes.Repeat(prettyFile, reps), "pretty", Options{})
	compareItems(t, gotMany, wantMany)

	big, err := protojson.Marshal(bigProgress(t, 3<<20, true))
	if err != nil {
		t.Fatal(err)
	}
	bigLines := [][]byte{big, lines[1], lines[2]}
	bigPretty := [][]byte{indented(t, big), pretty[1], pretty[2]}
	_, wantBig := mustRead(t, cat(bytes.Join(bigLines, []byte("\n")), []byte("\n")), "one", Options{})
	data, starts := joinValues(bigPretty, "\n", "\n")
	_, gotBig := mustRead(t, data, "pretty", Options{})
	compareItems(t, gotBig, wantBig)
	if off, idx, _ := gotBig[2].ev.Position(); off != starts[2] || idx != 2 {
		t.Errorf("after the big value: Position() = %d, %d; want %d, 2", off, idx, starts[2])
	}
}

// TestPrettyJSONCut: a pretty-printed stream cut inside a value gives the
// values before it, then a truncation at the start of the cut value; cut
// between values, it ends cleanly.
func TestPrettyJSONCut(t *testing.T) {
	pretty := prettyValues(t, testdata(t, "test_mixed.json"))
	data, starts := joinValues(pretty, "\n", "\n")
	full := readFull(t, data, Options{})
	c := newCutReader(Options{Format: FormatNDJSON})
	auto := newCutReader(Options{})
	for k, start := range starts {
		end := int(start) + len(pretty[k])
		if k%5 == 0 || k == len(starts)-1 {
			n := end - int(start)
			for _, cut := range []int{1, 2, n / 7, n / 3, n / 2, n - 2, n - 1} {
				checkCut(t, c, full, data, int(start)+cut, k, start)
				if k > 0 {
					checkCut(t, auto, full, data, int(start)+cut, k, start)
				}
			}
		}
		if k > 0 {
			checkCut(t, c, full, data, int(start), k, -1)   // before the value
			checkCut(t, c, full, data, int(start)-1, k, -1) // before its newline
		}
	}
	// The message names the line where the cut value starts.
	k := 40
	cut := data[:int(starts[k])+len(pretty[k])/2]
	r, err := NewReader(bytes.NewReader(cut), "cut.json", Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAll(t, r)
	line := bytes.Count(data[:starts[k]], []byte("\n")) + 1
	want := "cut.json: byte " + strconv.Itoa(int(starts[k])) + " (event 40): line " + strconv.Itoa(line) + ": truncated JSON: unexpected EOF"
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

// TestJSONGarbage: what is not a JSON BuildEvent between values (garbage,
// a value of another kind, a value cut off in the middle of the file) is
// skipped as one damaged event, named by the byte offset and index where
// it starts; every event around it is read.
func TestJSONGarbage(t *testing.T) {
	lines := jsonLines(t, testdata(t, "test_mixed.json"))[:6]
	pretty := make([][]byte, len(lines))
	for i, l := range lines {
		pretty[i] = append(indented(t, l), '\n')
		lines[i] = append(bytes.Clone(l), '\n')
	}
	clean := bytes.Join(pretty, nil)
	_, want := mustRead(t, clean, "clean", Options{})
	if len(want) != 6 {
		t.Fatalf("%d events", len(want))
	}
	broken := bytes.Replace(pretty[3], []byte(`"id": {`), []byte(`"id": }`), 1)
	if bytes.Equal(broken, pretty[3]) {
		t.Fatal("no id to break")
	}
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name   string
		data   []byte
		at     int   // offset of what is skipped
		events []int // the events read, of want
		msg    string
	}{
		{"garbage line", join(pretty[0], pretty[1], pretty[2], []byte("I have removed this line for privacy reasons.\n"), pretty[3], pretty[4], pretty[5]),
			len(join(pretty[:3]...)), []int{0, 1, 2, 3, 4, 5}, "invalid character 'I' looking for the beginning of a value"},
		{"garbage over lines, a '{' not starting one", join(pretty[0], pretty[1], pretty[2], []byte("xx\nyy {\n  {zz\n"), pretty[3], pretty[4], pretty[5]),
			len(join(pretty[:3]...)), []int{0, 1, 2, 3, 4, 5}, "invalid character 'x'"},
		{"garbage after a value on its line", join(pretty[0], pretty[1], pretty[2][:len(pretty[2])-1], []byte(" ]x\n"), pretty[3], pretty[4], pretty[5]),
			len(join(pretty[:3]...)), []int{0, 1, 2, 3, 4, 5}, "invalid character ']'"},
		{"an array", join(pretty[0], pretty[1], pretty[2], []byte("[\n  1,\n  2\n]\n"), pretty[3], pretty[4], pretty[5]),
			len(join(pretty[:3]...)), []int{0, 1, 2, 3, 4, 5}, "unexpected token ["},
		{"a number", join(pretty[0], pretty[1], pretty[2], []byte("42"), pretty[3], pretty[4], pretty[5]),
			len(join(pretty[:3]...)), []int{0, 1, 2, 3, 4, 5}, "unexpected token 42"},
		{"an id of the wrong type", join(pretty[0], pretty[1], pretty[2], []byte("{\n  \"id\": 5\n}\n"), pretty[3], pretty[4], pretty[5]),
			len(join(pretty[:3]...)), []int{0, 1, 2, 3, 4, 5}, "unexpected token 5"},
		{"a syntax error in a pretty value", join(pretty[0], pretty[1], pretty[2], broken, pretty[4], pretty[5]),
			len(join(pretty[:3]...)), []int{0, 1, 2, 4, 5}, "invalid character '}' looking for the beginning of a value"},
		{"a pretty value cut off, then values", join(pretty[0], pretty[1], pretty[2], pretty[3][:len(pretty[3])/2], []byte("\n"), pretty[3], pretty[4], pretty[5]),
			len(join(pretty[:3]...)), []int{0, 1, 2, 3, 4, 5}, "cut off: not closed before the next value"},
		{"a line cut off, then lines", join(lines[0], lines[1], lines[2], lines[3][:len(lines[3])/2], []byte("\n"), lines[3], lines[4], lines[5]),
			len(join(lines[:3]...)), []int{0, 1, 2, 3, 4, 5}, "cut off: not closed before the next value"},
		{"a line cut off, then the last line", join(lines[0], lines[1], lines[2], lines[3], lines[4][:len(lines[4])/2], []byte("\n"), lines[5][:len(lines[5])-1]),
			len(join(lines[:4]...)), []int{0, 1, 2, 3, 5}, "cut off: not closed before the next value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, errs := readErr(t, tc.data, Options{})
			if len(errs) != 1 || !errs[0].Resumable() {
				t.Fatalf("errors %v, want one resumable error", errs)
			}
			e := errs[0]
			before := 3 // events before the damaged value
			if strings.HasSuffix(tc.name, "the last line") {
				before = 4
			}
			if e.Offset != int64(tc.at) || e.Index != before {
				t.Errorf("error at byte %d (event %d), want byte %d (event %d): %v", e.Offset, e.Index, tc.at, before, e)
			}
			if !strings.Contains(e.Error(), "invalid JSON BuildEvent: ") || !strings.Contains(e.Error(), tc.msg) || strings.Contains(e.Error(), "\n") {
				t.Errorf("message %q, want one line with %q", e.Error(), tc.msg)
			}
			if len(items) != len(tc.events) {
				t.Fatalf("%d events, want %d", len(items), len(tc.events))
			}
			for j, i := range tc.events {
				a, b := proto.Clone(decoded(t, items[j])), decoded(t, want[i])
				if !proto.Equal(a, b) {
					t.Errorf("event %d is not event %d of the clean input", j, i)
				}
				if _, idx, _ := items[j].ev.Position(); j >= before && idx != j+1 {
					t.Errorf("event %d after the damaged value: index %d, want %d", j, idx, j+1)
				}
			}
		})
	}
}

// decoded returns the BuildEvent of an event read from a Bazel file.
func decoded(t *testing.T, it item) *bes.BuildEvent {
	t.Helper()
	be := &bes.BuildEvent{}
	if err := proto.Unmarshal(it.ev.Payload, be); err != nil {
		t.Fatal(err)
	}
	return be
}

// TestPrettyJSONFound: in a pretty-printed value, unknown fields and enum
// names, and invalid UTF-8, are found as on one line; the repaired string
// is named by its JSON path.
func TestPrettyJSONFound(t *testing.T) {
	started := "{\n  \"id\": {\n    \"started\": {}\n  },\n  \"started\": {\n    \"uuid\": \"u\",\n    \"someOtherFutureField\": \"x\"\n  }\n}\n"
	progress := "{\n  \"id\": {\n    \"progress\": {}\n  },\n  \"progress\": {\n    \"stderr\": \"bad \xff\xfe bytes\"\n  }\n}\n"
	r, err := NewReader(strings.NewReader(started+progress), "in.json", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if f := r.Found(); !equalUnknowns(f.Unknown, []Unknown{{Path: "started", Field: `"someOtherFutureField"`}}) || f.Damaged() {
		t.Errorf("started: found %+v", f)
	}
	_, ev, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if f := r.Found(); len(f.Repaired) != 1 || f.Repaired[0] != "progress.stderr" || len(f.Unknown) != 0 {
		t.Errorf("progress: found %+v, want progress.stderr repaired", f)
	}
	if got := decoded(t, item{ev: ev}).GetProgress().GetStderr(); got != "bad \uFFFD\uFFFD bytes" {
		t.Errorf("stderr %q", got)
	}
}

// TestPrettyJSONTooLarge: MaxEventSize bounds one value, however many
// lines it takes; the error is at its start.
func TestPrettyJSONTooLarge(t *testing.T) {
	pretty := prettyValues(t, testdata(t, "test_mixed.json"))[:3]
	data, starts := joinValues(pretty, "\n", "\n")
	limit := max(len(pretty[0]), len(pretty[1])) + 1
	if len(pretty[2]) <= limit {
		t.Fatalf("value 2 has %d bytes, no more than %d", len(pretty[2]), limit)
	}
	items, errs := readErr(t, data, Options{MaxEventSize: limit})
	var big *SizeTooLargeError
	if len(items) != 2 || len(errs) != 1 || errs[0].Offset != starts[2] || errs[0].Index != 2 || errs[0].Resumable() || !errors.As(errs[0], &big) {
		t.Fatalf("%d events, errors %v; want 2 and a size error at byte %d", len(items), errs, starts[2])
	}
	if big.Size != uint64(len(pretty[2])) {
		t.Errorf("size %d, want %d", big.Size, len(pretty[2]))
	}
}

// TestPrettyJSONReadsLittle: on a pipe that has delivered the first two
// pretty-printed values, detection decides and both events come without
// waiting for more.
func TestPrettyJSONReadsLittle(t *testing.T) {
	pretty := prettyValues(t, testdata(t, "test_mixed.json"))
	data, _ := joinValues(pretty[:2], "\n", "\n")
	br := &blockingReader{data: data, release: make(chan struct{})}
	defer close(br.release)
	done := make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		r, err := NewReader(br, "pipe", Options{})
		if err != nil || r.Format() != FormatNDJSON {
			t.Errorf("NewReader: %v, format %v", err, r.Format())
			return
		}
		for ; n < 2; n++ {
			if _, _, err := r.Next(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case n := <-done:
		if n != 2 {
			t.Errorf("%d events", n)
		}
	case <-time.After(10 * time.Second):
		t.Error("the reader waits for more than the values it has")
	}
}

// TestJSONScanner checks the syntax scanner on values whole, fed a byte at
// a time, and cut.
func TestJSONScanner(t *testing.T) {
	for _, tc := range []struct {
		in    string
		n     int // bytes of the value; -1: a syntax error at errAt
		errAt int
	}{
		{`{}`, 2, 0},
		{`{"a":[1,-2.5e+3,0,true,false,null,"x\"\\\u00e9"],"b":{}} {`, 56, 0},
		{`[]x`, 2, 0},
		{`"s"`, 3, 0},
		{`12 `, 2, 0},
		{`0.5}`, 3, 0},
		{`{"a":01}`, -1, 6},
		{`{"a" 1}`, -1, 5},
		{`{"a":1,}`, -1, 7},
		{`[1,]`, -1, 3},
		{`{"a":tru}`, -1, 8},
		{"{\"a\":\"x\ny\"}", -1, 7},
		{`{"a":"\x"}`, -1, 7},
		{`{"a":"\u12g4"}`, -1, 10},
		{`{"a":1]`, -1, 6},
		{`[1}`, -1, 2},
		{`-x`, -1, 1},
		{`1.e5`, -1, 2},
		{`}`, -1, 0},
	} {
		for _, step := range []int{len(tc.in), 1} {
			var sc jsonScanner
			n, res := 0, scanMore
			for i := 0; i < len(tc.in) && res == scanMore; i += step {
				var m int
				m, res = sc.scan([]byte(tc.in[i:min(i+step, len(tc.in))]))
				n = i + m
			}
			switch {
			case tc.n >= 0 && (res != scanDone || n != tc.n):
				t.Errorf("%q (step %d): %d bytes, result %d; want a value of %d bytes", tc.in, step, n, res, tc.n)
			case tc.n < 0 && (res != scanError || n != tc.errAt):
				t.Errorf("%q (step %d): %d bytes, result %d; want an error at %d", tc.in, step, n, res, tc.errAt)
			}
		}
	}
	// Cut: more is due, but for a number alone.
	for _, in := range []string{`{`, `{"a"`, `{"a":`, `[1`, `"s`, `tr`, `1.`, `1e`, `-`} {
		var sc jsonScanner
		if _, res := sc.scan([]byte(in)); res != scanMore || sc.atEOF() {
			t.Errorf("%q: result %d, atEOF %v; want more", in, res, sc.atEOF())
		}
	}
	var sc jsonScanner
	if _, res := sc.scan([]byte("12")); res != scanMore || !sc.atEOF() {
		t.Errorf("12: result %d, atEOF %v", res, sc.atEOF())
	}
}
