package commands

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store/local"
)

// hostileIDs are stream ids a stranger's capture may hold: path elements,
// NUL, line breaks, terminal escapes, bidirectional overrides, reserved
// Windows names, very long ids (as long as a store takes:
// local.MaxIDBytes), and ids that differ only in letter case.
func hostileIDs() []*buildpb.StreamId {
	tool, ctl := buildpb.StreamId_TOOL, buildpb.StreamId_CONTROLLER
	long := strings.Repeat("L", local.MaxIDBytes-1)
	return []*buildpb.StreamId{
		{BuildId: "../../../../tmp/escape", InvocationId: "/", Component: tool},
		{BuildId: "..", InvocationId: "..", Component: tool},
		{BuildId: "/", Component: ctl},
		{BuildId: "a/b/c", InvocationId: `d\e`, Component: tool},
		{BuildId: "nul\x00byte", InvocationId: "new\nline\r", Component: tool},
		{BuildId: "\x1b[31mred\x1b[0m", InvocationId: "\u202eevil\u202c", Component: tool},
		{BuildId: long, InvocationId: long + "I", Component: tool},
		{BuildId: "Case", InvocationId: "Inv", Component: tool},
		{BuildId: "case", InvocationId: "inv", Component: tool},
		{BuildId: "CASE", InvocationId: "INV", Component: tool},
		{BuildId: "con", InvocationId: "nul", Component: tool},
		{BuildId: `C:\Windows`, InvocationId: "aux.txt", Component: tool},
		{BuildId: "", InvocationId: "", Component: buildpb.StreamId_UNKNOWN_COMPONENT},
		{BuildId: "%2e%2e%2f", InvocationId: " ", Component: tool},
		{BuildId: "ünï", InvocationId: "日本", Component: buildpb.StreamId_WORKER},
		{BuildId: `{"key":"x"}`, InvocationId: "\"\n{\"bes_index\":1}", Component: tool},
	}
}

// obeEvents returns the first three and the last event of the captured
// tool stream, renumbered 1 to 4, under stream id.
func obeEvents(t *testing.T, id *buildpb.StreamId) []*buildpb.OrderedBuildEvent {
	t.Helper()
	all := readToolOBEs(t)
	var out []*buildpb.OrderedBuildEvent
	for i, ev := range []*buildpb.OrderedBuildEvent{all[0], all[1], all[2], all[len(all)-1]} {
		ev = proto.CloneOf(ev)
		ev.StreamId = proto.CloneOf(id)
		ev.SequenceNumber = int64(i + 1)
		out = append(out, ev)
	}
	return out
}

// delimitedOBE encodes events as an OBE file and returns the frames too.
func delimitedOBE(t *testing.T, evs []*buildpb.OrderedBuildEvent) (file []byte, frames [][]byte) {
	t.Helper()
	for _, ev := range evs {
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
		file = protowire.AppendBytes(file, b)
	}
	return file, frames
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// TestHostileStreamIDs ingests, end to end, a capture whose stream ids are
// hostile: every stream gets a file of its own inside the store, named by
// a hash, and nothing is written anywhere else; each is listed with its
// ids intact (JSON) and safely (the table escapes what would break it or
// drive the terminal); bes dump --format obe gives back each stream's
// bytes exactly. Ids that make the same key (BuildGrid's key joins the ids
// with dots) are the same stream, and a second one is a duplicate.
func TestHostileStreamIDs(t *testing.T) {
	root := t.TempDir()
	storeDir := filepath.Join(root, "store")
	ids := hostileIDs()
	var input []byte
	want := map[string][][]byte{} // key → frames
	for _, id := range ids {
		file, frames := delimitedOBE(t, obeEvents(t, id))
		input = append(input, file...)
		want[bepfile.Key(id)] = frames
	}
	if len(want) != len(ids) {
		t.Fatalf("%d keys for %d ids", len(want), len(ids))
	}
	in := filepath.Join(root, "hostile.obe")
	if err := os.WriteFile(in, input, 0o600); err != nil {
		t.Fatal(err)
	}
	cwd, _ := os.Getwd()
	cwdBefore := dirNames(t, cwd)

	stdout, stderr, code := runCLI(t, "ingest", "--store", storeDir, in, "--format", "json")
	if code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	var rows []ingestRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(ids) {
		t.Errorf("ingest reports %d streams, want %d", len(rows), len(ids))
	}

	// Files: the input and the store; in the store, the catalog (with its
	// write-ahead log while a process has it open), the lock and one file
	// per stream, each named by the hash of its key.
	if got := dirNames(t, root); !slices.Equal(got, []string{"hostile.obe", "store"}) {
		t.Errorf("the store's parent holds %q", got)
	}
	if got := dirNames(t, cwd); !slices.Equal(got, cwdBefore) {
		t.Errorf("the working directory changed: %q", got)
	}
	var wantFiles []string
	for key := range want {
		wantFiles = append(wantFiles, local.FileName(key))
	}
	wantFiles = append(wantFiles, "catalog.db", "lock", "tmp") // tmp/: the temporary files, none left
	slices.Sort(wantFiles)
	got := slices.DeleteFunc(dirNames(t, storeDir), func(n string) bool { return n == "catalog.db-wal" || n == "catalog.db-shm" })
	if !slices.Equal(got, wantFiles) {
		t.Errorf("the store holds %q,\nwant %q", got, wantFiles)
	}
	if temps := dirNames(t, filepath.Join(storeDir, "tmp")); len(temps) != 0 {
		t.Errorf("the store's tmp/ holds %q", temps)
	}

	// Listed with their ids intact.
	out, stderr, code := runCLI(t, "streams", "--store", storeDir, "--format", "json")
	if code != 0 {
		t.Fatalf("streams: exit %d: %s", code, stderr)
	}
	var listed []streamRow
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatal(err)
	}
	var gotKeys, wantKeys []string
	for _, r := range listed {
		gotKeys = append(gotKeys, r.Key)
		if r.Key != bepfile.Key(&buildpb.StreamId{BuildId: r.BuildID, InvocationId: r.InvocationID, Component: buildpb.StreamId_BuildComponent(buildpb.StreamId_BuildComponent_value[r.Component])}) {
			t.Errorf("stream %q listed with ids %q %q %q", r.Key, r.BuildID, r.InvocationID, r.Component)
		}
	}
	for k := range want {
		wantKeys = append(wantKeys, k)
	}
	slices.Sort(wantKeys)
	if !slices.Equal(gotKeys, wantKeys) {
		t.Errorf("streams lists %q,\nwant %q", gotKeys, wantKeys)
	}
	// And safely as a table: one line per stream, nothing for a terminal
	// to act on.
	table, _, _ := runCLI(t, "streams", "--store", storeDir)
	if n := strings.Count(table, "\n"); n != len(ids)+1 {
		t.Errorf("the table has %d lines for %d streams", n, len(ids))
	}
	for _, bad := range []string{"\x1b", "\x00", "\r", "\u202e"} {
		if strings.Contains(table, bad) {
			t.Errorf("the table holds %q", bad)
		}
	}

	// Dumped back byte for byte, each by its full key.
	for key, frames := range want {
		got, stderr, code := runCLI(t, "dump", "--store", storeDir, "--format", "obe", key)
		if code != 0 {
			t.Errorf("dump %q: exit %d: %s", key[:min(len(key), 40)], code, stderr)
			continue
		}
		if !slices.EqualFunc(obeFrames(t, got), frames, bytes.Equal) {
			t.Errorf("dump %q differs from what was ingested", key[:min(len(key), 40)])
		}
	}
	if _, stderr, code := runCLI(t, "store", "check", "--store", storeDir); code != 0 {
		t.Errorf("store check: exit %d: %s", code, stderr)
	}

	// Ids that make a stored key: the same stream for bes, as for
	// BuildGrid; its other content is a duplicate, and nothing changes.
	a := &buildpb.StreamId{BuildId: "a.3.b", InvocationId: "c", Component: buildpb.StreamId_TOOL}
	b := &buildpb.StreamId{BuildId: "a", InvocationId: "b.3.c", Component: buildpb.StreamId_TOOL}
	if bepfile.Key(a) != bepfile.Key(b) {
		t.Fatal("the ids do not collide")
	}
	for i, id := range []*buildpb.StreamId{a, b} {
		file, _ := delimitedOBE(t, obeEvents(t, id))
		path := filepath.Join(root, "collide.obe")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, code := runCLI(t, "ingest", "--store", storeDir, path)
		if wantCode := []int{0, ExitDuplicate}[i]; code != wantCode {
			t.Errorf("ingest of %v: exit %d, want %d: %s", id, code, wantCode, stderr)
		}
	}
}

// TestInvalidUTF8StreamID: protobuf refuses invalid UTF-8 in string
// fields; an event whose stream id holds some is reported, naming the
// event, and the rest of the input is ingested (damaged input: exit 9).
func TestInvalidUTF8StreamID(t *testing.T) {
	root := t.TempDir()
	storeDir := filepath.Join(root, "store")
	good1 := &buildpb.StreamId{BuildId: "good-1", InvocationId: "i", Component: buildpb.StreamId_TOOL}
	good2 := &buildpb.StreamId{BuildId: "good-2", InvocationId: "i", Component: buildpb.StreamId_TOOL}
	bad := &buildpb.StreamId{BuildId: "bad-\x01\x01", InvocationId: "i", Component: buildpb.StreamId_TOOL}
	f1, _ := delimitedOBE(t, obeEvents(t, good1))
	fb, _ := delimitedOBE(t, obeEvents(t, bad)[:1])
	fb = bytes.Replace(fb, []byte("bad-\x01\x01"), []byte("bad-\xff\xfe"), 1) // proto.Marshal would refuse it
	f2, _ := delimitedOBE(t, obeEvents(t, good2))
	in := filepath.Join(root, "mixed.obe")
	if err := os.WriteFile(in, bytes.Join([][]byte{f1, fb, f2}, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, "ingest", "--store", storeDir, in)
	if code != ExitDamaged {
		t.Errorf("exit %d, want %d", code, ExitDamaged)
	}
	wantErr := in + `: byte ` + strconv.Itoa(len(f1)) + ` (event 4): invalid stream id: build_id "bad-\xff\xfe" is not valid UTF-8`
	if !strings.Contains(stderr, wantErr) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr %q, want one line with %q", stderr, wantErr)
	}
	if !strings.Contains(stdout, "good-1.3.i") || !strings.Contains(stdout, "good-2.3.i") {
		t.Errorf("the valid streams were not ingested:\n%s", stdout)
	}
	keys, events := streamKeys(t, "--store", storeDir)
	if !slices.Equal(keys, []string{"good-1.3.i", "good-2.3.i"}) || !slices.Equal(events, []int64{4, 4}) {
		t.Errorf("stored %q with %v events", keys, events)
	}
}

// TestSkippedEventOneLine: an event the reader skips (a line that is no
// JSON BuildEvent) is one line on standard error, and nothing else is,
// whatever the command; the input is damaged (exit 9), unless the verdict
// is graver (summary: test_mixed's failed tests).
func TestSkippedEventOneLine(t *testing.T) {
	lines := strings.SplitAfter(string(readTestdata(t, "test_mixed.json")), "\n")
	bad := lines[0] + `{"id":{"progress":{}},"progress":}` + "\n" + strings.Join(lines[1:], "")
	in := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(in, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "bes: " + in + ": byte " + strconv.Itoa(len(lines[0])) + " (event 1): line 2: invalid JSON BuildEvent: "
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"streams", in}, ExitDamaged},
		{[]string{"dump", in}, ExitDamaged},
		{[]string{"summary", in}, ExitTestFail},
		{[]string{"ingest", "--store", filepath.Join(t.TempDir(), "store"), in}, ExitDamaged},
	} {
		_, stderr, code := runCLI(t, tc.args...)
		if code != tc.code || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and one line %q…", tc.args[0], code, stderr, tc.code, want)
		}
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(td(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDiagnosticOneLine: a line that names a stream with a line break or
// a terminal escape in its id is still one line, escaped (found by
// FuzzViews: dump --format json of an event whose Any names an unknown
// type, which was an error then and is a damaged event now: exit 9, the
// event printed with its type and base64 value).
func TestDiagnosticOneLine(t *testing.T) {
	evs := obeEvents(t, &buildpb.StreamId{BuildId: "line\nbreak\x1b[2J", InvocationId: "i", Component: buildpb.StreamId_TOOL})
	evs[1].GetEvent().GetBazelEvent().TypeUrl = "type.googleapis.com/unknown.Type"
	file, _ := delimitedOBE(t, evs)
	in := filepath.Join(t.TempDir(), "in.obe")
	if err := os.WriteFile(in, file, 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCLI(t, "dump", in, "--format", "json")
	if code != ExitDamaged || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, in+": byte ") || !strings.Contains(stderr, "unknown.Type") {
		t.Errorf("exit %d, stderr %q; want one line naming the file and byte", code, stderr)
	}
	// From the store, the line names the stream instead.
	storeDir := filepath.Join(t.TempDir(), "store")
	if _, stderr, code := runCLI(t, "ingest", "--store", storeDir, in); code != ExitOK {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	_, stderr, code = runCLI(t, "dump", "--store", storeDir, "line\nbreak\x1b[2J.3.i", "--format", "json")
	if code != ExitDamaged || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, `line\nbreak\x1b[2J.3.i`) || strings.Contains(stderr, "\x1b") {
		t.Errorf("exit %d, stderr %q; want one line naming the stream, escaped", code, stderr)
	}
}
