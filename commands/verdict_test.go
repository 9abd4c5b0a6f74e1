package commands

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// Issue 10: an invocation that did not finish never passes, whatever the
// input form and wherever it was cut; a command Bazel refused is a failure
// with Bazel's ERROR line.

// framesOf splits a varint-delimited file (.bep, .obe) into its frames.
func framesOf(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var frames [][]byte
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		if k <= 0 || uint64(len(data)-k) < n {
			t.Fatalf("bad frame at %d bytes from the end", len(data))
		}
		frames = append(frames, data[:k+int(n)])
		data = data[k+int(n):]
	}
	return frames
}

// killedInputs writes test_mixed as a Bazel killed after its first n
// events would leave it: the JSON file and the binary file cut on an
// event boundary, the binary cut in the middle of event n+1 too, and a
// BES capture (OBE) cut before its finish.
func killedInputs(t *testing.T, dir string, n int) map[string]string {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(tdPath(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lines := strings.SplitAfter(string(read("test_mixed.json")), "\n")
	frames := framesOf(t, read("test_mixed.bep"))
	obe := framesOf(t, read("bes_test_mixed.obe"))
	mid := append(bytes.Join(frames[:n], nil), frames[n][:len(frames[n])/2]...)
	return map[string]string{
		"json cut on an event boundary":   write("killed.json", []byte(strings.Join(lines[:n], ""))),
		"binary cut on an event boundary": write("killed.bep", bytes.Join(frames[:n], nil)),
		"binary cut inside an event":      write("killed-mid.bep", mid),
		"BES capture cut":                 write("killed.obe", bytes.Join(obe[:n], nil)),
	}
}

func TestKilledInvocationNeverPasses(t *testing.T) {
	dir := t.TempDir()
	// After 70 of test_mixed's 106 events: some tests reported, the
	// others never did.
	for name, path := range killedInputs(t, dir, 70) {
		t.Run(name, func(t *testing.T) {
			out, stderr, code := runCLI(t, "summary", path)
			if code != ExitIncomplete || !strings.Contains(out, "did not finish") {
				t.Errorf("summary: exit %d, want %d, and \"did not finish\":\n%s%s", code, ExitIncomplete, out, stderr)
			}
			out, _, code = runCLI(t, "failures", path, "--format", "json")
			if code != ExitIncomplete || !strings.Contains(out, `"kind": "did_not_finish"`) || !strings.Contains(out, "never reported") {
				t.Errorf("failures: exit %d:\n%s", code, out)
			}
			out, _, code = runCLI(t, "tests", path, "--format", "junit")
			if code != ExitIncomplete {
				t.Errorf("tests: exit %d, want %d", code, ExitIncomplete)
			}
			// Tests that never reported are errors, never skipped.
			if strings.Contains(out, "<skipped") || !strings.Contains(out, "did not report") || !strings.Contains(out, "<error") {
				t.Errorf("JUnit of a killed build:\n%s", out)
			}
		})
	}
	// From the store too: the stream is kept as it was.
	store := filepath.Join(dir, "store")
	if _, stderr, code := runCLI(t, "ingest", "--store", store, filepath.Join(dir, "killed.json")); code != ExitOK {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	if out, _, code := runCLI(t, "summary", "--store", store, "--match", "."); code != ExitIncomplete || !strings.Contains(out, "did not finish") {
		t.Errorf("summary from the store: exit %d\n%s", code, out)
	}
}

func TestRefusedCommandFails(t *testing.T) {
	// testdata/build_unknown_option.{bep,json}: Bazel 4.2.3 given
	// --frobnicate ends its stream properly, without BuildFinished.
	for _, f := range []string{"build_unknown_option.bep", "build_unknown_option.json"} {
		out, _, code := runCLI(t, "failures", tdPath(f))
		if code != ExitBuildFail || !strings.Contains(out, "NO_BUILD_FINISHED") ||
			!strings.Contains(out, "ERROR: --frobnicate :: Unrecognized option: --frobnicate") {
			t.Errorf("%s: failures: exit %d, want %d with Bazel's ERROR line:\n%s", f, code, ExitBuildFail, out)
		}
		out, _, code = runCLI(t, "summary", tdPath(f))
		if code != ExitBuildFail || !strings.Contains(out, "ended without BuildFinished") {
			t.Errorf("%s: summary: exit %d:\n%s", f, code, out)
		}
	}
}

func TestFailureTails(t *testing.T) {
	// A test.log that exists on this machine: its last lines are shown.
	dir := t.TempDir()
	log := filepath.Join(dir, "test.log")
	var b strings.Builder
	for i := 1; i <= 30; i++ {
		b.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	if err := os.WriteFile(log, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	tails := tailsOf(failureRow{Logs: []string{"file://" + log, "file:///no/such/test.log"}}, 3)
	if len(tails) != 1 || !tails[0].Truncated || strings.Join(tails[0].Lines, ",") != "line 28,line 29,line 30" {
		t.Errorf("tails %+v", tails)
	}
}

func TestViewsTellSharedInvocationsApart(t *testing.T) {
	// The .bep and the BES capture of one run: one invocation id, two
	// build ids. Each row is named by its stream's key.
	out, _, code := runCLI(t, "summary", tdPath("bes_test_mixed.bep"), tdPath("bes_test_mixed.obe"))
	if code != ExitTestFail {
		t.Errorf("exit %d", code)
	}
	for _, key := range []string{
		"0fff9624-6330-4348-b7e6-0d35256338b9.3.8b58a6b7-1857-43e5-b701-ebbabc33fc5c",
		"8b58a6b7-1857-43e5-b701-ebbabc33fc5c.3.8b58a6b7-1857-43e5-b701-ebbabc33fc5c",
	} {
		if !strings.Contains(out, "\n"+key+" ") {
			t.Errorf("no row named %s:\n%s", key, out)
		}
	}
	// A Bazel query has no invocation id: shown as such.
	out, _, _ = runCLI(t, "summary", tdPath("query.bep"))
	if !strings.Contains(out, "(no invocation id)") {
		t.Errorf("summary of a query:\n%s", out)
	}
}

func TestUnknownStatusSameVerdictBothForms(t *testing.T) {
	// A status a newer Bazel adds: the JSON file names it, the binary
	// file gives its number. Both fail the gate; each shows what it has.
	dir := t.TempDir()
	lines := []string{
		`{"id":{"started":{}},"started":{"uuid":"inv-new","command":"test"}}`,
		`{"id":{"targetConfigured":{"label":"//t:t"}},"configured":{"targetKind":"sh_test rule"}}`,
		`{"id":{"testResult":{"label":"//t:t","run":1,"shard":1,"attempt":1,"configuration":{"id":"c"}}},"testResult":{"status":"NEW_STATUS"}}`,
		`{"id":{"testSummary":{"label":"//t:t","configuration":{"id":"c"}}},"testSummary":{"overallStatus":"NEW_STATUS"}}`,
		`{"id":{"buildFinished":{}},"finished":{"exitCode":{"name":"TESTS_FAILED","code":3}},"lastMessage":true}`,
	}
	path := filepath.Join(dir, "new.json")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCLI(t, "tests", path)
	if code != ExitTestFail || !strings.Contains(out, "NEW_STATUS") || strings.Count(stderr, "NEW_STATUS") != 2 {
		t.Errorf("JSON: exit %d, want %d, the name in the table and one notice per field:\n%s%s", code, ExitTestFail, out, stderr)
	}
}

func TestInvalidUTF8SameVerdictBothForms(t *testing.T) {
	// bazelbuild/bazel#11125: console bytes that are not UTF-8. A view
	// reports damage in the events it reads, whatever the form: a
	// Progress event with Bazel's ERROR line is read, one without is not.
	dir := t.TempDir()
	for _, c := range []struct {
		name, stderr string
		want         int
	}{
		{"progress the views skip", "compiling caf\xe9\n", ExitOK},
		{"an ERROR line the views read", "ERROR: caf\xe9 failed\n", ExitDamaged},
	} {
		events := []*bes.BuildEvent{
			{Id: &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}},
				Payload: &bes.BuildEvent_Started{Started: &bes.BuildStarted{Uuid: "inv-utf8", Command: "build"}}},
			{Id: &bes.BuildEventId{Id: &bes.BuildEventId_Progress{Progress: &bes.BuildEventId_ProgressId{}}},
				Payload: &bes.BuildEvent_Progress{Progress: &bes.Progress{}}},
			{Id: &bes.BuildEventId{Id: &bes.BuildEventId_BuildFinished{BuildFinished: &bes.BuildEventId_BuildFinishedId{}}},
				Payload: &bes.BuildEvent_Finished{Finished: &bes.BuildFinished{ExitCode: &bes.BuildFinished_ExitCode{Name: "SUCCESS"}}}, LastMessage: true},
		}
		bep := filepath.Join(dir, "utf8.bep")
		writeBEP(t, bep, events...)
		// Splice the raw bytes into the binary file: protobuf-go refuses
		// to encode them. Progress.stderr is field 2 of BuildEvent field 3.
		raw, err := os.ReadFile(bep)
		if err != nil {
			t.Fatal(err)
		}
		frames := framesOf(t, raw)
		var p []byte
		p = protowire.AppendTag(p, 2, protowire.BytesType)
		p = protowire.AppendString(p, c.stderr)
		body := append([]byte(nil), frames[1][1:]...) // the frame's varint is one byte here
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendBytes(body, p)
		frames[1] = protowire.AppendBytes(nil, body)
		if err := os.WriteFile(bep, bytes.Join(frames, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		js := filepath.Join(dir, "utf8.json")
		lines := `{"id":{"started":{}},"started":{"uuid":"inv-utf8","command":"build"}}` + "\n" +
			`{"id":{"progress":{}},"progress":{"stderr":"` + strings.ReplaceAll(c.stderr, "\n", `\n`) + `"}}` + "\n" +
			`{"id":{"buildFinished":{}},"finished":{"exitCode":{"name":"SUCCESS"}},"lastMessage":true}` + "\n"
		if err := os.WriteFile(js, []byte(lines), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{bep, js} {
			if _, stderr, code := runCLI(t, "summary", f); code != c.want {
				t.Errorf("%s: %s: exit %d, want %d\n%s", c.name, filepath.Base(f), code, c.want, stderr)
			}
		}
		// dump reads every event: damaged in both forms.
		for _, f := range []string{bep, js} {
			if _, _, code := runCLI(t, "dump", f, "--format", "ndjson"); code != ExitDamaged {
				t.Errorf("%s: dump %s: exit %d, want %d", c.name, filepath.Base(f), code, ExitDamaged)
			}
		}
	}
}

func TestNewerBazelFirstEventDetected(t *testing.T) {
	// A Bazel newer than bes adds a top-level field to BuildEvent (300, a
	// varint here) and an event id kind (50): the file is still read as
	// Bazel's binary file, and the field noticed once.
	dir := t.TempDir()
	path := filepath.Join(dir, "newer.bep")
	writeBEP(t, path,
		&bes.BuildEvent{Id: &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}},
			Payload: &bes.BuildEvent_Started{Started: &bes.BuildStarted{Uuid: "inv-newer", Command: "build"}}},
		&bes.BuildEvent{Id: &bes.BuildEventId{Id: &bes.BuildEventId_BuildFinished{BuildFinished: &bes.BuildEventId_BuildFinishedId{}}},
			Payload: &bes.BuildEvent_Finished{Finished: &bes.BuildFinished{ExitCode: &bes.BuildFinished_ExitCode{Name: "SUCCESS"}}}, LastMessage: true},
	)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	frames := framesOf(t, raw)
	body := append([]byte(nil), frames[0][1:]...)
	body = protowire.AppendTag(body, 300, protowire.VarintType)
	body = protowire.AppendVarint(body, 7)
	var newID []byte // BuildEventId field 50: an id kind bes does not know
	newID = protowire.AppendTag(newID, 50, protowire.BytesType)
	newID = protowire.AppendBytes(newID, nil)
	body = protowire.AppendTag(body, 2, protowire.BytesType) // children
	body = protowire.AppendBytes(body, newID)
	frames[0] = protowire.AppendBytes(nil, body)
	if err := os.WriteFile(path, bytes.Join(frames, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runCLI(t, "summary", path)
	if code != ExitOK || !strings.Contains(out, "inv-newer") || strings.Count(stderr, "field 300 unknown to bes") != 1 {
		t.Errorf("exit %d, want 0 with one notice:\n%s%s", code, out, stderr)
	}
}

func TestFailureTailsArePlainText(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "test.log")
	if err := os.WriteFile(log, []byte("ok\n\x1b[31mred\x1b[0m text\x07 bell\x00nul\rover\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tails := tailsOf(failureRow{Logs: []string{"file://" + log}}, 5)
	if len(tails) != 1 || strings.Join(tails[0].Lines, "|") != "ok|over" {
		t.Errorf("tails %+v", tails)
	}
	if err := os.WriteFile(log, []byte("\x1b[31mred\x1b[0m text\x07 bell\x00nul\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tails := tailsOf(failureRow{Logs: []string{"file://" + log}}, 5); len(tails) != 1 || tails[0].Lines[0] != "red text bellnul" {
		t.Errorf("tails %+v", tails)
	}
}
