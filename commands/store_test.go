package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/local"
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
	// An empty listing says why (issue 13).
	if stdout, stderr, code := runCLI(t, "streams", "--store", dir); code != 0 || strings.Count(stdout, "\n") != 1 ||
		stderr != "bes: warning: store "+dir+": its catalog lists no stream, but the directory holds 3 stream files (bes store check --repair indexes them)\n" {
		t.Errorf("streams of a store without a catalog: exit %d\n%s%s", code, stdout, stderr)
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

// TestStoreGCCLI: bes store gc --dry-run, --keep, --older-than on the
// corpus (Bazel's start times order the streams), a stream bes serve is
// writing kept, and the usage errors.
func TestStoreGCCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	// A store that does not exist: nothing to do, nothing created.
	if stdout, stderr, code := runCLI(t, "store", "gc", "--store", dir, "--keep", "0"); code != 0 || stdout != "STATUS  TIME  KEY  INVOCATION ID  COMMAND  EVENTS  SIZE\n" || !strings.HasSuffix(stderr, ": removed 0 streams (0 bytes)\n") {
		t.Errorf("no store: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("gc created the store: %v", err)
	}
	if _, stderr, code := runCLI(t, "ingest", "--store", dir, td("test_mixed.bep"), td("test_cached.bep"), td("build_keep_going_fail.bep"), td("build_ok.bep")); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	// Oldest first by BuildStarted.start_time: build_ok (20:14:28),
	// build_keep_going_fail (20:14:37), test_mixed (:38), test_cached (:44).
	const (
		ok      = "716bc5f2-0416-4984-bf6d-e57bb3dc67a7"
		failed  = "5a64b61f-5c5f-48dd-94e7-685ae0e6aab0"
		mixed   = "657fb236-551f-4f88-ab84-e114caf29e48"
		cached  = "520ce742-a0b9-4acc-b1a6-73c2f9313d08"
		started = "2026-11-23T20:14:28Z"
	)
	gc := func(args ...string) ([]gcRow, string, int) {
		t.Helper()
		stdout, stderr, code := runCLI(t, append([]string{"store", "gc", "--store", dir, "--format", "json"}, args...)...)
		var rows []gcRow
		if code != ExitUsage {
			if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
				t.Fatalf("gc %q: %v\n%s", args, err, stdout)
			}
		}
		return rows, stderr, code
	}
	ids := func(rows []gcRow) (out []string) {
		for _, r := range rows {
			out = append(out, r.InvocationID+" "+r.Status)
		}
		return out
	}
	rows, stderr, code := gc("--keep", "2", "--dry-run")
	if want := []string{ok + " would remove", failed + " would remove"}; code != 0 || !slices.Equal(ids(rows), want) ||
		rows[0].Time.Format(time.RFC3339) != started || rows[0].Command != "build" || rows[0].Events != 82 ||
		!strings.HasSuffix(stderr, fmt.Sprintf(": would remove 2 streams (%d bytes)\n", rows[0].Size+rows[1].Size)) {
		t.Errorf("dry run: exit %d, %q\n%+v\n%s", code, ids(rows), rows, stderr)
	}
	if keys, _ := streamKeys(t, "--store", dir); len(keys) != 4 {
		t.Errorf("after a dry run: %q", keys)
	}
	// Nothing that old.
	if rows, _, code := gc("--older-than", "1000w"); code != 0 || len(rows) != 0 {
		t.Errorf("--older-than 1000w: exit %d, %+v", code, rows)
	}

	// A stream bes serve is writing (new, so the newest) is kept.
	srv, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	live := bepfile.NewStream(&buildpb.StreamId{BuildId: "live-build", InvocationId: "live-inv", Component: buildpb.StreamId_TOOL})
	a, _, err := srv.OpenAppend(context.Background(), live, store.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rows, stderr, code = gc("--keep", "3")
	if want := []string{ok + " removed", failed + " removed"}; code != 0 || !slices.Equal(ids(rows), want) || !strings.HasSuffix(stderr, fmt.Sprintf(": removed 2 streams (%d bytes)\n", rows[0].Size+rows[1].Size)) {
		t.Errorf("--keep 3: exit %d, %q\n%s", code, ids(rows), stderr)
	}
	rows, stderr, code = gc("--keep", "0")
	if want := []string{mixed + " removed", cached + " removed", "live-inv kept: being written"}; code != 0 || !slices.Equal(ids(rows), want) ||
		!strings.HasSuffix(stderr, fmt.Sprintf(": removed 2 streams (%d bytes), kept 1 being written or changed\n", rows[0].Size+rows[1].Size)) {
		t.Errorf("--keep 0: exit %d, %q\n%s", code, ids(rows), stderr)
	}
	if keys, _ := streamKeys(t, "--store", dir); !slices.Equal(keys, []string{live.Key}) {
		t.Errorf("left: %q", keys)
	}
	if _, err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runCLI(t, "store", "check", "--store", dir); code != 0 || !strings.HasSuffix(stderr, ": 1 streams, 1 stream files: consistent\n") {
		t.Errorf("check after gc: exit %d: %s", code, stderr)
	}

	// Usage.
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{nil, "store gc needs --older-than DURATION or --keep N"},
		{[]string{"--older-than", "30"}, `not "30"`},
		{[]string{"--older-than", "-1d"}, `not "-1d"`},
		{[]string{"--keep", "-1"}, "--keep wants a count of streams, 0 or more, not -1"},
		{[]string{"--keep", "1", "extra"}, `store gc takes no arguments, got "extra"`},
	} {
		if _, stderr, code := gc(c.args...); code != ExitUsage || !strings.Contains(stderr, c.msg) {
			t.Errorf("%q: exit %d: %s", c.args, code, stderr)
		}
	}
	if stdout, _, code := runCLI(t, "store", "gc", "--help"); code != 0 || !strings.Contains(stdout, "EXIT STATUS:") || !strings.Contains(stdout, "--dry-run") {
		t.Errorf("help: exit %d:\n%s", code, stdout)
	}
}

// TestStoreDamageNotServed: a byte flipped in a stored stream (issue 13:
// dump and summary printed it, exit 0; repair re-indexed it as it was) is
// found by the stream file's checksums: dump and summary exit 9 (a
// damaged store file, as one cut short), with one line naming the file and
// the offset of the damaged record; store check calls it a content
// mismatch, and --repair quarantines it, saying so, rather than indexing
// it; the stream is then gone, not served damaged. A stream cut short is
// quarantined too, never made a partial stream.
func TestStoreDamageNotServed(t *testing.T) {
	const key = "657fb236-551f-4f88-ab84-e114caf29e48.3.657fb236-551f-4f88-ab84-e114caf29e48"
	for _, damage := range []string{"flipped byte", "cut short"} {
		dir := filepath.Join(t.TempDir(), "store")
		if _, stderr, code := runCLI(t, "ingest", "--store", dir, td("test_mixed.bep")); code != 0 {
			t.Fatalf("ingest: exit %d: %s", code, stderr)
		}
		file := filepath.Join(dir, local.FileName(key))
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if damage == "flipped byte" {
			b[len(b)/2] ^= 0x20
		} else {
			b = b[:len(b)/2]
		}
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"dump", key}, {"summary", key}, {"dump", "--format", "ndjson", key}} {
			_, stderr, code := runCLI(t, append(args, "--store", dir)...)
			if code != ExitDamaged || !strings.Contains(stderr, file+": corrupt stream file at offset ") {
				t.Errorf("%s: %s: exit %d, want %d naming the file and offset: %s", damage, args, code, ExitDamaged, stderr)
			}
			if damage == "flipped byte" && !strings.Contains(stderr, "checksum mismatch") {
				t.Errorf("%s: %s: %s", damage, args, stderr)
			}
		}
		stdout, _, code := runCLI(t, "store", "check", "--store", dir)
		if code != ExitError || !strings.Contains(stdout, "content mismatch") {
			t.Errorf("%s: store check: exit %d:\n%s", damage, code, stdout)
		}
		stdout, stderr, code := runCLI(t, "store", "check", "--repair", "--store", dir)
		if code != 0 || !strings.Contains(stderr, "bes: repair: quarantined "+local.FileName(key)+" aside as "+local.FileName(key)+".quarantine: its content disagrees with the catalog entry") {
			t.Errorf("%s: repair: exit %d\n%s%s", damage, code, stdout, stderr)
		}
		if strings.Contains(stderr, "indexed from its file") {
			t.Errorf("%s: repair indexed the damaged stream: %s", damage, stderr)
		}
		if _, err := os.Stat(file + ".quarantine"); err != nil {
			t.Errorf("%s: not kept aside: %v", damage, err)
		}
		if keys, _ := streamKeys(t, "--store", dir); len(keys) != 0 {
			t.Errorf("%s: streams after the repair: %q", damage, keys)
		}
	}
}
