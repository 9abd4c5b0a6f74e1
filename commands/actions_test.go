package commands

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/types/known/timestamppb"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/bep/failuredetails"
)

// writeBEP writes events as Bazel's binary file.
func writeBEP(t *testing.T, path string, events ...*bes.BuildEvent) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, e := range events {
		if _, err := protodelim.MarshalTo(f, e); err != nil {
			t.Fatal(err)
		}
	}
}

func TestActionsSlowestFirst(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	action := func(label, mnemonic string, start, dur time.Duration, fail int32) *bes.BuildEvent {
		a := &bes.ActionExecuted{
			Success: fail == 0, Type: mnemonic,
			StartTime: timestamppb.New(t0.Add(start)), EndTime: timestamppb.New(t0.Add(start + dur)),
		}
		if fail != 0 {
			a.ExitCode = 1 // Bazel's, for any failure
			a.FailureDetail = &failuredetails.FailureDetail{Message: "failed",
				Category: &failuredetails.FailureDetail_Spawn{Spawn: &failuredetails.Spawn{Code: failuredetails.Spawn_NON_ZERO_EXIT, SpawnExitCode: fail}}}
		}
		return &bes.BuildEvent{
			Id: &bes.BuildEventId{Id: &bes.BuildEventId_ActionCompleted{ActionCompleted: &bes.BuildEventId_ActionCompletedId{
				Label: label, PrimaryOutput: "bazel-out/" + label[2:],
			}}},
			Payload: &bes.BuildEvent_Action{Action: a},
		}
	}
	path := filepath.Join(t.TempDir(), "actions.bep")
	writeBEP(t, path,
		&bes.BuildEvent{
			Id:      &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}},
			Payload: &bes.BuildEvent_Started{Started: &bes.BuildStarted{Uuid: "inv-actions", Command: "build"}},
		},
		action("//a:fast", "Genrule", 0, 100*time.Millisecond, 0),
		action("//a:slow", "CppCompile", 0, 3*time.Second, 0),
		action("//a:broken", "CppLink", time.Second, time.Second, 42),
		&bes.BuildEvent{
			Id:          &bes.BuildEventId{Id: &bes.BuildEventId_BuildFinished{BuildFinished: &bes.BuildEventId_BuildFinishedId{}}},
			Payload:     &bes.BuildEvent_Finished{Finished: &bes.BuildFinished{ExitCode: &bes.BuildFinished_ExitCode{Name: "BUILD_FAILURE", Code: 1}}},
			LastMessage: true,
		},
	)
	out, _, code := runCLI(t, "actions", path, "--format", "json")
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	var rows []actionRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Label)
	}
	if len(rows) != 3 || got[0] != "//a:slow" || got[1] != "//a:broken" || got[2] != "//a:fast" {
		t.Fatalf("order %q, want slowest first", got)
	}
	if rows[1].ExitCode != 42 || rows[1].Success || *rows[1].Duration != 1 {
		t.Errorf("failed action %+v: want exit code 42 (spawn_exit_code), 1s", rows[1])
	}
	out, _, _ = runCLI(t, "actions", path, "--failed", "--format", "json")
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].Label != "//a:broken" {
		t.Errorf("--failed: %v %s", err, out)
	}
	// Bazel 4.2.3 with --build_event_publish_all_actions: every action
	// of the 4000-target build, none failed.
	out, _, code = runCLI(t, "actions", tdPath("large_test.bep.gz"), "--format", "json")
	if err := json.Unmarshal([]byte(out), &rows); err != nil || code != ExitOK || len(rows) != 7001 {
		t.Errorf("large_test: exit %d, %d actions, %v", code, len(rows), err)
	}
	// Without it, a successful build lists none.
	if _, _, code := runCLI(t, "actions", tdPath("build_ok.bep")); code != ExitNoData {
		t.Errorf("build_ok: exit %d, want %d", code, ExitNoData)
	}
}
