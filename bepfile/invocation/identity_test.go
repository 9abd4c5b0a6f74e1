package invocation

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// readStreamsFile reads the streams of a file of testdata.
func readStreamsFile(t *testing.T, name string) []*memStream {
	t.Helper()
	r, err := bepfile.Open(filepath.Join("..", "..", "testdata", name), bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return readStreams(t, r)
}

// User and Host from the workspace status Bazel 4.2.3 wrote (BUILD_USER,
// BUILD_HOST; no commit or branch: no --workspace_status_command); the
// commit from a STABLE_GIT_COMMIT item of a public file when /work/shared
// has it; every path (fast and full) gives the same.
func TestIdentity(t *testing.T) {
	for _, name := range []string{"test_mixed.bep", "test_mixed.json", "build_keep_going_fail.bep", "test_cached.bep"} {
		for _, st := range readStreamsFile(t, name) {
			inv := buildWith(t, st, func(*Builder) {})
			if inv.User != "root" || inv.Host != "vm" || inv.Commit != "" || inv.Branch != "" {
				t.Errorf("%s: user %q host %q commit %q branch %q", name, inv.User, inv.Host, inv.Commit, inv.Branch)
			}
		}
	}
	path := filepath.Join("..", "..", "..", "shared", "public-bep", "dpoluyanov_bazel-wsl_bep.bin")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("public BEP file not found: %v", err)
	}
	r, err := bepfile.Open(path, bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	sts := readStreams(t, r)
	if len(sts) != 1 {
		t.Fatalf("%d streams", len(sts))
	}
	inv := buildWith(t, sts[0], func(*Builder) {})
	if inv.User != "dpoluyanov" || inv.Host != "OSPBNTB3080" || inv.Commit != "4e1e145a330211b9c82a55a589eebda08b5bc984" || inv.Branch != "" {
		t.Errorf("public file: user %q host %q commit %q branch %q", inv.User, inv.Host, inv.Commit, inv.Branch)
	}
}

// BuildMetadata's COMMIT_SHA and BRANCH_NAME win over the workspace
// status, whichever comes first.
func TestIdentityMetadataFirst(t *testing.T) {
	b := NewBuilder(nil)
	b.add(1, &bes.BuildEvent{Payload: &bes.BuildEvent_BuildMetadata{BuildMetadata: &bes.BuildMetadata{
		Metadata: map[string]string{"COMMIT_SHA": "abc", "BRANCH_NAME": "main", "ROLE": "CI"}}}})
	b.add(2, &bes.BuildEvent{Payload: &bes.BuildEvent_WorkspaceStatus{WorkspaceStatus: &bes.WorkspaceStatus{Item: []*bes.WorkspaceStatus_Item{
		{Key: "BUILD_USER", Value: "ci"}, {Key: "STABLE_GIT_COMMIT", Value: "def"}, {Key: "BUILD_SCM_BRANCH", Value: "dev"}}}}})
	inv := b.Invocation()
	if inv.User != "ci" || inv.Host != "" || inv.Commit != "abc" || inv.Branch != "main" {
		t.Errorf("user %q host %q commit %q branch %q", inv.User, inv.Host, inv.Commit, inv.Branch)
	}
	b = NewBuilder(nil)
	b.add(1, &bes.BuildEvent{Payload: &bes.BuildEvent_WorkspaceStatus{WorkspaceStatus: &bes.WorkspaceStatus{Item: []*bes.WorkspaceStatus_Item{
		{Key: "BUILD_SCM_REVISION", Value: "def"}, {Key: "STABLE_GIT_BRANCH", Value: "dev"}}}}})
	if inv := b.Invocation(); inv.Commit != "def" || inv.Branch != "dev" {
		t.Errorf("workspace status only: commit %q branch %q", inv.Commit, inv.Branch)
	}
}

// TargetList: every target with its kind and last outcome, in label
// order, as build_keep_going_fail.json says (//broken:bad_dep aborted in
// analysis, three genrules failed); nil unless wanted.
func TestTargetList(t *testing.T) {
	sts := readStreamsFile(t, "build_keep_going_fail.bep")
	if inv := buildWith(t, sts[0], func(*Builder) {}); inv.TargetList != nil {
		t.Errorf("TargetList not asked for: %d targets", len(inv.TargetList))
	}
	inv := buildWith(t, sts[0], func(b *Builder) { b.targetsWanted = true })
	if len(inv.TargetList) != 21 || inv.Targets.Configured != 21 {
		t.Fatalf("%d targets, %d configured", len(inv.TargetList), inv.Targets.Configured)
	}
	want := map[string]Target{
		"//broken:bad_dep":            {"//broken:bad_dep", "genrule rule", TargetAborted, "ANALYSIS_FAILURE"},
		"//broken:builds_fine":        {"//broken:builds_fine", "genrule rule", TargetBuilt, ""},
		"//broken:depends_on_failure": {"//broken:depends_on_failure", "genrule rule", TargetFailed, ""},
		"//broken:fails_to_build":     {"//broken:fails_to_build", "genrule rule", TargetFailed, ""},
		"//broken:missing_input":      {"//broken:missing_input", "genrule rule", TargetFailed, ""},
		"//cc:greet_test":             {"//cc:greet_test", "cc_test rule", TargetBuilt, ""},
		"//gen:tool":                  {"//gen:tool", "sh_binary rule", TargetBuilt, ""},
	}
	counts := map[string]int{}
	for i, tg := range inv.TargetList {
		counts[tg.Outcome]++
		if i > 0 && inv.TargetList[i-1].Label >= tg.Label {
			t.Errorf("not in label order at %s", tg.Label)
		}
		if w, ok := want[tg.Label]; ok && *tg != w {
			t.Errorf("%+v, want %+v", *tg, w)
		}
		if tg.Success() != (tg.Outcome == TargetBuilt) {
			t.Errorf("%s: Success %v", tg.Label, tg.Success())
		}
	}
	if counts[TargetBuilt] != inv.Targets.Built || counts[TargetFailed] != 3 || counts[TargetAborted] != 1 || counts[TargetBuilt] != 17 {
		t.Errorf("outcomes %v, Targets %+v", counts, inv.Targets)
	}
}
