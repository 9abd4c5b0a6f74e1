package commands

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// runCLI runs bes with args (without the program name) and returns its
// stdout, stderr and exit status.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	app := NewApp("test")
	app.Writer = &out
	app.ErrWriter = &errb
	err := Run(context.Background(), app, append([]string{"bes"}, args...))
	if err != nil && !IsReported(err) {
		errb.WriteString(Diagnostic(err))
	}
	return out.String(), errb.String(), ExitCode(err)
}

// cliCase is one command line and what it must print. Inputs are relative
// to the module root; the working directory of the tests is commands/.
type cliCase struct {
	name   string
	args   []string
	golden string // file in testdata/golden holding the expected stdout; "" = not checked
	stdout string // substring stdout must contain
	stderr string // substring stderr must contain; "" = stderr must be empty
	code   int
}

func TestCLI(t *testing.T) {
	td := func(name string) string { return filepath.Join("..", "testdata", name) }
	storeDir := t.TempDir()
	s := "--store=" + storeDir
	cases := []cliCase{
		{name: "streams of files", args: []string{"streams", td("test_mixed.bep"), td("build_ok.json"), td("bes_test_mixed.obe")}, golden: "streams_files.txt"},
		{name: "dump bep table", args: []string{"dump", td("build_ok.bep")}, golden: "dump_build_ok.txt"},
		{name: "dump lifecycle", args: []string{"dump", td("bes_test_mixed.lifecycle.obe")}, golden: "dump_lifecycle.txt"},
		{name: "ingest", args: []string{"ingest", s, td("test_mixed.bep"), td("build_keep_going_fail.bep"), td("bes_test_mixed.obe"), td("bes_test_mixed.lifecycle.obe")}, golden: "ingest.txt"},
		{name: "ingest again is harmless", args: []string{"ingest", s, td("test_mixed.bep")}, stdout: "unchanged"},
		{name: "ingest a cut copy of a stored stream is harmless", args: []string{"ingest", s, td("truncated-test_mixed.bep")},
			stdout: "unchanged", stderr: "truncated message", code: ExitPartial},
		{name: "streams of the store", args: []string{"streams", s}, golden: "streams_store.txt"},
		{name: "streams --match", args: []string{"streams", s, "--match", `\.1\.`, "--format", "json"}, golden: "streams_match_lifecycle.json"},
		{name: "streams --match none", args: []string{"streams", s, "--match", "no-such-stream", "--format", "json"}, stdout: "[]\n"},
		{name: "dump by invocation id", args: []string{"dump", s, "8b58a6b7-1857-43e5-b701-ebbabc33fc5c"}, golden: "dump_bes_invocation.txt"},
		{name: "dump unknown stream", args: []string{"dump", s, "nope"}, stderr: `"nope": stream not found in store`, code: ExitError},
		{name: "truncated file", args: []string{"streams", td("truncated-test_mixed.bep")},
			stdout: "partial", stderr: "truncated-test_mixed.bep: byte 24361 (event 62)", code: ExitPartial},
		{name: "not a BEP file", args: []string{"dump", td("README.md")}, stderr: "README.md: byte 0: not a BEP file", code: ExitError},
		{name: "dump needs an argument", args: []string{"dump", s}, stderr: "name a STREAM", code: ExitUsage},
		{name: "bad format", args: []string{"streams", "--format", "xml", td("query.bep")}, stderr: "--format must be one of", code: ExitUsage},
		{name: "bad regex", args: []string{"streams", s, "--match", "("}, stderr: "--match", code: ExitUsage},
		{name: "flags after arguments", args: []string{"streams", td("query.bep"), "--format", "json"}, stdout: `"command": "query"`},
		{name: "unknown flag", args: []string{"streams", "--nope"}, stderr: "flag provided but not defined", code: ExitUsage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, c.args...)
			if code != c.code {
				t.Errorf("exit status %d, want %d\nstderr: %s", code, c.code, stderr)
			}
			if c.stderr == "" && stderr != "" {
				t.Errorf("unexpected stderr: %s", stderr)
			}
			if c.stderr != "" {
				if !strings.Contains(stderr, c.stderr) {
					t.Errorf("stderr %q does not contain %q", stderr, c.stderr)
				}
				if !strings.HasSuffix(stderr, "\n") || strings.HasSuffix(stderr, "\n\n") {
					t.Errorf("stderr must end in exactly one newline: %q", stderr)
				}
			}
			if c.stdout != "" && !strings.Contains(stdout, c.stdout) {
				t.Errorf("stdout does not contain %q:\n%s", c.stdout, stdout)
			}
			if c.golden != "" {
				checkGolden(t, c.golden, stdout)
			}
		})
	}
}

// checkGolden compares got with testdata/golden/name, or rewrites the file
// under -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./commands -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test ./commands -update rewrites it; review the diff):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, wl, gl)
			if shown++; shown == 5 {
				break
			}
		}
	}
	return b.String()
}
