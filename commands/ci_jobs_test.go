package commands

import (
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The CI jobs of README.md ("CI jobs: GitHub Actions and GitLab CI"), run
// as the CI systems would run their shell against Bazel's files in
// testdata/: a freshly built bes, and stand-ins for what a test cannot do
// (bazel and bazelisk write a corpus file where --build_event_binary_file
// says and exit as that Bazel did; go install is a no-op since bes is
// built already; curl records what it would post).

// ciCase is one build the jobs run on.
type ciCase struct {
	bep        string // file in testdata
	bazelExit  int    // the exit code of the Bazel that wrote it
	gate       int    // the gate's exit status: the verdict
	tables     int    // tables of the step summary
	junitTests int    // testcases of junit.xml
}

var ciCases = []ciCase{
	{"test_mixed.bep", 3, ExitTestFail, 3, 9},               // TESTS_FAILED; a flaky test passed
	{"build_ok.bep", 0, ExitOK, 1, 0},                       // no failure, no test: sentences
	{"build_keep_going_fail.bep", 1, ExitBuildFail, 2, 0},   // BUILD_FAILURE
	{"truncated-test_mixed.bep", 137, ExitIncomplete, 3, 9}, // Bazel killed: the reports are written all the same
}

// readmeJobs returns the YAML of the fenced yaml blocks of README's CI
// jobs section.
func readmeJobs(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "\n### CI jobs: GitHub Actions and GitLab CI\n")
	if !ok {
		t.Fatal("README.md has no section ### CI jobs: GitHub Actions and GitLab CI")
	}
	if i := regexp.MustCompile(`\n##+ `).FindStringIndex(sec); i != nil {
		sec = sec[:i[0]]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)\n```yaml\n(.*?)\n```\n").FindAllStringSubmatch(sec, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) != 2 {
		t.Fatalf("%d yaml blocks in README's CI jobs section, want 2 (GitHub Actions, GitLab CI)", len(blocks))
	}
	return blocks
}

// ciBench is a directory with a bes built from this tree, the stand-ins,
// and a working directory.
type ciBench struct {
	gopath, stubs, work string
}

func newCIBench(t *testing.T) *ciBench {
	t.Helper()
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	dir := t.TempDir()
	b := &ciBench{gopath: filepath.Join(dir, "gopath"), stubs: filepath.Join(dir, "stubs"), work: filepath.Join(dir, "work")}
	build := exec.Command(gotool, "build", "-o", filepath.Join(b.gopath, "bin", "bes"), ".")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bazel := `#!/bin/sh
for a in "$@"; do
  case "$a" in --build_event_binary_file=*) cp "$BES_TEST_BEP" "${a#*=}" ;; esac
done
echo "bazel stand-in: $*" >&2
exit "$BES_TEST_BAZEL_EXIT"
`
	stubs := map[string]string{
		"bazel":    bazel,
		"bazelisk": bazel,
		"go": `#!/bin/sh
case "$1 $2" in
  "env GOPATH") echo "$BES_TEST_GOPATH" ;;
  install\ *) echo "go stand-in: $* (built already)" >&2 ;;
  *) echo "go stand-in: unexpected go $*" >&2; exit 1 ;;
esac
`,
		"curl": `#!/bin/sh
printf '%s\n' "$@" > "$BES_TEST_CURL"
for a in "$@"; do
  case "$a" in body@*) cp "${a#body@}" "$BES_TEST_CURL.body" ;; esac
done
`,
	}
	for _, d := range []string{b.stubs, b.work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, script := range stubs {
		if err := os.WriteFile(filepath.Join(b.stubs, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// run runs a script as GitHub's and GitLab's runners run bash (-e, and
// pipefail), in the working directory, with env added, and returns its
// exit status and output.
func (b *ciBench) run(t *testing.T, c ciCase, path, script string, env ...string) (int, string) {
	t.Helper()
	bep, err := filepath.Abs(tdPath(c.bep))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script)
	cmd.Dir = b.work
	cmd.Env = append(os.Environ(),
		"PATH="+path,
		"BES_TEST_BEP="+bep,
		fmt.Sprintf("BES_TEST_BAZEL_EXIT=%d", c.bazelExit),
		"BES_TEST_GOPATH="+b.gopath,
		"BES_TEST_CURL="+filepath.Join(b.work, "..", "curl.args"),
	)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// junitTests parses a JUnit document and counts its testcases.
func junitTests(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName xml.Name `xml:"testsuites"`
		Suites  []struct {
			Cases []struct{} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	n := 0
	for _, s := range doc.Suites {
		n += len(s.Cases)
	}
	return n
}

// checkSummary checks a step summary: the documents of summary, failures
// and tests, rendered (when marked is there) as their headings and tables.
func checkSummary(t *testing.T, c ciCase, md string) {
	t.Helper()
	headings := regexp.MustCompile(`(?m)^### bes (\w+): `).FindAllStringSubmatch(md, -1)
	var views []string
	for _, h := range headings {
		views = append(views, h[1])
	}
	if fmt.Sprint(views) != "[summary failures tests]" {
		t.Errorf("step summary: documents %v, want summary, failures, tests:\n%s", views, md)
	}
	if strings.Contains(md, "file://") {
		t.Errorf("step summary: a file:// URI:\n%s", md)
	}
	if !markedAvailable(t) {
		return
	}
	tables, h3 := 0, 0
	for _, b := range htmlBlocks(renderMarkdown(t, md)) {
		switch b.tag {
		case "table":
			tables++
		case "h3":
			h3++
		}
	}
	if tables != c.tables || h3 != 3 {
		t.Errorf("step summary renders as %d headings and %d tables, want 3 and %d:\n%s", h3, tables, c.tables, md)
	}
}

// TestREADMEGitHubJob runs README's GitHub Actions job: its run steps in
// order, the bazel step's status ignored (continue-on-error), the upload
// step's file checked.
func TestREADMEGitHubJob(t *testing.T) {
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Name            string            `yaml:"name"`
				Uses            string            `yaml:"uses"`
				If              string            `yaml:"if"`
				Run             string            `yaml:"run"`
				With            map[string]string `yaml:"with"`
				ContinueOnError bool              `yaml:"continue-on-error"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal([]byte(readmeJobs(t)[0]), &wf); err != nil {
		t.Fatalf("README's GitHub Actions job: %v", err)
	}
	job, ok := wf.Jobs["test"]
	if !ok || len(wf.Jobs) != 1 {
		t.Fatalf("want one job, test: %+v", wf.Jobs)
	}
	b := newCIBench(t)
	// setup-go puts GOPATH/bin on PATH.
	path := b.stubs + string(os.PathListSeparator) + filepath.Join(b.gopath, "bin") + string(os.PathListSeparator) + os.Getenv("PATH")
	for _, c := range ciCases {
		t.Run(c.bep, func(t *testing.T) {
			summary := filepath.Join(t.TempDir(), "step_summary.md")
			temp := t.TempDir()
			ran := map[string]bool{}
			for _, st := range job.Steps {
				if st.Run == "" {
					if strings.HasPrefix(st.Uses, "actions/upload-artifact@") {
						p := filepath.Join(b.work, st.With["path"])
						if n := junitTests(t, p); n != c.junitTests {
							t.Errorf("%s: %s holds %d testcases, want %d", st.Name, st.With["path"], n, c.junitTests)
						}
						ran[st.Name] = true
					}
					continue
				}
				code, out := b.run(t, c, path, st.Run, "GITHUB_STEP_SUMMARY="+summary, "RUNNER_TEMP="+temp, "GITHUB_WORKSPACE="+b.work)
				ran[st.Name] = true
				want := ExitOK
				switch {
				case strings.HasPrefix(st.Run, "bazel "):
					want = c.bazelExit
					if c.bazelExit != 0 && !st.ContinueOnError {
						t.Errorf("%s: exits %d without continue-on-error: the reports would not be written", st.Name, code)
					}
				case st.Name == "Gate":
					want = c.gate
				default:
					if st.If != "${{ !cancelled() }}" && st.Name != "Install bes" {
						t.Errorf("%s: if %q: want it to run after a failed step", st.Name, st.If)
					}
				}
				if code != want {
					t.Errorf("step %s: exit %d, want %d:\n%s", st.Name, code, want, out)
				}
			}
			for _, name := range []string{"Install bes", "Bazel test", "JUnit report", "Upload JUnit", "Step summary", "Gate"} {
				if !ran[name] {
					t.Errorf("no step %q", name)
				}
			}
			md, err := os.ReadFile(summary)
			if err != nil {
				t.Fatal(err)
			}
			checkSummary(t, c, string(md))
		})
	}
}

// TestREADMEGitLabJob runs README's GitLab CI job: before_script and
// script as one bash -e script, as GitLab's runner does, in a merge
// request pipeline with a token, so that the note is posted (to curl's
// stand-in).
func TestREADMEGitLabJob(t *testing.T) {
	var pipeline map[string]struct {
		Variables    map[string]string `yaml:"variables"`
		BeforeScript []string          `yaml:"before_script"`
		Script       []string          `yaml:"script"`
		Artifacts    struct {
			When    string            `yaml:"when"`
			Paths   []string          `yaml:"paths"`
			Reports map[string]string `yaml:"reports"`
		} `yaml:"artifacts"`
	}
	if err := yaml.Unmarshal([]byte(readmeJobs(t)[1]), &pipeline); err != nil {
		t.Fatalf("README's GitLab CI job: %v", err)
	}
	job, ok := pipeline["bazel-test"]
	if !ok || len(pipeline) != 1 {
		t.Fatalf("want one job, bazel-test: %+v", pipeline)
	}
	if job.Artifacts.When != "always" || job.Artifacts.Reports["junit"] != "junit.xml" {
		t.Errorf("artifacts: %+v; want the JUnit report uploaded always", job.Artifacts)
	}
	b := newCIBench(t)
	var script strings.Builder
	for _, line := range append(job.BeforeScript, job.Script...) {
		script.WriteString(line + "\n")
	}
	env := []string{
		"CI_API_V4_URL=https://gitlab.example.com/api/v4", "CI_PROJECT_ID=42", "CI_MERGE_REQUEST_IID=7", "BES_NOTE_TOKEN=glpat-test",
	}
	for k, v := range job.Variables {
		env = append(env, k+"="+v)
	}
	path := b.stubs + string(os.PathListSeparator) + os.Getenv("PATH")
	for _, c := range ciCases {
		t.Run(c.bep, func(t *testing.T) {
			curl := filepath.Join(b.work, "..", "curl.args")
			os.Remove(curl)
			code, out := b.run(t, c, path, script.String(), env...)
			if code != c.gate {
				t.Errorf("job: exit %d, want the verdict %d:\n%s", code, c.gate, out)
			}
			if n := junitTests(t, filepath.Join(b.work, job.Artifacts.Reports["junit"])); n != c.junitTests {
				t.Errorf("junit.xml: %d testcases, want %d", n, c.junitTests)
			}
			md, err := os.ReadFile(filepath.Join(b.work, job.Artifacts.Paths[0]))
			if err != nil {
				t.Fatal(err)
			}
			checkSummary(t, c, string(md))
			args, err := os.ReadFile(curl)
			if err != nil {
				t.Fatalf("no note posted: %v\n%s", err, out)
			}
			if !strings.Contains(string(args), "\nhttps://gitlab.example.com/api/v4/projects/42/merge_requests/7/notes\n") ||
				!strings.Contains(string(args), "\nPRIVATE-TOKEN: glpat-test\n") {
				t.Errorf("curl: %q", args)
			}
			if body, err := os.ReadFile(curl + ".body"); err != nil || string(body) != string(md) {
				t.Errorf("the note is not summary.md (%v)", err)
			}
		})
	}
}
