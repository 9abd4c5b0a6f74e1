package commands

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// needBazel returns the Bazel to run, skipping the test when there is none
// (failing it in CI, where .ci/run installs bazel-bootstrap) or when -short.
func needBazel(t *testing.T) string {
	t.Helper()
	bazel := findBazel()
	if bazel == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set but no Bazel was found (bazel-4 or bazel in PATH)")
		}
		t.Skip("no Bazel (bazel-4 or bazel in PATH): install Debian's bazel-bootstrap (apt-get install bazel-bootstrap) to run this test")
	}
	if testing.Short() {
		t.Skip("runs Bazel")
	}
	return bazel
}

// TestBazelKilledMidBuild runs a real Bazel (testdata/bazel/run_bazel.sh
// files) on //gen:hello and //gen:slow, a genrule that sleeps two minutes,
// writing --build_event_binary_file and --build_event_json_file. Once the
// JSON file shows //gen:hello built (so the build is executing, and
// //gen:slow with it), it SIGKILLs the Bazel server, whose pid Bazel gave
// in BuildStarted.server_pid. What the killed Bazel left, the binary file,
// the JSON file (cut on an event boundary: Bazel writes it a line at a
// time) and the binary file cut again in the middle of its last frame,
// must not pass: summary, tests and failures exit 8 (ExitIncomplete, the
// invocation did not finish) from each. `bes log` prints the console
// output Bazel had written up to the kill.
func TestBazelKilledMidBuild(t *testing.T) {
	bazel := needBazel(t)
	script, err := filepath.Abs(filepath.Join("..", "testdata", "bazel", "run_bazel.sh"))
	if err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	t.Cleanup(func() { // Bazel's output base has read-only directories
		filepath.WalkDir(scratch, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	bep, jsonFile := filepath.Join(scratch, "build.bep"), filepath.Join(scratch, "build.json")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", script, "files", bep, jsonFile, scratch, "//gen:hello", "//gen:slow")
	cmd.Env = append(os.Environ(), "BAZEL="+bazel)
	cmd.WaitDelay = 10 * time.Second
	var console bytes.Buffer // read only once the client has ended
	cmd.Stdout, cmd.Stderr = &console, &console
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { ended <- cmd.Wait() }()

	server := 0 // the Bazel server's pid, once known
	t.Cleanup(func() {
		// Whatever happened, leave no Bazel server behind: kill ours if
		// it still runs (a shutdown would wait two minutes for
		// //gen:slow), then let the script shut down any other.
		if server > 0 && ownServer(server, scratch) {
			syscall.Kill(server, syscall.SIGKILL)
		}
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer scancel()
		sd := exec.CommandContext(sctx, "sh", script, "shutdown", scratch)
		sd.Env = append(os.Environ(), "BAZEL="+bazel)
		if out, err := sd.CombinedOutput(); err != nil {
			t.Logf("bazel shutdown: %v\n%s", err, out)
		}
	})

	// Wait until the JSON file shows the server's pid and //gen:hello
	// built, with //gen:slow configured, and both files hold the console
	// lines checked below: Bazel writes the two files on their own, so the
	// binary one may lag the JSON one (a CI machine killed the server
	// when the binary file held 14 frames and no "INFO: Analyzed").
	var seen bepProgress
	for deadline := time.Now().Add(4 * time.Minute); ; {
		select {
		case err := <-ended:
			t.Fatalf("bazel ended before it was killed (%v):\n%s", err, console.String())
		default:
		}
		seen = readBEPProgress(t, jsonFile)
		if seen.serverPid > 0 && seen.helloBuilt && seen.slowConfigured && seen.consoleShown &&
			binaryShowsConsole(bep) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 4 minutes the JSON file shows %+v", seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
	server = seen.serverPid
	if !ownServer(server, scratch) {
		t.Fatalf("pid %d from BuildStarted.server_pid is not a Bazel server with output user root %s", server, scratch)
	}
	t.Logf("killing the Bazel server (pid %d) %v after the build started", server, time.Since(start).Round(time.Millisecond))
	if err := syscall.Kill(server, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err == nil {
			t.Fatalf("bazel exited 0 after its server was killed:\n%s", console.String())
		}
		if !strings.Contains(console.String(), "Server terminated abruptly") {
			t.Errorf("bazel (%v) did not say its server terminated:\n%s", err, console.String())
		}
		t.Logf("bazel client: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatalf("the Bazel client did not end within 2 minutes of its server's death")
	}

	// The files the killed Bazel left, and the binary one cut in the
	// middle of its last frame.
	bepBytes, err := os.ReadFile(bep)
	if err != nil {
		t.Fatal(err)
	}
	frames := frameEnds(bepBytes)
	if len(frames) < 5 {
		t.Fatalf("the binary file holds %d whole frames", len(frames))
	}
	t.Logf("binary file: %d bytes, %d whole frames, cut on a frame boundary: %v; JSON file: %d lines",
		len(bepBytes), len(frames), frames[len(frames)-1] == len(bepBytes), seen.lines)
	last, prev := frames[len(frames)-1], frames[len(frames)-2]
	cut := filepath.Join(scratch, "cut.bep")
	if err := os.WriteFile(cut, bepBytes[:prev+(last-prev)/2], 0o644); err != nil {
		t.Fatal(err)
	}

	for _, file := range []string{bep, jsonFile, cut} {
		for _, view := range []string{"summary", "tests", "failures"} {
			stdout, stderr, code := runCLI(t, view, file)
			if code != ExitIncomplete {
				t.Errorf("bes %s %s: exit status %d, want %d (the invocation did not finish)\nstdout:\n%s\nstderr:\n%s",
					view, filepath.Base(file), code, ExitIncomplete, stdout, stderr)
			}
		}
	}

	// The console output up to the kill, from either file.
	for _, c := range []struct {
		file string
		code int
	}{{bep, ExitOK}, {jsonFile, ExitOK}, {cut, ExitPartial}} {
		stdout, stderr, code := runCLI(t, "log", c.file)
		if code != c.code {
			t.Errorf("bes log %s: exit status %d, want %d\nstderr: %s", filepath.Base(c.file), code, c.code, stderr)
		}
		for _, want := range consoleLines {
			if !strings.Contains(stdout, want) {
				t.Errorf("bes log %s does not print %q:\n%s", filepath.Base(c.file), want, stdout)
			}
		}
		if !strings.Contains(console.String(), "INFO: Found 2 targets...\n") {
			t.Errorf("Bazel's console does not show what bes log does:\n%s", console.String())
		}
	}
}

// bepProgress is what a Bazel JSON file shows so far.
type bepProgress struct {
	lines          int
	serverPid      int
	helloBuilt     bool // //gen:hello completed with success
	slowConfigured bool // //gen:slow configured
	consoleShown   bool // Progress events hold every line of consoleLines
}

// consoleLines are the lines of Bazel's console that `bes log` must print
// from the files a killed Bazel left; the test kills Bazel only once both
// files hold them.
var consoleLines = []string{"Loading: 0 packages loaded", "INFO: Analyzed 2 targets", "INFO: Found 2 targets..."}

// binaryShowsConsole reports whether the whole frames of the
// --build_event_binary_file that Bazel is writing hold every line of
// consoleLines (Progress.stderr is a plain string field, so its bytes
// appear as they are).
func binaryShowsConsole(name string) bool {
	b, err := os.ReadFile(name)
	if err != nil {
		return false
	}
	if ends := frameEnds(b); len(ends) > 0 {
		b = b[:ends[len(ends)-1]]
	} else {
		return false
	}
	for _, line := range consoleLines {
		if !bytes.Contains(b, []byte(line)) {
			return false
		}
	}
	return true
}

// readBEPProgress reads the whole lines of a --build_event_json_file that
// Bazel is writing; a missing file shows nothing yet.
func readBEPProgress(t *testing.T, name string) bepProgress {
	t.Helper()
	var p bepProgress
	b, err := os.ReadFile(name)
	if err != nil {
		return p
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		return p
	}
	p.consoleShown = true
	for _, line := range consoleLines {
		p.consoleShown = p.consoleShown && bytes.Contains(b, []byte(line))
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		p.lines++
		var ev struct {
			ID struct {
				TargetCompleted  *struct{ Label string } `json:"targetCompleted"`
				TargetConfigured *struct{ Label string } `json:"targetConfigured"`
			} `json:"id"`
			Started *struct {
				ServerPid string `json:"serverPid"` // int64, a string in proto3 JSON
			} `json:"started"`
			Completed *struct {
				Success bool `json:"success"`
			} `json:"completed"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("%s line %d: %v", name, p.lines, err)
		}
		if ev.Started != nil {
			p.serverPid, _ = strconv.Atoi(ev.Started.ServerPid)
		}
		if c := ev.ID.TargetCompleted; c != nil && c.Label == "//gen:hello" && ev.Completed != nil && ev.Completed.Success {
			p.helloBuilt = true
		}
		if c := ev.ID.TargetConfigured; c != nil && c.Label == "//gen:slow" {
			p.slowConfigured = true
		}
	}
	return p
}

// ownServer reports whether pid is a Bazel server of this test: a process
// whose command line names the test's output user root.
func ownServer(pid int, scratch string) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return err == nil && bytes.Contains(cmdline, []byte(filepath.Join(scratch, "out")))
}

// frameEnds returns the offsets at which the varint-delimited frames of b
// end, as far as they are whole.
func frameEnds(b []byte) []int {
	var ends []int
	for off := 0; off < len(b); {
		n, k := protowire.ConsumeVarint(b[off:])
		if k < 0 || uint64(len(b)-off-k) < n {
			break
		}
		off += k + int(n)
		ends = append(ends, off)
	}
	return ends
}
