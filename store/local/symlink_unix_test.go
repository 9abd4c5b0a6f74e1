//go:build unix

package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPlantedSymlinks: symbolic links planted in a store directory at the
// names of its files (issue 13: with a store directory another user owned,
// links at stream file names made root's bes serve overwrite a root-owned
// file and create one in a root-only directory, and store check called a
// store whose only stream file was a link consistent) are never followed:
// an Appender refuses the stream, a commit replaces the link itself,
// SQLite's write-ahead log is not written through one, Check reports each
// link, and Repair removes the links, never what they point to.
func TestPlantedSymlinks(t *testing.T) {
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	const precious = "root's file\n"
	if err := os.WriteFile(victim, []byte(precious), 0o600); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(outside, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	plant := func(name, to string) {
		t.Helper()
		if err := os.Symlink(to, filepath.Join(s.Dir(), name)); err != nil {
			t.Fatal(err)
		}
	}

	// A live stream whose file name is a link to a file, another to a
	// directory's would-be file.
	live, levs := synthNamed("live", 3)
	plant(FileName(live.Key), victim)
	if _, _, err := s.openAppend(bg, live, AppendOptions{IndexInterval: time.Hour}); err == nil {
		t.Error("OpenAppend through a symbolic link: no error")
	}
	other, _ := synthNamed("other", 3)
	plant(FileName(other.Key), filepath.Join(private, "created"))
	if _, _, err := s.openAppend(bg, other, AppendOptions{IndexInterval: time.Hour}); err == nil {
		t.Error("OpenAppend through a dangling symbolic link: no error")
	}
	if _, err := os.Stat(filepath.Join(private, "created")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was created through the link: %v", err)
	}
	if n := len(list(t, s)); n != 0 {
		t.Errorf("%d streams listed after two refused", n)
	}

	// A link at SQLite's write-ahead log: the catalog's writes do not go
	// through it (the catalog is opened anew, as by another process).
	s.Close()
	os.Remove(filepath.Join(s.Dir(), catalogName+"-wal"))
	plant(catalogName+"-wal", victim)
	whole, wevs := synthNamed("whole", 4)
	if w, err := s.create(whole); err == nil {
		// SQLite may refuse the log, or write its own: never the victim
		// (checked below).
		for i := range wevs {
			w.Append(&wevs[i])
		}
		w.Commit(bg, "test", "synthetic", false)
	}
	s.Close()
	os.Remove(filepath.Join(s.Dir(), catalogName+"-wal"))

	// A link at catalog.db itself is refused.
	os.Rename(filepath.Join(s.Dir(), catalogName), filepath.Join(outside, "catalog.db"))
	plant(catalogName, filepath.Join(outside, "catalog.db"))
	if _, err := Open(s.Dir()); err == nil {
		t.Error("Open with catalog.db a symbolic link: no error")
	}
	os.Remove(filepath.Join(s.Dir(), catalogName))
	os.Rename(filepath.Join(outside, "catalog.db"), filepath.Join(s.Dir(), catalogName))

	// A commit over a link replaces the link, not its target.
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	e := mustCommit(t, s2, live, levs)
	if fi, err := os.Lstat(filepath.Join(s2.Dir(), e.File)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the committed stream file: %v, %v", fi, err)
	}

	// A store whose stream file is a link to a good stream file elsewhere.
	good := filepath.Join(outside, "good.bess")
	b, err := os.ReadFile(filepath.Join(s2.Dir(), e.File))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(good, b, 0o600)
	os.Remove(filepath.Join(s2.Dir(), e.File))
	plant(e.File, good)
	if _, err := s2.Load(bg, e); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Load through a link: %v", err)
	}
	r := mustCheck(t, s2)
	kinds := problemKinds(r)
	for _, name := range []string{e.File, FileName(other.Key)} {
		if kinds[name] != ProblemNotRegular {
			t.Errorf("check: %s is %q, want %q (problems %+v)", name, kinds[name], ProblemNotRegular, r.Problems)
		}
	}
	rep, err := s2.Repair(bg)
	if err != nil || !rep.After.OK() {
		t.Fatalf("Repair: %+v, %v", rep, err)
	}
	if !strings.Contains(strings.Join(rep.Actions, "\n"), "removed "+e.File+": not a regular file but a symbolic link to ") {
		t.Errorf("actions %q", rep.Actions)
	}
	for _, f := range []string{victim, good} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("Repair removed the target %s: %v", f, err)
		}
	}
	if got, _ := os.ReadFile(victim); string(got) != precious {
		t.Errorf("the victim file now holds %q", got)
	}
	if des, _ := os.ReadDir(private); len(des) != 0 {
		t.Errorf("files made in the private directory: %v", des)
	}
	if n := len(list(t, s2)); n != 0 {
		t.Errorf("%d entries after Repair, want none (the stream's file was a link)", n)
	}
}

// TestUnsafeStoreDir: a store directory others may write, or another user
// owns, is refused by Open and OpenExisting (ErrUnsafeDir), naming the
// directory and what to do (issue 13).
func TestUnsafeStoreDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, mode := range []os.FileMode{0o777, 0o770, 0o1777} {
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir); !errors.Is(err, ErrUnsafeDir) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "chmod go-w") {
			t.Errorf("Open of a directory of mode %v: %v", mode, err)
		}
		if _, _, err := OpenExisting(dir); !errors.Is(err, ErrUnsafeDir) {
			t.Errorf("OpenExisting of a directory of mode %v: %v", mode, err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Errorf("mode 0700: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Log("not root: the owner case is not tried")
		return
	}
	if err := os.Chown(dir, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrUnsafeDir) || !strings.Contains(err.Error(), "owned by uid 4242") {
		t.Errorf("Open of a directory another user owns: %v", err)
	}
	if _, _, err := OpenExisting(dir); !errors.Is(err, ErrUnsafeDir) {
		t.Errorf("OpenExisting of a directory another user owns: %v", err)
	}
}
