//go:build unix

package commands

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"

	"github.com/bes-cli/bes/bepfile/bepgen"
)

// TestIngestIDOverLimit: a capture holding a stream whose build_id is 40
// MiB (under the 64 MiB event limit; issue 13: it once made the index
// unreadable while ingest exited 0) is refused: one short stderr line
// naming the file, the byte offset and the limit, a non-zero exit, and
// nothing of the file stored; the store stays readable.
func TestIngestIDOverLimit(t *testing.T) {
	root := t.TempDir()
	storeDir := filepath.Join(root, "store")
	good := &buildpb.StreamId{BuildId: "good", InvocationId: "inv", Component: buildpb.StreamId_TOOL}
	huge := &buildpb.StreamId{BuildId: strings.Repeat("B", 40<<20), InvocationId: "inv", Component: buildpb.StreamId_TOOL}
	goodFile, _ := delimitedOBE(t, obeEvents(t, good))
	hugeFile, _ := delimitedOBE(t, obeEvents(t, huge))
	in := filepath.Join(root, "capture.obe")
	if err := os.WriteFile(in, append(goodFile, hugeFile...), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCLI(t, "ingest", "--store", storeDir, in)
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if code == 0 || len(lines) != 1 || len(stderr) > 400 ||
		!strings.Contains(stderr, in+": byte "+strconv.Itoa(len(goodFile))+" (event 5): ") ||
		!strings.Contains(stderr, "build_id of 41943040 bytes exceeds the store's limits (4096 bytes per id)") {
		t.Errorf("ingest: exit %d, stderr (%d bytes):\n%.500s", code, len(stderr), stderr)
	}
	if keys, _ := streamKeys(t, "--store", storeDir); len(keys) != 0 {
		t.Errorf("streams after the refused ingest: %q", keys)
	}
	if _, stderr, code := runCLI(t, "store", "check", "--store", storeDir); code != 0 {
		t.Errorf("store check: exit %d: %s", code, stderr)
	}
}

// TestIngestCaptureUnderFileLimit ingests a BES capture of 2,000 streams,
// all in flight at once, with bes ingest in a process whose limit on open
// files is 256 (the usual limit is 1024; one open file per stream, as
// before the catalog, failed with "too many open files").
func TestIngestCaptureUnderFileLimit(t *testing.T) {
	if dir := os.Getenv("BES_ULIMIT_HELPER_STORE"); dir != "" {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 256, Max: 256}); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runCLI(t, "ingest", "--store", dir, "--format", "ndjson", os.Getenv("BES_ULIMIT_HELPER_INPUT"))
		if code != 0 {
			t.Fatalf("ingest: exit %d: %.2000s", code, stderr)
		}
		os.Stdout.WriteString("ingested " + strconv.Itoa(strings.Count(stdout, "\n")) + " streams\n")
		return
	}
	if testing.Short() {
		t.Skip("spawns a process")
	}
	root := t.TempDir()
	capture := filepath.Join(root, "capture.obe")
	f, err := os.Create(capture)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bepgen.WriteOBE(f, bepgen.CaptureConfig{Seed: 4, Streams: 2000, MinTargets: 1, MaxTargets: 2, Concurrent: 2000}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	storeDir := filepath.Join(root, "store")
	cmd := exec.Command(exe, "-test.run=^TestIngestCaptureUnderFileLimit$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BES_ULIMIT_HELPER_STORE="+storeDir, "BES_ULIMIT_HELPER_INPUT="+capture)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("ingested 2000 streams\n")) {
		t.Fatalf("helper: %v\n%.3000s", err, out)
	}
	if keys, _ := streamKeys(t, "--store", storeDir); len(keys) != 2000 {
		t.Errorf("%d streams listed, want 2000", len(keys))
	}
}
