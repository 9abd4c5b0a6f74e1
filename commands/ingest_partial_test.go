package commands

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// cutBEP writes the first n frames of testdata/name (a binary BEP file)
// to a file of its own: the file Bazel leaves when it is killed between
// two events.
func cutBEP(t *testing.T, name string, n int) string {
	t.Helper()
	data, err := os.ReadFile(td(name))
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for i := 0; i < n; i++ {
		_, k := protowire.ConsumeBytes(data[off:])
		if k < 0 {
			t.Fatalf("%s: bad frame %d at byte %d", name, i, off)
		}
		off += k
	}
	if off >= len(data) {
		t.Fatalf("%s has no more than %d frames", name, n)
	}
	path := filepath.Join(t.TempDir(), "cut-"+name)
	if err := os.WriteFile(path, data[:off], 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestIngestPartialThenComplete: the whole .bep of a stream stored
// partial (its file ingested cut short, first) replaces it, exit 0; the
// cut file after the whole one is unchanged (a cut file still exits 3);
// a cut file whose events are not all in the stored stream is a
// duplicate (exit 4).
func TestIngestPartialThenComplete(t *testing.T) {
	whole := td("test_mixed.bep")
	for _, cut := range []struct {
		name, path string
		code       int // the cut file's own exit status
	}{
		{"cut between frames", cutBEP(t, "test_mixed.bep", 62), ExitOK},
		{"cut inside a frame", td("truncated-test_mixed.bep"), ExitPartial},
	} {
		t.Run(cut.name, func(t *testing.T) {
			// The cut file first, then the whole one: replaced.
			dir := filepath.Join(t.TempDir(), "store")
			rows, stderr, code := ingestRows(t, "--store", dir, cut.path)
			if code != cut.code || len(rows) != 1 || rows[0].Status != "created" || rows[0].Complete {
				t.Fatalf("ingest the cut file: exit %d, %+v\n%s", code, rows, stderr)
			}
			key := rows[0].Key
			rows, stderr, code = ingestRows(t, "--store", dir, whole)
			if code != ExitOK || len(rows) != 1 || rows[0].Status != "replaced" || rows[0].Key != key || !rows[0].Complete || rows[0].Events != 106 {
				t.Errorf("ingest the whole file after the cut one: exit %d, %+v, want replaced, exit 0\n%s", code, rows, stderr)
			}
			e := entries(t, dir)[key]
			if e == nil || !e.Complete || e.Events != 106 {
				t.Errorf("stored entry %+v, want complete with 106 events", e)
			}

			// The whole file first, then the cut one: unchanged.
			dir = filepath.Join(t.TempDir(), "store")
			if rows, stderr, code := ingestRows(t, "--store", dir, whole); code != ExitOK || len(rows) != 1 || rows[0].Status != "created" {
				t.Fatalf("ingest the whole file: exit %d, %+v\n%s", code, rows, stderr)
			}
			rows, stderr, code = ingestRows(t, "--store", dir, cut.path)
			if code != cut.code || len(rows) != 1 || rows[0].Status != "unchanged" || strings.Contains(stderr, "already stored") {
				t.Errorf("ingest the cut file after the whole one: exit %d, %+v, want unchanged, exit %d\n%s", code, rows, cut.code, stderr)
			}
			if e := entries(t, dir)[key]; e == nil || !e.Complete || e.Events != 106 {
				t.Errorf("stored entry %+v, want complete with 106 events", e)
			}
		})
	}

	// A cut file that is not a part of the stored stream (another run's
	// events under the key): a duplicate, exit 4.
	dir := filepath.Join(t.TempDir(), "store")
	other := cutBEP(t, "test_mixed.bep", 30)
	data, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	// The last frame of the cut, once more: one event twice is not within
	// the stored events.
	last := 0
	for off := 0; off < len(data); {
		_, k := protowire.ConsumeBytes(data[off:])
		if k < 0 {
			t.Fatalf("cut file: bad frame at byte %d", off)
		}
		last, off = off, off+k
	}
	if err := os.WriteFile(other, append(slices.Clip(data), data[last:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := ingestRows(t, "--store", dir, whole); code != ExitOK {
		t.Fatalf("ingest the whole file: exit %d\n%s", code, stderr)
	}
	rows, stderr, code := ingestRows(t, "--store", dir, other)
	if code != ExitDuplicate || len(rows) != 1 || rows[0].Status != "duplicate" || !strings.Contains(stderr, "already stored with other content") {
		t.Errorf("ingest a cut file with an event twice after the whole one: exit %d, %+v, want duplicate, exit 4\n%s", code, rows, stderr)
	}
}
