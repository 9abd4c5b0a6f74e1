package local

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile"
)

// loseCatalog closes the catalog of s and removes it, as a user deleting
// catalog.db would.
func loseCatalog(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(s.Dir(), catalogName+suffix)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

// garbleCatalog closes the catalog of s and replaces it with bytes that
// are no SQLite database.
func garbleCatalog(t testing.TB, s *Store) {
	t.Helper()
	loseCatalog(t, s)
	if err := os.WriteFile(filepath.Join(s.Dir(), catalogName), []byte("garbage, not a database\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// catalogJSON returns every entry of the catalog, as JSON.
func catalogJSON(t testing.TB, s *Store) string {
	t.Helper()
	b, err := json.Marshal(list(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// copyDir copies the files of src into a new directory and returns it.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "store")
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, de.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestMigrateV1Store opens a store written by the bes before the catalog
// (testdata/v1-store, made by its `bes ingest`): the index is imported
// into the catalog, entry for entry, in key order, and kept aside as
// index.ndjson.migrated; the streams read back byte for byte; Check finds
// the store consistent; opening it again imports nothing twice.
func TestMigrateV1Store(t *testing.T) {
	src := filepath.Join("testdata", "v1-store")
	index, err := os.ReadFile(filepath.Join(src, legacyIndexName))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(index), "\n"), "\n")
	if lines[0] != legacyIndexHeader || len(lines) != 6 {
		t.Fatalf("testdata index: %d lines, header %q", len(lines), lines[0])
	}
	var want []*Entry
	for _, l := range lines[1:] {
		e := &Entry{}
		if err := json.Unmarshal([]byte(l), e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
	}
	for _, opener := range []string{"Open", "OpenExisting"} {
		t.Run(opener, func(t *testing.T) {
			dir := copyDir(t, src)
			var s *Store
			if opener == "Open" {
				s, err = Open(dir)
			} else {
				s, _, err = OpenExisting(dir)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got := list(t, s)
			if len(got) != len(want) {
				t.Fatalf("%d entries migrated, want %d", len(got), len(want))
			}
			for i := range want {
				if !entriesEqual(got[i], want[i]) {
					t.Errorf("entry %d:\n got %+v\nwant %+v", i, got[i], want[i])
				}
			}
			if _, err := os.Stat(filepath.Join(dir, legacyIndexName)); !os.IsNotExist(err) {
				t.Errorf("index.ndjson is still there: %v", err)
			}
			if kept, err := os.ReadFile(filepath.Join(dir, legacyIndexName+migratedSuffix)); err != nil || !bytes.Equal(kept, index) {
				t.Errorf("index.ndjson.migrated: %d bytes, %v; want the old index", len(kept), err)
			}
			// The OBE capture's tool stream exports as the recording.
			data := testdata(t, "bes_test_mixed.obe")
			es, err := s.Lookup(bg, "8b58a6b7-1857-43e5-b701-ebbabc33fc5c")
			if err != nil || len(es) != 2 {
				t.Fatalf("Lookup of the invocation: %q, %v", entryKeys(es), err)
			}
			var out []byte
			for _, e := range es {
				if e.Component != 3 {
					continue
				}
				err := s.Events(bg, e, func(st *bepfile.Stream, ev *bepfile.Event) error {
					out = protowire.AppendBytes(out, ev.AppendEncoding(nil, st))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(out, data) {
				t.Errorf("the migrated OBE stream exports %d bytes, the recording has %d", len(out), len(data))
			}
			if r := mustCheck(t, s); !r.OK() || r.Entries != 5 || r.Files != 5 {
				t.Errorf("check after migration: %+v", r)
			}
			// A second open imports nothing, and a commit goes into the
			// catalog.
			s.Close()
			s2, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			st, evs := synthStream()
			mustCommit(t, s2, st, evs)
			if got := list(t, s2); len(got) != 6 {
				t.Errorf("%d entries after a commit, want 6", len(got))
			}
		})
	}
}

// TestMigrateCrashBeforeRename: a crash after the import committed but
// before index.ndjson was renamed leaves both; the next open only renames
// it, keeping any older .migrated file too.
func TestMigrateCrashBeforeRename(t *testing.T) {
	src := filepath.Join("testdata", "v1-store")
	dir := copyDir(t, src)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, s, bepfile.NewStream(&buildpb.StreamId{BuildId: "after"}), nil)
	s.Close()
	// The rename undone, and the index edited: were it imported again, the
	// entry of "after" would go and a new one appear.
	old, _ := os.ReadFile(filepath.Join(src, legacyIndexName))
	edited := string(old) + `{"key":"edited.3.x","build_id":"edited","invocation_id":"x","component":3,"file":"` + FileName("edited.3.x") + `"}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, legacyIndexName), []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := entryKeys(list(t, s))
	if len(keys) != 6 || !slices.Contains(keys, "after.0.") || slices.Contains(keys, "edited.3.x") {
		t.Errorf("entries %q", keys)
	}
	for _, name := range []string{legacyIndexName + migratedSuffix, legacyIndexName + migratedSuffix + ".1"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestIDLimits: ids over the limits are refused before anything is
// stored, by Create and OpenAppend alike, with a short message that names
// the field, its size and the limit (issue 13: a 40 MiB build_id once
// bricked the index); ids at the limits are stored and read back.
func TestIDLimits(t *testing.T) {
	s := openStore(t)
	huge := strings.Repeat("b", 40<<20)
	unknown := protowire.AppendTag(nil, 15, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, make([]byte, MaxStreamIDBytes))
	withUnknown := bepfile.NewStream(&buildpb.StreamId{BuildId: "u", Component: buildpb.StreamId_TOOL})
	withUnknown.IDBytes = append(slices.Clone(withUnknown.IDBytes), unknown...)
	longURL := bepfile.NewStream(&buildpb.StreamId{BuildId: "url"})
	longURL.TypeURL = strings.Repeat("u", MaxTypeURLBytes+1)
	for _, tc := range []struct {
		name  string
		st    *bepfile.Stream
		field string
	}{
		{"build_id 40 MiB", bepfile.NewStream(&buildpb.StreamId{BuildId: huge, InvocationId: "i", Component: buildpb.StreamId_TOOL}), "build_id of 41943040 bytes"},
		{"build_id one over", bepfile.NewStream(&buildpb.StreamId{BuildId: strings.Repeat("b", MaxIDBytes+1)}), "build_id of 4097 bytes"},
		{"invocation_id one over", bepfile.NewStream(&buildpb.StreamId{BuildId: "b", InvocationId: strings.Repeat("i", MaxIDBytes+1)}), "invocation_id of 4097 bytes"},
		{"unknown fields", withUnknown, "stream id of"},
		{"type URL", longURL, "type URL of 4097 bytes"},
	} {
		_, err := s.create(tc.st)
		if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), tc.field) || len(err.Error()) > 300 {
			t.Errorf("%s: Create = %.300v", tc.name, err)
		}
		if _, _, err := s.openAppend(bg, tc.st, AppendOptions{}); !errors.Is(err, ErrLimit) || len(err.Error()) > 300 {
			t.Errorf("%s: OpenAppend = %.300v", tc.name, err)
		}
	}
	des, _ := os.ReadDir(s.Dir())
	for _, de := range des {
		if strings.HasSuffix(de.Name(), fileSuffix) || isTemp(de.Name()) {
			t.Errorf("%s left in the store", de.Name())
		}
	}
	if temps, err := s.tempNames(false); err != nil || len(temps) != 0 {
		t.Errorf("temporary files left: %q, %v", temps, err)
	}
	if got := list(t, s); len(got) != 0 {
		t.Errorf("listed %q", entryKeys(got))
	}
	// At the limits: stored, listed, read back.
	at := bepfile.NewStream(&buildpb.StreamId{BuildId: strings.Repeat("b", MaxIDBytes), InvocationId: strings.Repeat("i", MaxIDBytes), Component: buildpb.StreamId_TOOL})
	e := mustCommit(t, s, at, []bepfile.Event{{Seq: 1, Payload: []byte("x")}})
	if l, err := s.Lookup(bg, strings.Repeat("i", MaxIDBytes)); err != nil || len(l) != 1 || l[0].Key != e.Key {
		t.Errorf("Lookup by the long invocation id: %v", err)
	}
	if _, evs := readBack(t, s, e); len(evs) != 1 {
		t.Errorf("%d events read back", len(evs))
	}
}
