//go:build linux

package local

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWriteFailureLeavesNoStreamFile: when the disk refuses a write while a
// stream is opened for appending or committed (issue 13: a full disk left
// empty stream files behind), the call fails and leaves no stream file and
// no temporary file: the store checks consistent once writes work again.
// The refusal is made with RLIMIT_FSIZE (EFBIG), which fails every write
// past a size as ENOSPC fails every write, without a full disk.
func TestWriteFailureLeavesNoStreamFile(t *testing.T) {
	if dir := os.Getenv(fsizeChildEnv); dir != "" {
		writeUnderFileSizeLimit(t, dir)
		return
	}
	s := openStore(t)
	first, fevs := synthNamed("first", 3)
	mustCommit(t, s, first, fevs)
	live, levs := synthNamed("refused-live", 3)
	whole, _ := synthNamed("refused-whole", 3)

	// RLIMIT_FSIZE holds for the whole process, so the refused writes are
	// made by a child process (this test binary again): in this one, every
	// file the test framework writes meanwhile (go test's testlog, which
	// logs each os.Open) would be refused too.
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriteFailureLeavesNoStreamFile$", "-test.v")
	cmd.Env = append(os.Environ(), fsizeChildEnv+"="+s.Dir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the child that writes under RLIMIT_FSIZE: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte("--- SKIP")) {
		t.Skipf("RLIMIT_FSIZE cannot be set here:\n%s", out)
	}
	t.Logf("child:\n%s", out)
	for _, st := range []string{live.Key, whole.Key} {
		if _, err := os.Lstat(filepath.Join(s.Dir(), FileName(st))); !os.IsNotExist(err) {
			t.Errorf("a stream file of %s was left: %v", st, err)
		}
	}
	assertNoTemp(t, s)
	// Writes work again: the store is as before, and takes the streams.
	s.Close()
	if r := mustCheck(t, s); !r.OK() || r.Entries != 1 {
		t.Errorf("check: %+v", r)
	}
	a, _, err := s.openAppend(bg, live, AppendOptions{IndexInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, levs, 3)
	if _, err := a.Close(bg); err != nil {
		t.Fatal(err)
	}
	if e := entryOf(t, s, live.Key); e.Events != 3 {
		t.Errorf("the stream opened again: %+v", e)
	}
}

// TestOpenRemovesKilledWritersTemps: Open removes the temporary files that
// writers killed earlier left in tmp/ (issue 13: they stayed until a
// repair), and never a live writer's, in this process or another.
func TestOpenRemovesKilledWritersTemps(t *testing.T) {
	s := openStore(t)
	st, _ := synthNamed("live", 0)
	w, err := s.create(st) // a live writer
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	tmp := filepath.Join(s.Dir(), tempDirName)
	// What a killed writer leaves: its owner file, no longer flocked, and
	// the stream files it owned.
	dead := []string{".owner-00000000000000aa.tmp", ".stream-00000000000000aa-0000000000000001.tmp", ".stream-00000000000000aa-0000000000000002.tmp"}
	for _, name := range dead {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte("BESS"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := mustCheck(t, s)
	if n := strings.Count(strings.Join(func() (k []string) {
		for _, p := range r.Problems {
			k = append(k, string(p.Kind))
		}
		return
	}(), "\n"), string(ProblemTemp)); n != len(dead) {
		t.Errorf("check before: %+v, want %d stale temporary files", r.Problems, len(dead))
	}
	again, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	for _, name := range dead {
		if _, err := os.Lstat(filepath.Join(tmp, name)); !os.IsNotExist(err) {
			t.Errorf("Open left %s: %v", name, err)
		}
	}
	if _, err := os.Stat(w.path); err != nil {
		t.Errorf("Open removed a live writer's file: %v", err)
	}
	if r := mustCheck(t, again); !r.OK() {
		t.Errorf("check after: %+v", r.Problems)
	}
	if _, _, err := w.Commit(bg, "test", "synthetic", false); err != nil {
		t.Errorf("the live writer's commit: %v", err)
	}
}

// TestUnlisted: a store whose catalog lists nothing while its directory
// holds stream files (a catalog lost) says how many (issue 13: such a store
// listed nothing, exit 0, without a word); one whose catalog lists a
// stream, and one that does not exist, give 0.
func TestUnlisted(t *testing.T) {
	s := openStore(t)
	for _, name := range []string{"a", "b"} {
		st, evs := synthNamed(name, 2)
		mustCommit(t, s, st, evs)
	}
	if n, err := s.Unlisted(bg); n != 0 || err != nil {
		t.Errorf("a store that lists its streams: %d, %v", n, err)
	}
	loseCatalog(t, s)
	reader, _, err := OpenExisting(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := reader.Unlisted(bg); n != 2 || err != nil {
		t.Errorf("a store without its catalog: %d, %v; want 2", n, err)
	}
	if _, err := os.Lstat(filepath.Join(s.Dir(), catalogName)); !os.IsNotExist(err) {
		t.Errorf("Unlisted made a catalog: %v", err)
	}
	none, _, err := OpenExisting(filepath.Join(t.TempDir(), "none"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := none.Unlisted(bg); n != 0 || err != nil {
		t.Errorf("no store: %d, %v", n, err)
	}
}

// fsizeChildEnv names the store directory in which the child process of
// TestWriteFailureLeavesNoStreamFile writes under RLIMIT_FSIZE.
const fsizeChildEnv = "BES_TEST_FSIZE_CHILD"

// writeUnderFileSizeLimit is the child of TestWriteFailureLeavesNoStreamFile:
// with RLIMIT_FSIZE at 16 bytes (less than a stream file's header), it
// opens the stream "refused-live" for appending and commits
// "refused-whole" whole in the store at dir; each must fail.
func writeUnderFileSizeLimit(t *testing.T, dir string) {
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	live, _ := synthNamed("refused-live", 3)
	whole, wevs := synthNamed("refused-whole", 3)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	limit := old
	limit.Cur = 16
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Skip(err)
	}
	_, _, errAppend := s.openAppend(bg, live, AppendOptions{IndexInterval: time.Hour})
	var errCommit error
	w, err := s.create(whole)
	if err == nil {
		for i := range wevs {
			w.Append(&wevs[i])
		}
		_, _, errCommit = w.Commit(bg, "test", "synthetic", false)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if errAppend == nil || (err == nil && errCommit == nil) {
		t.Fatalf("writes past RLIMIT_FSIZE succeeded: append %v, create %v, commit %v", errAppend, err, errCommit)
	}
	t.Logf("append: %v; create: %v; commit: %v", errAppend, err, errCommit)
}
