package commands

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTeamStoreCheckGC (issue 14): bes store check and gc work on a team
// store (PostgreSQL catalog, bodies in a directory bucket) as on a
// directory: a flipped byte is a content mismatch, which --repair
// quarantines under quarantine/; a blob no catalog row names is reported
// and gc deletes it once older than --orphan-grace, and not before; gc on
// a team store needs neither --older-than nor --keep.
func TestTeamStoreCheckGC(t *testing.T) {
	catalog := teamCatalog(t)
	blobDir := t.TempDir()
	s, b := "--store="+catalog, "--blobs="+blobDir
	run := func(code int, args ...string) (string, string) {
		t.Helper()
		out, errs, c := runCLI(t, args...)
		if c != code {
			t.Fatalf("bes %s: exit %d, want %d; stderr:\n%s", strings.Join(args, " "), c, code, errs)
		}
		return out, errs
	}
	run(ExitOK, "ingest", s, b, filepath.Join("..", "testdata", "test_mixed.bep"), filepath.Join("..", "testdata", "build_ok.bep"))
	if _, errs := run(ExitOK, "store", "check", s, b); !strings.Contains(errs, ": 2 streams, 2 blobs: consistent") {
		t.Errorf("check of an intact team store: %q", errs)
	}
	var bodies []string
	filepath.WalkDir(filepath.Join(blobDir, "streams"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			bodies = append(bodies, p)
		}
		return nil
	})
	if len(bodies) != 2 {
		t.Fatalf("blobs %q, want 2", bodies)
	}
	// A flipped byte.
	data, err := os.ReadFile(bodies[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(bodies[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(blobDir, bodies[0])
	rel = filepath.ToSlash(rel)
	out, _ := run(ExitError, "store", "check", s, b, "--format", "json")
	var rows []checkRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Problem != "content mismatch" || rows[0].File != rel || rows[0].Status != "found" {
		t.Errorf("check of a flipped byte: %+v, want a content mismatch of %s", rows, rel)
	}
	_, errs := run(ExitOK, "store", "check", "--repair", s, b)
	if !strings.Contains(errs, "quarantined the body") {
		t.Errorf("repair: %q", errs)
	}
	if q, err := os.ReadFile(filepath.Join(blobDir, "quarantine", filepath.FromSlash(rel))); err != nil || string(q) != string(data) {
		t.Errorf("the quarantined blob: %d bytes, %v; want the damaged body", len(q), err)
	}

	// A blob no row names: a body uploaded by a process killed before
	// its catalog commit, two hours ago.
	orphan := filepath.Join(blobDir, "streams", "0123456789abcdef0123456789abcdef", "0123456789abcdef", "000000-0123456789abcdef.bess")
	if err := os.MkdirAll(filepath.Dir(orphan), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphan, data, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(orphan, old, old); err != nil {
		t.Fatal(err)
	}
	out, _ = run(ExitError, "store", "check", s, b, "--format", "json")
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Problem != "blob not in the catalog" {
		t.Errorf("check of an orphan blob: %+v", rows)
	}
	if _, errs, _ := runCLI(t, "store", "gc", "--store", t.TempDir()); !strings.Contains(errs, "needs --older-than") {
		t.Errorf("gc of a directory store without limits: %q", errs)
	}
	if out, _ := run(ExitOK, "store", "gc", s, b, "--orphan-grace", "3h"); strings.Contains(out, "orphan") {
		t.Errorf("gc --orphan-grace 3h removed a blob 2 hours old:\n%s", out)
	}
	if out, _ := run(ExitOK, "store", "gc", s, b, "--dry-run"); !strings.Contains(out, "would remove orphan blob") {
		t.Errorf("gc --dry-run:\n%s", out)
	}
	out, errs = run(ExitOK, "store", "gc", s, b)
	if !strings.Contains(out, "removed orphan blob") || !strings.Contains(out, "blob streams/0123456789abcdef0123456789abcdef/") ||
		!strings.Contains(errs, "removed 0 streams (0 bytes); removed 1 orphan blobs") {
		t.Errorf("gc:\n%s%s", out, errs)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("the orphan blob is still there: %v", err)
	}
	// The damaged body's blob waits in the garbage a minute (readers).
	if _, errs := run(ExitOK, "store", "check", s, b); !strings.Contains(errs, ": 1 streams, 2 blobs: consistent") {
		t.Errorf("check after repair and gc: %q", errs)
	}
	// Retention as on a directory store.
	if out, _ := run(ExitOK, "store", "gc", s, b, "--keep", "0"); !strings.Contains(out, "removed") {
		t.Errorf("gc --keep 0:\n%s", out)
	}
	if out, _ := run(ExitOK, "streams", s, b); strings.TrimSpace(out) != "" && strings.Count(out, "\n") > 1 {
		t.Errorf("streams after gc --keep 0:\n%s", out)
	}
}
