package commands

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreCheckCLI: bes store check on a consistent store, on one whose
// catalog was lost, and --repair, with their outputs and exit statuses.
func TestStoreCheckCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	stdout, stderr, code := runCLI(t, "store", "check", "--store", dir)
	if code != 0 || stdout != "PROBLEM  FILE  KEY  STATUS  DETAIL\n" || !strings.HasSuffix(stderr, ": 0 streams, 0 stream files: consistent\n") {
		t.Errorf("empty store: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, stderr, code := runCLI(t, "ingest", "--store", dir, td("test_mixed.bep"), td("bes_test_mixed.lifecycle.obe")); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	_, stderr, code = runCLI(t, "store", "check", "--store", dir)
	if code != 0 || !strings.HasSuffix(stderr, ": 3 streams, 3 stream files: consistent\n") {
		t.Errorf("after ingest: exit %d: %s", code, stderr)
	}

	// The catalog lost: every stream file is not indexed.
	for _, name := range []string{"catalog.db", "catalog.db-wal", "catalog.db-shm"} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	stdout, stderr, code = runCLI(t, "store", "check", "--store", dir, "--format", "json")
	var rows []checkRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatal(err)
	}
	if code != ExitError || len(rows) != 3 || !strings.HasSuffix(stderr, ": 0 streams, 3 stream files: 3 problems (bes store check --repair fixes them)\n") {
		t.Errorf("lost index: exit %d, %d rows: %s", code, len(rows), stderr)
	}
	for _, r := range rows {
		if r.Problem != "not indexed" || r.Status != "found" || r.Key == "" || !strings.HasSuffix(r.File, ".bess") {
			t.Errorf("row %+v", r)
		}
	}
	if keys, _ := streamKeys(t, "--store", dir); len(keys) != 0 {
		t.Errorf("streams without an index: %q", keys)
	}

	stdout, stderr, code = runCLI(t, "store", "check", "--repair", "--store", dir)
	if code != 0 || strings.Count(stdout, " repaired ") != 3 || strings.Count(stderr, "bes: repair: stream ") != 3 || strings.Count(stderr, ": indexed from its file ") != 3 || !strings.HasSuffix(stderr, ": 3 streams, 3 stream files: consistent\n") {
		t.Errorf("repair: exit %d\n%s%s", code, stdout, stderr)
	}
	if keys, _ := streamKeys(t, "--store", dir); len(keys) != 3 {
		t.Errorf("streams after the repair: %q", keys)
	}

	// Usage.
	if _, stderr, code := runCLI(t, "store", "check", "extra", "--store", dir); code != ExitUsage || !strings.Contains(stderr, "store check takes no arguments") {
		t.Errorf("an argument: exit %d: %s", code, stderr)
	}
	if stdout, _, code := runCLI(t, "store", "check", "--help"); code != 0 || !strings.Contains(stdout, "EXIT STATUS:") || !strings.Contains(stdout, "0  the store is consistent") {
		t.Errorf("help: exit %d:\n%s", code, stdout)
	}
	if stdout, _, code := runCLI(t, "store"); code != 0 || !strings.Contains(stdout, "check") {
		t.Errorf("bes store: exit %d:\n%s", code, stdout)
	}
}
