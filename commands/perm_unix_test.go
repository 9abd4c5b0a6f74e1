//go:build unix

package commands

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestStoreIsOwnerOnly: bes ingest and bes serve create the store with
// owner-only permissions, whatever the umask lets through.
func TestStoreIsOwnerOnly(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	root := t.TempDir()
	ingested := filepath.Join(root, "new", "store")
	if _, stderr, code := runCLI(t, "ingest", "--store", ingested, td("test_mixed.bep"), td("bes_test_mixed.obe")); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	served := filepath.Join(root, "served")
	srv := startServe(t, served)
	if _, stderr, code := runCLI(t, "replay", td("build_ok.bep"), "--to", "grpc://"+srv.addr); code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	srv.stop(t)
	for _, dir := range []string{filepath.Join(root, "new"), ingested, served} {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("directory %s: %v, %v; want 0700", dir, fi.Mode(), err)
		}
	}
	n := 0
	for _, dir := range []string{ingested, served} {
		filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() {
				return err
			}
			n++
			if fi, err := de.Info(); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v, %v; want 0600", path, fi.Mode(), err)
			}
			return nil
		})
	}
	if n < 6 {
		t.Errorf("only %d files in the stores", n)
	}
}
