package commands

//lint:file-ignore SA1019 The events are made as Bazel 4.2 writes them, with the start_time_millis the current schema deprecates.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// consoleChunk is the console output of one Progress event.
type consoleChunk struct{ stderr, stdout string }

// progressBEP returns a Bazel binary file and its JSON twin for an
// invocation (BuildStarted with uuid inv) whose Progress events carry
// chunks; the last event has last_message when finished. A chunk that is
// not valid UTF-8 gets no JSON line (JSON cannot hold it; Bazel's JSON
// file writes U+FFFD instead), and its binary event is encoded by hand, as
// Go's protobuf refuses to.
func progressBEP(t *testing.T, inv string, chunks []consoleChunk, finished bool) (bep, ndjson []byte) {
	t.Helper()
	progressID := func(n int32) *bes.BuildEventId {
		return &bes.BuildEventId{Id: &bes.BuildEventId_Progress{Progress: &bes.BuildEventId_ProgressId{OpaqueCount: n}}}
	}
	add := func(ev *bes.BuildEvent, raw []byte) {
		if raw == nil {
			b, err := proto.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			raw = b
			j, err := protojson.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			ndjson = append(append(ndjson, j...), '\n')
		}
		bep = protowire.AppendVarint(bep, uint64(len(raw)))
		bep = append(bep, raw...)
	}
	add(&bes.BuildEvent{
		Id:       &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}},
		Children: []*bes.BuildEventId{progressID(0)},
		Payload:  &bes.BuildEvent_Started{Started: &bes.BuildStarted{Uuid: inv, Command: "build", StartTimeMillis: 1795464889362}},
	}, nil)
	for i, c := range chunks {
		ev := &bes.BuildEvent{Id: progressID(int32(i)), LastMessage: finished && i == len(chunks)-1}
		if i < len(chunks)-1 {
			ev.Children = []*bes.BuildEventId{progressID(int32(i + 1))}
		}
		if isUTF8(c.stderr) && isUTF8(c.stdout) {
			ev.Payload = &bes.BuildEvent_Progress{Progress: &bes.Progress{Stderr: c.stderr, Stdout: c.stdout}}
			add(ev, nil)
			continue
		}
		raw, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var p []byte
		p = protowire.AppendTag(p, 1, protowire.BytesType)
		p = protowire.AppendString(p, c.stdout)
		p = protowire.AppendTag(p, 2, protowire.BytesType)
		p = protowire.AppendString(p, c.stderr)
		raw = protowire.AppendTag(raw, 3, protowire.BytesType)
		add(nil, protowire.AppendBytes(raw, p))
	}
	return bep, ndjson
}

func isUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLog: bes log prints the Progress events' stderr then stdout, event
// by event, from the binary file, its JSON twin and the store alike;
// escape sequences stripped (the output is no terminal) unless --color
// always, even one split across two events; invalid UTF-8 unchanged;
// --only; exit 7 with nothing to print, 3 for a cut file.
func TestLog(t *testing.T) {
	const inv = "0b6c1a9e-5d7e-4f43-9d1e-2c1f7a3b4e55"
	red, reset := "\x1b[31m", "\x1b[0m"
	chunks := []consoleChunk{
		{stderr: "Loading: \nLoading: 0 packages loaded\n"},
		{}, // Bazel writes many empty Progress events
		{stderr: red + "ERROR: " + reset + "/ws/BUILD:2:8: Executing genrule //x:y failed: (Exit 1)\n\x1b[3", stdout: "//x:y\n"},
		{stderr: "2mgenrule about to fail" + reset + "\n"}, // an escape split across events
		{stdout: "query result\n", stderr: "INFO: Elapsed time: 0.702s\n"},
	}
	bepData, jsonData := progressBEP(t, inv, chunks, true)
	bep := writeTemp(t, "build.bep", bepData)
	jsonFile := writeTemp(t, "build.json", jsonData)
	stripped := "Loading: \nLoading: 0 packages loaded\n" +
		"ERROR: /ws/BUILD:2:8: Executing genrule //x:y failed: (Exit 1)\n//x:y\n" +
		"genrule about to fail\n" +
		"INFO: Elapsed time: 0.702s\nquery result\n"

	for _, file := range []string{bep, jsonFile} {
		stdout, stderr, code := runCLI(t, "log", file)
		if code != ExitOK || stderr != "" || stdout != stripped {
			t.Errorf("bes log %s: exit %d, stderr %q, stdout:\n%q\nwant:\n%q", filepath.Base(file), code, stderr, stdout, stripped)
		}
	}
	colored := strings.Join([]string{chunks[0].stderr, chunks[2].stderr, chunks[2].stdout, chunks[3].stderr, chunks[4].stderr, chunks[4].stdout}, "")
	if stdout, _, code := runCLI(t, "log", "--color", "always", bep); code != ExitOK || stdout != colored {
		t.Errorf("--color always: exit %d:\n%q\nwant:\n%q", code, stdout, colored)
	}
	if stdout, _, _ := runCLI(t, "log", "--color", "never", bep); stdout != stripped {
		t.Errorf("--color never:\n%q", stdout)
	}
	if stdout, _, code := runCLI(t, "log", "--only", "stdout", bep); code != ExitOK || stdout != "//x:y\nquery result\n" {
		t.Errorf("--only stdout: exit %d: %q", code, stdout)
	}
	if stdout, _, _ := runCLI(t, "log", bep, "--only=stderr"); strings.Contains(stdout, "query result") || !strings.Contains(stdout, "genrule about to fail\nINFO: Elapsed") {
		t.Errorf("--only stderr: %q", stdout)
	}
	if _, stderr, code := runCLI(t, "log", "--color", "blue", bep); code != ExitUsage || !strings.Contains(stderr, "--color must be one of auto, always, never") {
		t.Errorf("--color blue: exit %d: %s", code, stderr)
	}

	// Invalid UTF-8 is printed as it is (bazelbuild/bazel#11125).
	badChunks := []consoleChunk{{stderr: "INFO: ok\n"}, {stderr: "caf\xe9 \xff\xfe\n", stdout: "\xc3\n"}}
	badData, _ := progressBEP(t, inv, badChunks, true)
	if stdout, stderr, code := runCLI(t, "log", writeTemp(t, "latin1.bep", badData)); code != ExitOK || stdout != "INFO: ok\ncaf\xe9 \xff\xfe\n\xc3\n" {
		t.Errorf("invalid UTF-8: exit %d, stderr %q: %q", code, stderr, stdout)
	}

	// Nothing to print: exit 7, one line.
	quietData, _ := progressBEP(t, inv, []consoleChunk{{}, {}}, true)
	stdout, stderr, code := runCLI(t, "log", writeTemp(t, "quiet.bep", quietData))
	if code != ExitNoData || stdout != "" || stderr != "bes: log: no console output in stream "+inv+".3."+inv+" (2 progress events)\n" {
		t.Errorf("no output: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	onlyErr, _ := progressBEP(t, inv, chunks[:2], true)
	if _, stderr, code := runCLI(t, "log", "--only", "stdout", writeTemp(t, "onlyerr.bep", onlyErr)); code != ExitNoData || !strings.HasPrefix(stderr, "bes: log: no output on Bazel's stdout in stream ") {
		t.Errorf("--only stdout without stdout: exit %d: %s", code, stderr)
	}

	// A file cut in its last event: the complete events' output, exit 3.
	cut := writeTemp(t, "cut.bep", bepData[:len(bepData)-3])
	if stdout, stderr, code := runCLI(t, "log", cut); code != ExitPartial || !strings.HasPrefix(stripped, stdout) ||
		!strings.Contains(stdout, "genrule about to fail\n") || strings.Contains(stdout, "query result") || !strings.Contains(stderr, "cut.bep: byte ") {
		t.Errorf("cut file: exit %d, stderr %q, stdout %q", code, stderr, stdout)
	}

	// From the store, by invocation id and with --match; two streams
	// with output get a header each.
	storeDir := filepath.Join(t.TempDir(), "store")
	const inv2 = "9e0d4f1c-2b3a-4c5d-8e6f-7a8b9c0d1e2f"
	otherData, _ := progressBEP(t, inv2, []consoleChunk{{stderr: "INFO: Build completed successfully, 1 total action\n"}}, true)
	other := writeTemp(t, "other.bep", otherData)
	if _, stderr, code := runCLI(t, "ingest", "--store", storeDir, bep, other); code != ExitOK {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	if stdout, stderr, code := runCLI(t, "log", "--store", storeDir, inv); code != ExitOK || stdout != stripped {
		t.Errorf("log of a stored stream: exit %d, stderr %q:\n%q", code, stderr, stdout)
	}
	want := "==> " + inv + ".3." + inv + " <==\n" + stripped + "\n==> " + inv2 + ".3." + inv2 + " <==\nINFO: Build completed successfully, 1 total action\n"
	if stdout, stderr, code := runCLI(t, "log", "--store", storeDir, "--match", `\.3\.`); code != ExitOK || stdout != want {
		t.Errorf("log --match: exit %d, stderr %q:\n%q\nwant:\n%q", code, stderr, stdout, want)
	}
	if stdout, _, code := runCLI(t, "log", bep, other); code != ExitOK || stdout != want {
		t.Errorf("log of two files: exit %d:\n%q", code, stdout)
	}
	if stdout, _, code := runCLI(t, "log", bep, other, inv2); code != ExitOK || stdout != "INFO: Build completed successfully, 1 total action\n" {
		t.Errorf("log of two files, one stream named: exit %d:\n%q", code, stdout)
	}
	if _, stderr, code := runCLI(t, "log", "--store", storeDir, "no-such-stream"); code != ExitError || !strings.Contains(stderr, `"no-such-stream": stream not found`) {
		t.Errorf("log of an unknown stream: exit %d: %s", code, stderr)
	}
}

func TestStripEscapes(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain \xff text\r\n", "plain \xff text\r\n"},
		{"\x1b[1;31mERROR:\x1b[0m x", "ERROR: x"},
		{"\r\x1b[K[3 / 5] compiling\x1b[1A\x1b[2K", "\r[3 / 5] compiling"},
		{"\x1b]8;;file:///x\x07link\x1b]8;;\x1b\\", "link"},
		{"\x1b(Bcharset\x1b7saved\x1b8", "charsetsaved"},
		{"cut at the end \x1b[3", "cut at the end "},
		{"lone escape \x1b", "lone escape "},
	} {
		if got := string(stripEscapes([]byte(c.in))); got != c.want {
			t.Errorf("stripEscapes(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestPathArguments: an argument that looks like a path and names no file
// is "no such file" (exit 1) for every reading command, and none of them
// creates the store; a stream key with a "/" is still a stream.
func TestPathArguments(t *testing.T) {
	storeDir := filepath.Join(t.TempDir(), "store")
	dir := t.TempDir()
	for _, args := range [][]string{
		{"dump", "build.bep"},
		{"streams", "out/build.json"},
		{"query", "--kind", "progress", "build.bep"},
		{"query", `kind == "progress"`, "build.ndjson.gz"},
		{"summary", "build.bep"},
		{"tests", "bazel-out/events"},
		{"failures", "./events.obe"},
		{"artifacts", "x.BEP"},
		{"log", "build.bep"},
		{"ingest", "build.bep"},
	} {
		name := args[len(args)-1]
		stdout, stderr, code := runCLI(t, append(args, "--store", storeDir)...)
		if code != ExitError || stderr != "bes: "+name+": no such file\n" || stdout != "" {
			t.Errorf("bes %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	if _, stderr, code := runCLI(t, "summary", dir+"/", "--store", storeDir); code != ExitError || stderr != "bes: "+dir+"/: is a directory, not a file\n" {
		t.Errorf("a directory: exit %d: %q", code, stderr)
	}
	// A stream reference, not a path: no store, so not found.
	if _, stderr, code := runCLI(t, "dump", "a/b/c.3.d", "--store", storeDir); code != ExitError || !strings.Contains(stderr, `"a/b/c.3.d": stream not found in store`) {
		t.Errorf("a key with a slash: exit %d: %q", code, stderr)
	}
	if _, err := os.Stat(storeDir); !os.IsNotExist(err) {
		t.Errorf("a reading command created the store: %v", err)
	}
	for arg, want := range map[string]bool{
		"build.bep": true, "x.json": true, "a.zst": true, "out/events": true, "./x": true,
		"657fb236-551f-4f88-ab84-e114caf29e48": false, "B.1.": false, "a/b/c.3.d": false, ".bep": false, "build": false,
	} {
		if got := looksLikePath(arg); got != want {
			t.Errorf("looksLikePath(%q) = %v, want %v", arg, got, want)
		}
	}
}

// TestDirectoryArgument: an argument that names an existing directory,
// without a trailing slash, is a directory, not a stream reference.
func TestDirectoryArgument(t *testing.T) {
	storeDir := filepath.Join(t.TempDir(), "store")
	t.Chdir(t.TempDir())
	if err := os.Mkdir("outdir", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"dump", "summary", "streams"} {
		stdout, stderr, code := runCLI(t, cmd, "outdir", "--store", storeDir)
		if code != ExitError || stderr != "bes: outdir: is a directory, not a file\n" || stdout != "" {
			t.Errorf("bes %s outdir: exit %d, stdout %q, stderr %q", cmd, code, stdout, stderr)
		}
	}
}

// TestReadersCreateNoStore: commands that only read never create the
// store directory; a store that does not exist is empty.
func TestReadersCreateNoStore(t *testing.T) {
	storeDir := filepath.Join(t.TempDir(), "no", "store")
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"streams"}, ExitOK},
		{[]string{"streams", "--match", "x"}, ExitOK},
		{[]string{"dump", "657fb236"}, ExitError},
		{[]string{"query", "--match", ".", "--kind", "progress"}, ExitNoData},
		{[]string{"summary", "--match", "."}, ExitNoData},
		{[]string{"tests", "657fb236"}, ExitError},
		{[]string{"failures", "--match", "."}, ExitNoData},
		{[]string{"artifacts", "--match", "."}, ExitNoData},
		{[]string{"log", "--match", "."}, ExitNoData},
		{[]string{"store", "check"}, ExitOK},
		{[]string{"store", "check", "--repair"}, ExitOK},
	} {
		_, stderr, code := runCLI(t, append(c.args, "--store", storeDir)...)
		if code != c.code {
			t.Errorf("bes %s: exit %d, want %d: %s", strings.Join(c.args, " "), code, c.code, stderr)
		}
		if _, err := os.Stat(filepath.Dir(storeDir)); !os.IsNotExist(err) {
			t.Fatalf("bes %s created the store (%v)", strings.Join(c.args, " "), err)
		}
	}
	if _, stderr, code := runCLI(t, "ingest", "--store", storeDir, td("build_ok.bep")); code != ExitOK {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	if fi, err := os.Stat(storeDir); err != nil || !fi.IsDir() {
		t.Errorf("ingest did not create the store: %v", err)
	}
}

// TestUnknownCommand: exit 2 and one line naming the nearest command;
// `bes help COMMAND` shows the command's help.
func TestUnknownCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `bes: unknown command "frobnicate" (bes --help lists the commands)` + "\n"},
		{[]string{"xyzzy"}, `bes: unknown command "xyzzy" (bes --help lists the commands)` + "\n"},
		{[]string{"summry", "build.bep"}, `bes: unknown command "summry"; did you mean "summary"? (bes --help lists the commands)` + "\n"},
		{[]string{"fail"}, `did you mean "failures"?`},
		{[]string{"store", "chek"}, `bes: unknown command "chek"; did you mean "store check"? (bes store --help lists the commands)` + "\n"},
		{[]string{"help", "lgo"}, `did you mean "log"?`},
	} {
		stdout, stderr, code := runCLI(t, c.args...)
		if code != ExitUsage || stdout != "" || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("bes %s: exit %d, stdout %q, stderr %q", strings.Join(c.args, " "), code, stdout, stderr)
		}
	}
	if stdout, _, code := runCLI(t, "help", "log"); code != ExitOK || !strings.Contains(stdout, "bes log - print the console output") {
		t.Errorf("bes help log: exit %d:\n%s", code, stdout)
	}
}
