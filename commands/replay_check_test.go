package commands

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"
)

// TestReplayInvocationIDs (issue 14): bes replay refuses, before sending
// anything, a stream whose id has no invocation id, naming it; and warns
// when --invocation-id contradicts the invocation id inside the events
// (BuildStarted.uuid of the real Bazel 4.2.3 stream).
func TestReplayInvocationIDs(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, dir)
	to := "grpc://" + srv.addr

	// The real tool stream with its stream ids' invocation id removed.
	evs := readToolOBEs(t)
	noInv := filepath.Join(t.TempDir(), "no-invocation.obe")
	f, err := os.Create(noInv)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	for _, ev := range evs {
		ev.StreamId.InvocationId = ""
		if _, err := protodelim.MarshalTo(bw, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, stderr, code := runCLI(t, "replay", noInv, "--to", to)
	wantKey := evs[0].StreamId.BuildId + ".3."
	if code != ExitError || !strings.Contains(stderr, "stream "+wantKey+" has no invocation id") {
		t.Errorf("replay of a stream without invocation id: exit %d, stderr %q; want %d naming stream %s", code, stderr, ExitError, wantKey)
	}
	if out, _, _ := runCLI(t, "streams", "--store", dir, "--format", "json"); strings.Contains(out, evs[0].StreamId.BuildId) {
		t.Errorf("the refused stream was stored:\n%s", out)
	}

	const other = "11111111-2222-3333-4444-555555555555"
	_, stderr, code = runCLI(t, "replay", td("bes_test_mixed.obe"), "--to", to, "--invocation-id", other)
	want := "bes: warning: --invocation-id " + other + " contradicts the invocation id 8b58a6b7-1857-43e5-b701-ebbabc33fc5c inside the events of stream 0fff9624-6330-4348-b7e6-0d35256338b9.3.8b58a6b7-1857-43e5-b701-ebbabc33fc5c (BuildStarted.uuid)"
	if code != ExitOK || !strings.Contains(stderr, want) {
		t.Errorf("replay --invocation-id %s: exit %d, stderr %q; want 0 and %q", other, code, stderr, want)
	}
	_, stderr, _ = runCLI(t, "replay", td("bes_test_mixed.obe"), "--to", to, "--invocation-id", "8b58a6b7-1857-43e5-b701-ebbabc33fc5c")
	if strings.Contains(stderr, "contradicts") {
		t.Errorf("replay with the events' own invocation id warned: %q", stderr)
	}
}

// TestServeKeepsProjectAndKeywords (issue 14): the project_id and
// notification_keywords of the requests that open a stream (bes replay's
// --project-id and --keyword, Bazel's --project_id and --bes_keywords)
// are kept in the stream's entry and listed by bes streams.
func TestServeKeepsProjectAndKeywords(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, dir)
	if _, stderr, code := runCLI(t, "replay", td("bes_test_mixed.obe"), "--to", "grpc://"+srv.addr, "--lifecycle",
		"--project-id", "my-project", "--keyword", "command_name=test", "--keyword", "team=infra"); code != ExitOK {
		t.Fatalf("replay: exit %d\n%s", code, stderr)
	}
	out, stderr, code := runCLI(t, "streams", "--store", dir, "--format", "json")
	if code != ExitOK {
		t.Fatalf("streams: exit %d\n%s", code, stderr)
	}
	var rows []struct {
		Key, Component, Source string
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d streams, want the tool stream and two lifecycle streams:\n%s", len(rows), out)
	}
	for _, r := range rows {
		want := " (project_id my-project)"
		if r.Component == "TOOL" {
			// besclient adds Bazel's own keywords before the user's.
			want = " (project_id my-project; keywords command_name=test, protocol_name=BEP, command_name=test, team=infra)"
		}
		if !strings.HasPrefix(r.Source, "127.0.0.1:") || !strings.HasSuffix(r.Source, want) {
			t.Errorf("stream %s (%s): source %q, want 127.0.0.1:PORT%s", r.Key, r.Component, r.Source, want)
		}
	}
}
