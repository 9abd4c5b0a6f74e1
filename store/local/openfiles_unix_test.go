//go:build unix

package local

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepgen"
)

// TestOpenFilesBounded ingests a BES capture of 2,000 interleaved streams
// as bes ingest does (one StreamWriter per stream, all committed at the
// end with CommitAll) in a process whose limit on open files is 256: one
// open file per stream, as StreamWriters held before the catalog, fails
// there with "too many open files". The writers keep at most
// MaxOpenTempFiles open.
func TestOpenFilesBounded(t *testing.T) {
	if dir := os.Getenv("BES_OPENFILES_HELPER_DIR"); dir != "" {
		openFilesHelper(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns a process")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	dir := filepath.Join(t.TempDir(), "store")
	cmd := exec.Command(exe, "-test.run=^TestOpenFilesBounded$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "BES_OPENFILES_HELPER_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("committed 2000 streams")) {
		t.Fatalf("helper did not commit:\n%s", out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := len(list(t, s)); n != 2000 {
		t.Errorf("%d streams listed, want 2000", n)
	}
}

func openFilesHelper(t *testing.T, dir string) {
	const limit = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		t.Fatal(err)
	}
	var capture bytes.Buffer
	if _, err := bepgen.WriteOBE(&capture, bepgen.CaptureConfig{Seed: 3, Streams: 2000, MinTargets: 1, MaxTargets: 2, Concurrent: 2000}); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := bepfile.NewReader(bytes.NewReader(capture.Bytes()), "capture.obe", bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	writers := map[*bepfile.Stream]*StreamWriter{}
	var order []*StreamWriter
	peakFDs := 0
	for n := 0; ; n++ {
		st, ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		w := writers[st]
		if w == nil {
			if w, err = s.create(st); err != nil {
				t.Fatalf("stream %d: %v", len(order), err)
			}
			writers[st] = w
			order = append(order, w)
		}
		if err := w.Append(ev); err != nil {
			t.Fatal(err)
		}
		if n%500 == 0 {
			peakFDs = max(peakFDs, openFDs(t))
		}
	}
	peakFDs = max(peakFDs, openFDs(t))
	out, err := s.commitAll(bg, order, "capture.obe", "obe", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Err != nil || o.Result != Created {
			t.Fatalf("outcome %+v", o)
		}
	}
	tempPool.mu.Lock()
	peak := tempPool.peak
	tempPool.mu.Unlock()
	if peak > MaxOpenTempFiles || peakFDs > MaxOpenTempFiles+32 {
		t.Errorf("%d temporary files open at most, %d file descriptors: want at most %d and %d", peak, peakFDs, MaxOpenTempFiles, MaxOpenTempFiles+32)
	}
	fmt.Printf("committed %d streams under a limit of %d open files: at most %d temporary files and %d descriptors open\n", len(out), limit, peak, peakFDs)
}

// openFDs counts the process's open file descriptors (0 where /proc/self/fd
// cannot be read).
func openFDs(t testing.TB) int {
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(des)
}
