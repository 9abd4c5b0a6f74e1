package commands

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// coverageStream is a small `bazel test` stream as Bazel 7.0-7.1 write it
// under Skymeld: a progress event announces the payload-less event
// {"id":{"coverageActionsFinished":{}}} (BuildEventId field 27), which
// follows it. Built here from the generated messages; the event itself is
// also checked against a hand-made protowire encoding.
func coverageStream(t *testing.T) []*bes.BuildEvent {
	t.Helper()
	progress := func(n int32) *bes.BuildEventId {
		return &bes.BuildEventId{Id: &bes.BuildEventId_Progress{Progress: &bes.BuildEventId_ProgressId{OpaqueCount: n}}}
	}
	coverage := &bes.BuildEventId{Id: &bes.BuildEventId_CoverageActionsFinished{CoverageActionsFinished: &bes.BuildEventId_CoverageActionsFinishedId{}}}
	finished := &bes.BuildEventId{Id: &bes.BuildEventId_BuildFinished{BuildFinished: &bes.BuildEventId_BuildFinishedId{}}}
	return []*bes.BuildEvent{
		{
			Id:       &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}},
			Children: []*bes.BuildEventId{progress(0), finished},
			Payload: &bes.BuildEvent_Started{Started: &bes.BuildStarted{
				Uuid: "c0ffee00-7171-4000-8000-000000000027", Command: "test", BuildToolVersion: "7.1.1",
			}},
		},
		{
			Id:       progress(0),
			Children: []*bes.BuildEventId{progress(1), coverage},
			Payload:  &bes.BuildEvent_Progress{Progress: &bes.Progress{Stderr: "INFO: Analyzed 1 target.\n"}},
		},
		{Id: coverage},
		{
			Id:      progress(1),
			Payload: &bes.BuildEvent_Progress{Progress: &bes.Progress{Stderr: "INFO: Build completed successfully.\n"}},
		},
		{
			Id:          finished,
			LastMessage: true,
			Payload: &bes.BuildEvent_Finished{Finished: &bes.BuildFinished{
				ExitCode: &bes.BuildFinished_ExitCode{Name: "SUCCESS"},
			}},
		},
	}
}

// TestCoverageActionsFinished: the event id Bazel 7.0-7.1 write as field
// 27 decodes from the binary and the JSON file, and dump names its kind.
func TestCoverageActionsFinished(t *testing.T) {
	events := coverageStream(t)

	// BuildEvent{id: BuildEventId{coverage_actions_finished (27): {}}}, by hand.
	var id []byte
	id = protowire.AppendTag(id, 27, protowire.BytesType)
	id = protowire.AppendBytes(id, nil)
	var want []byte
	want = protowire.AppendTag(want, 1, protowire.BytesType)
	want = protowire.AppendBytes(want, id)
	got, err := proto.Marshal(events[2])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("coverageActionsFinished encodes as % x, Bazel's field 27 is % x", got, want)
	}
	back := &bes.BuildEvent{}
	if err := proto.Unmarshal(want, back); err != nil {
		t.Fatal(err)
	}
	if back.GetId().GetCoverageActionsFinished() == nil || len(back.ProtoReflect().GetUnknown()) > 0 || len(back.GetId().ProtoReflect().GetUnknown()) > 0 {
		t.Fatalf("field 27 does not decode as coverage_actions_finished: %v", back)
	}

	dir := t.TempDir()
	var bin bytes.Buffer
	for _, ev := range events {
		if _, err := protodelim.MarshalTo(&bin, ev); err != nil {
			t.Fatal(err)
		}
	}
	binPath := filepath.Join(dir, "coverage.bep")
	if err := os.WriteFile(binPath, bin.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	for i, ev := range events {
		if i == 2 {
			js.WriteString(`{"id":{"coverageActionsFinished":{}}}` + "\n") // Bazel's own line
			continue
		}
		b, err := protojson.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		js.Write(b)
		js.WriteByte('\n')
	}
	jsonPath := filepath.Join(dir, "coverage.json")
	if err := os.WriteFile(jsonPath, js.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	strict := &bes.BuildEvent{}
	if err := protojson.Unmarshal([]byte(`{"id":{"coverageActionsFinished":{}}}`), strict); err != nil {
		t.Fatalf("Bazel's JSON line does not decode strictly: %v", err)
	}
	if strict.GetId().GetCoverageActionsFinished() == nil {
		t.Fatalf("JSON line decodes as %v", strict)
	}

	for _, path := range []string{binPath, jsonPath} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "dump", path)
			if code != 0 {
				t.Fatalf("dump: exit %d: %s", code, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			// The header, the five events and the stream's finish event.
			if len(lines) < 6 {
				t.Fatalf("dump printed %d lines:\n%s", len(lines), stdout)
			}
			var kinds []string
			for _, l := range lines[1:6] {
				f := strings.Fields(l)
				if len(f) < 2 {
					t.Fatalf("row without kind: %q", l)
				}
				kinds = append(kinds, f[1])
			}
			wantKinds := []string{"started", "progress", "coverageActionsFinished", "progress", "finished"}
			if strings.Join(kinds, " ") != strings.Join(wantKinds, " ") {
				t.Errorf("dump KIND column: %v, want %v\n%s", kinds, wantKinds, stdout)
			}
			if f := strings.Fields(lines[3]); f[0] != "3" || len(f) != 2 {
				t.Errorf("coverageActionsFinished row %q, want seq 3 and an empty id summary", lines[3])
			}

			stdout, stderr, code = runCLI(t, "dump", "--format", "ndjson", path)
			if code != 0 {
				t.Fatalf("dump ndjson: exit %d: %s", code, stderr)
			}
			nd := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			var obe struct {
				Event struct {
					BazelEvent map[string]json.RawMessage `json:"bazelEvent"`
				} `json:"event"`
			}
			if err := json.Unmarshal([]byte(nd[2]), &obe); err != nil {
				t.Fatal(err)
			}
			if got := string(obe.Event.BazelEvent["id"]); got != `{"coverageActionsFinished":{}}` {
				t.Errorf("ndjson id of event 3: %s, want {\"coverageActionsFinished\":{}}", got)
			}

			stdout, stderr, code = runCLI(t, "query", "--kind", "coverageActionsFinished", path)
			if code != 0 {
				t.Fatalf("query --kind coverageActionsFinished: exit %d: %s", code, stderr)
			}
			if n := strings.Count(stdout, "coverageActionsFinished"); n != 1 {
				t.Errorf("query --kind coverageActionsFinished printed %d matching rows:\n%s", n, stdout)
			}
		})
	}
}
