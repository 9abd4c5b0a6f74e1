package commands

//lint:file-ignore SA1019 The events are made as Bazel 4.2 writes them, with the start_time_millis the current schema deprecates.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// ingestRows runs bes ingest --format json and returns its rows.
func ingestRows(t *testing.T, args ...string) ([]ingestRow, string, int) {
	t.Helper()
	stdout, stderr, code := runCLI(t, append([]string{"ingest", "--format", "json"}, args...)...)
	var rows []ingestRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("ingest %q: %v\n%s%s", args, err, stdout, stderr)
	}
	return rows, stderr, code
}

func statuses(rows []ingestRow) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Status)
	}
	return out
}

// TestIngestBinaryAndJSON: the .bep and the .json Bazel wrote for one
// invocation are one stream: the second is unchanged, exit 0, in either
// order, in one ingest or two.
func TestIngestBinaryAndJSON(t *testing.T) {
	for _, files := range [][]string{
		{td("test_mixed.bep"), td("test_mixed.json")},
		{td("test_mixed.json"), td("test_mixed.bep")},
		{td("build_ok.json"), td("build_ok.bep"), td("build_ok.json")},
		{td("query.bep"), td("query.json")},
	} {
		dir := filepath.Join(t.TempDir(), "store")
		rows, stderr, code := ingestRows(t, append([]string{"--store", dir}, files...)...)
		want := []string{"created"}
		for range files[1:] {
			want = append(want, "unchanged")
		}
		if code != 0 || stderr != "" || !slices.Equal(statuses(rows), want) || rows[0].Key != rows[1].Key {
			t.Errorf("ingest %q: exit %d, %v, want %v\n%s", files, code, statuses(rows), want, stderr)
		}
		// And one file at a time.
		dir = filepath.Join(t.TempDir(), "store")
		for i, f := range files {
			rows, stderr, code := ingestRows(t, "--store", dir, f)
			if code != 0 || len(rows) != 1 || rows[0].Status != want[min(i, 1)] {
				t.Errorf("ingest %s after %q: exit %d, %v\n%s", f, files[:i], code, statuses(rows), stderr)
			}
		}
	}
	// A cut copy of the stored stream is unchanged too (its own exit 3
	// stays); other streams under the key: TestIngestPartialThenComplete.
	dir := filepath.Join(t.TempDir(), "store")
	rows, stderr, code := ingestRows(t, "--store", dir, td("test_mixed.bep"), td("truncated-test_mixed.bep"))
	if code != ExitPartial || !slices.Equal(statuses(rows), []string{"created", "unchanged"}) || strings.Contains(stderr, "already stored with other content") {
		t.Errorf("complete then truncated: exit %d, %v\n%s", code, statuses(rows), stderr)
	}
}

// anotherQuery writes a copy of testdata/query.bep whose BuildStarted has
// another start time: another run of the same `bazel query`, which Bazel
// 4 writes without uuid.
func anotherQuery(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(td("query.bep"))
	if err != nil {
		t.Fatal(err)
	}
	n, k := protowire.ConsumeBytes(data)
	if k < 0 {
		t.Fatal("query.bep: bad first frame")
	}
	first := &bes.BuildEvent{}
	if err := proto.Unmarshal(n, first); err != nil {
		t.Fatal(err)
	}
	started := first.GetStarted()
	if started == nil || started.Uuid != "" {
		t.Fatalf("query.bep starts with %v", first)
	}
	started.StartTimeMillis += 60_000
	b, err := proto.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	out := append(protowire.AppendBytes(nil, b), data[k:]...)
	path := filepath.Join(t.TempDir(), "query2.bep")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestIngestNoUUID: two runs without BuildStarted.uuid get two keys, both
// stored; the .bep and .json of one such run one key; `bes streams` shows
// "(no invocation id)".
func TestIngestNoUUID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	other := anotherQuery(t)
	rows, stderr, code := ingestRows(t, "--store", dir, td("query.bep"), other, td("query.json"))
	if code != 0 || stderr != "" || !slices.Equal(statuses(rows), []string{"created", "created", "unchanged"}) {
		t.Fatalf("ingest: exit %d, %v\n%s", code, statuses(rows), stderr)
	}
	const queryKey = "nouuid-7a923019682dab437fcc463e326ff14a.3.nouuid-7a923019682dab437fcc463e326ff14a"
	if rows[0].Key != queryKey || rows[2].Key != queryKey || rows[1].Key == queryKey || !strings.HasPrefix(rows[1].Key, "nouuid-") {
		t.Errorf("keys %q, %q, %q", rows[0].Key, rows[1].Key, rows[2].Key)
	}
	stdout, stderr, code := runCLI(t, "streams", "--store", dir)
	if code != 0 || strings.Count(stdout, "(no invocation id)") != 2 || strings.Contains(stdout, "SOURCE") {
		t.Errorf("streams: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, _, _ = runCLI(t, "streams", "--store", dir, "--format", "json")
	var srows []streamRow
	if err := json.Unmarshal([]byte(stdout), &srows); err != nil {
		t.Fatal(err)
	}
	if len(srows) != 2 || !srows[0].InvocationIDSynthesized || !srows[1].InvocationIDSynthesized || srows[0].Command != "query" {
		t.Errorf("streams --format json: %+v", srows)
	}
	// The synthesized invocation id names its stream.
	inv := strings.SplitN(queryKey, ".", 2)[0]
	stdout, stderr, code = runCLI(t, "dump", "--store", dir, inv)
	if code != 0 || strings.Count(stdout, "\n") != 17 {
		t.Errorf("dump %s: exit %d, %d lines\n%s", inv, code, strings.Count(stdout, "\n"), stderr)
	}
}

// dumpedStreams runs bes dump --format json and returns the keys of the
// streams it printed, in order.
func dumpedStreams(t *testing.T, args ...string) ([]string, string, int) {
	t.Helper()
	stdout, stderr, code := runCLI(t, append([]string{"dump", "--format", "json"}, args...)...)
	if code != 0 {
		return nil, stderr, code
	}
	var streams []struct {
		StreamID struct {
			BuildID      string `json:"buildId"`
			InvocationID string `json:"invocationId"`
			Component    string `json:"component"`
		} `json:"streamId"`
	}
	if err := json.Unmarshal([]byte(stdout), &streams); err != nil {
		t.Fatalf("dump %q: %v", args, err)
	}
	var keys []string
	for _, s := range streams {
		c := map[string]string{"TOOL": "3", "CONTROLLER": "1"}[s.StreamID.Component]
		keys = append(keys, s.StreamID.BuildID+"."+c+"."+s.StreamID.InvocationID)
	}
	return keys, stderr, code
}

// TestStreamRefRule: a STREAM argument names the same streams in the store
// and in the files given: an invocation id every stream of the invocation
// (the .bep's and the BES capture's), a build id its tool stream, a
// prefix of one build its tool stream, a prefix of two builds nothing
// (ambiguous, exit 2).
func TestStreamRefRule(t *testing.T) {
	const (
		build = "0fff9624-6330-4348-b7e6-0d35256338b9"
		inv   = "8b58a6b7-1857-43e5-b701-ebbabc33fc5c"
	)
	var (
		bepKey      = inv + ".3." + inv
		toolKey     = build + ".3." + inv
		invLifeKey  = build + ".1." + inv
		buildLife   = build + ".1."
		files       = []string{td("bes_test_mixed.bep"), td("bes_test_mixed.obe"), td("bes_test_mixed.lifecycle.obe"), td("test_mixed.bep")}
		testMixedID = "657fb236-551f-4f88-ab84-e114caf29e48"
	)
	dir := filepath.Join(t.TempDir(), "store")
	if _, stderr, code := runCLI(t, append([]string{"ingest", "--store", dir}, files...)...); code != 0 {
		t.Fatalf("ingest: exit %d\n%s", code, stderr)
	}
	for _, tc := range []struct {
		ref  string
		want []string // keys in key order; nil: an error
		code int
	}{
		{toolKey, []string{toolKey}, 0},
		{buildLife, []string{buildLife}, 0},                // a full key that prefixes another
		{inv, []string{toolKey, invLifeKey, bepKey}, 0},    // the invocation, both builds
		{build, []string{toolKey}, 0},                      // a build id: its tool stream
		{"0fff", []string{toolKey}, 0},                     // a prefix of one build
		{build + ".1", []string{invLifeKey, buildLife}, 0}, // its lifecycle streams
		{"8b58", []string{bepKey}, 0},                      // a unique prefix
		{testMixedID, []string{testMixedID + ".3." + testMixedID}, 0},
		{"nope", nil, ExitError},
	} {
		fromStore, storeErr, storeCode := dumpedStreams(t, "--store", dir, tc.ref)
		fromFiles, filesErr, filesCode := dumpedStreams(t, append(slices.Clone(files), tc.ref)...)
		slices.Sort(fromStore)
		slices.Sort(fromFiles)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if storeCode != tc.code || !slices.Equal(fromStore, want) {
			t.Errorf("dump %s from the store: exit %d, %q; want %d, %q\n%s", tc.ref, storeCode, fromStore, tc.code, want, storeErr)
		}
		if filesCode != tc.code || !slices.Equal(fromFiles, want) {
			t.Errorf("dump %s from files: exit %d, %q; want %d, %q\n%s", tc.ref, filesCode, fromFiles, tc.code, want, filesErr)
		}
	}
	// A prefix of two builds' keys: ambiguous, the same way.
	amb := filepath.Join(t.TempDir(), "store")
	ambFiles := []string{td("test_mixed.bep"), td("test_cached.bep"), td("build_keep_going_fail.bep")} // 657f…, 520c…, 5a64…
	if _, stderr, code := runCLI(t, append([]string{"ingest", "--store", amb}, ambFiles...)...); code != 0 {
		t.Fatalf("ingest: exit %d\n%s", code, stderr)
	}
	_, storeErr, storeCode := dumpedStreams(t, "--store", amb, "5")
	_, filesErr, filesCode := dumpedStreams(t, append(slices.Clone(ambFiles), "5")...)
	const wantErr = `"5" is ambiguous: it matches 2 streams: 520ce742-a0b9-4acc-b1a6-73c2f9313d08.3.520ce742-a0b9-4acc-b1a6-73c2f9313d08, 5a64b61f-5c5f-48dd-94e7-685ae0e6aab0.3.5a64b61f-5c5f-48dd-94e7-685ae0e6aab0`
	if storeCode != ExitUsage || filesCode != ExitUsage || !strings.Contains(storeErr, wantErr) || !strings.Contains(filesErr, wantErr) {
		t.Errorf("ambiguous prefix: store exit %d %q, files exit %d %q", storeCode, storeErr, filesCode, filesErr)
	}

	// bes streams tells the two tool streams of the invocation apart by
	// their source.
	stdout, _, code := runCLI(t, "streams", "--store", dir)
	if code != 0 || !strings.Contains(stdout, "SOURCE") || !strings.Contains(stdout, "bes_test_mixed.obe") || !strings.Contains(stdout, "bes_test_mixed.bep") {
		t.Errorf("streams of one invocation twice:\n%s", stdout)
	}
	stdout, _, code = runCLI(t, append([]string{"streams"}, files...)...)
	if code != 0 || !strings.Contains(stdout, "SOURCE") || !strings.Contains(stdout, "bes_test_mixed.obe") || !strings.Contains(stdout, "bes_test_mixed.bep") {
		t.Errorf("streams of files, one invocation twice:\n%s", stdout)
	}
}
