//go:build unix

package local

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestOwnerOnlyPermissions: with a umask that lets everything through, the
// store directory (and the parents Open makes) are 0700 and every file bes
// writes in it 0600: stream files written whole or appended, the index,
// the lock, temporary files, and what Rebuild and Repair write.
func TestOwnerOnlyPermissions(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	root := t.TempDir()
	s, err := Open(filepath.Join(root, "a", "b", "store"))
	if err != nil {
		t.Fatal(err)
	}
	st, evs, _ := obeStream(t)
	mustCommit(t, s, st, evs[:10])
	other, oevs := synthNamed("appended", 4)
	a, _, err := s.openAppend(bg, other, AppendOptions{IndexInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, oevs, 2)
	tmp, _ := synthNamed("being written", 0)
	w, err := s.create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	check := func(when string) {
		t.Helper()
		for _, d := range []string{filepath.Join(root, "a"), filepath.Join(root, "a", "b"), s.Dir()} {
			fi, err := os.Stat(d)
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: directory %s: %v, %v; want 0700", when, d, fi.Mode(), err)
			}
		}
		n := 0
		filepath.WalkDir(s.Dir(), func(path string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() {
				return err
			}
			n++
			fi, err := de.Info()
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: file %s: %v, %v; want 0600", when, de.Name(), fi.Mode(), err)
			}
			return nil
		})
		if n < 6 { // two streams, the catalog (.db, -wal, -shm), the lock (and the temporary file)
			t.Errorf("%s: only %d files", when, n)
		}
	}
	check("after commit and append")
	if _, err := a.Close(bg); err != nil {
		t.Fatal(err)
	}
	if err := s.Rebuild(bg); err != nil {
		t.Fatal(err)
	}
	check("after rebuild")
	loseCatalog(t, s)
	if _, err := s.Repair(bg); err != nil {
		t.Fatal(err)
	}
	check("after repair")
}
