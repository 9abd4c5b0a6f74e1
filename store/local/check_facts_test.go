package local

import (
	"database/sql"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bes-cli/bes/store"
)

// bes store check verifies the facts against the streams' events: a fact
// changed, facts missing, and facts of a key the catalog does not list are
// each one problem, and --repair writes them anew from the stream files.
func TestCheckFacts(t *testing.T) {
	s := openStore(t)
	names := []string{"test_mixed.bep", "test_cached.bep", "build_keep_going_fail.bep"}
	want := map[string]*store.Facts{}
	var keys []string
	for _, name := range names {
		st, evs := readFile(t, name)
		if _, _, err := write(t, s, st, evs).Commit(bg, "src", "bep", false); err != nil {
			t.Fatal(err)
		}
		want[st.Key] = wantFacts(t, st, evs)
		keys = append(keys, st.Key)
	}
	if r := mustCheck(t, s); !r.OK() {
		t.Fatalf("check of a fresh store: %+v", r.Problems)
	}

	// One test's status changed, one stream's facts gone, and a deleted
	// stream's facts left behind (as a catalog edited by hand, or a bes
	// that deleted only the entry, would have it).
	err := s.write(bg, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`UPDATE tests SET status = 'PASSED' WHERE key = ? AND label = '//tests:fail'`, []byte(keys[0])); err != nil {
			return err
		}
		if err := deleteFactsTx(bg, tx, keys[1]); err != nil {
			return err
		}
		_, err := tx.Exec(`DELETE FROM streams WHERE key = ?`, []byte(keys[2]))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(s.Dir(), FileName(keys[2]))); err != nil {
		t.Fatal(err)
	}
	r := mustCheck(t, s)
	got := map[string]Problem{}
	for _, p := range r.Problems {
		got[p.Key] = p
	}
	if len(r.Problems) != 3 ||
		got[keys[0]].Kind != ProblemFacts || !strings.Contains(got[keys[0]].Detail, "//tests:fail") ||
		got[keys[1]].Kind != ProblemFacts || !strings.Contains(got[keys[1]].Detail, "no facts") ||
		got[keys[2]].Kind != ProblemFactsOrphan || got[keys[2]].File != catalogName {
		t.Fatalf("problems: %+v", r.Problems)
	}

	rep, err := s.Repair(bg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.After.OK() || len(rep.Actions) != 3 {
		t.Fatalf("repair: actions %q, after %+v", rep.Actions, rep.After.Problems)
	}
	for _, key := range keys[:2] {
		f, err := s.Facts(bg, key)
		if err != nil {
			t.Fatal(err)
		}
		sameFacts(t, ShortKey(key), f, want[key])
		if n := factRows(t, s, key); n[0] != 1 || n[1] != len(f.Targets) || n[2] != len(f.Tests) {
			t.Errorf("%s: rows %v after the repair", ShortKey(key), n)
		}
	}
	if n := factRows(t, s, keys[2]); n != [3]int{} {
		t.Errorf("facts of the deleted stream: rows %v after the repair", n)
	}
}

// A catalog rebuilt from the stream files, and streams a repair indexes,
// get their facts: check finds nothing afterwards.
func TestRebuildWritesFacts(t *testing.T) {
	s := openStore(t)
	st, evs := readFile(t, "test_mixed.bep")
	if _, _, err := write(t, s, st, evs).Commit(bg, "src", "bep", false); err != nil {
		t.Fatal(err)
	}
	if err := s.write(bg, func(tx *sql.Tx) error { return deleteFactsTx(bg, tx, st.Key) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Rebuild(bg); err != nil {
		t.Fatal(err)
	}
	if r := mustCheck(t, s); !r.OK() {
		t.Errorf("check after Rebuild: %+v", r.Problems)
	}
	// Unindexed: the entry gone, the file left.
	rewriteEntry(t, s, st.Key, func(*Entry) bool { return false })
	rep, err := s.Repair(bg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.After.OK() {
		t.Errorf("after repair: %+v (actions %q)", rep.After.Problems, rep.Actions)
	}
	f, err := s.Facts(bg, st.Key)
	if err != nil {
		t.Fatal(err)
	}
	sameFacts(t, "indexed by repair", f, wantFacts(t, st, evs))
	if n := factRows(t, s, st.Key); n[0] != 1 {
		t.Errorf("rows %v after repair", n)
	}
}

// Facts written before catalog version 4 (NULL in its columns) read as
// none: Facts gives those of the events, check reports them, and --repair
// writes them anew with what version 4 added.
func TestFactsBeforeVersion4(t *testing.T) {
	s := openStore(t)
	st, evs := readFile(t, "test_mixed.bep")
	if _, _, err := write(t, s, st, evs).Commit(bg, "src", "bep", false); err != nil {
		t.Fatal(err)
	}
	err := s.write(bg, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`UPDATE invocations SET failures = NULL, damaged = NULL WHERE key = ?`, []byte(st.Key)); err != nil {
			return err
		}
		_, err := tx.Exec(`UPDATE tests SET kind = NULL, size = NULL, abort_reason = NULL, logs = NULL WHERE key = ?`, []byte(st.Key))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := wantFacts(t, st, evs)
	f, err := s.Facts(bg, st.Key)
	if err != nil {
		t.Fatal(err)
	}
	sameFacts(t, "before version 4", f, want)
	if r := mustCheck(t, s); len(r.Problems) != 1 || r.Problems[0].Kind != ProblemFacts {
		t.Fatalf("check: %+v", r.Problems)
	}
	if rep, err := s.Repair(bg); err != nil || !rep.After.OK() {
		t.Fatalf("repair: %+v, %v", rep, err)
	}
	var kinds int
	if err := s.db.QueryRow(`SELECT count(*) FROM tests WHERE key = ? AND kind = 'sh_test rule' AND logs LIKE '["file://%'`, []byte(st.Key)).Scan(&kinds); err != nil {
		t.Fatal(err)
	}
	if kinds != 8 || want.Failures != 2 || want.Damaged {
		t.Errorf("after the repair: %d sh_test rows with logs; facts %d failures, damaged %v", kinds, want.Failures, want.Damaged)
	}
}

// ManyFacts reading the facts tables whole gives what Facts gives for
// each key: facts of the catalog, of a synthetic stream, of a
// stream whose facts predate catalog version 4 (from its events); and
// ErrNotFound for a key not stored.
func TestManyFactsScan(t *testing.T) {
	defer func(n int) { manyFactsPerKey = n }(manyFactsPerKey)
	manyFactsPerKey = 0
	s := openStore(t)
	var keys []string
	for _, name := range []string{"test_mixed.bep", "test_cached.bep", "build_keep_going_fail.bep", "build_ok.bep", "bes_test_mixed.obe", ""} {
		st, evs := synthNamed("synthetic", 3)
		if name != "" {
			st, evs = readFile(t, name)
		}
		if _, _, err := write(t, s, st, evs).Commit(bg, "src", "bep", false); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, st.Key)
	}
	if err := s.write(bg, func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE tests SET logs = NULL WHERE key = ?`, []byte(keys[1]))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	many, err := s.ManyFacts(bg, keys)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, k := range keys {
		f, err := s.Facts(bg, k)
		if err != nil {
			t.Fatal(err)
		}
		sameFacts(t, ShortKey(k), many[i], f)
		if f != nil {
			n += len(f.Tests)
		}
	}
	if n < 20 {
		t.Errorf("%d tests in all", n)
	}
	if _, err := s.ManyFacts(bg, []string{keys[0], "nope.3.nope"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a key not stored: %v", err)
	}
}

// Facts, from the catalog as from the events, are not served of a stream
// whose file is cut short (a *CorruptError wrapping io.ErrUnexpectedEOF,
// as Events gives) or missing (ErrNotFound); ManyFacts alike.
func TestFactsOfDamagedStreamFile(t *testing.T) {
	s := openStore(t)
	st, evs := readFile(t, "test_mixed.bep")
	e, _, err := write(t, s, st, evs).Commit(bg, "src", "bep", false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir(), e.File)
	if err := os.Truncate(path, e.Size-100); err != nil {
		t.Fatal(err)
	}
	var ce *CorruptError
	if _, err := s.Facts(bg, e.Key); !errors.As(err, &ce) || !errors.Is(err, io.ErrUnexpectedEOF) || ce.File != path {
		t.Errorf("facts of a cut stream file: %v", err)
	}
	defer func(n int) { manyFactsPerKey = n }(manyFactsPerKey)
	manyFactsPerKey = 0
	if _, err := s.ManyFacts(bg, []string{e.Key}); !errors.As(err, &ce) {
		t.Errorf("ManyFacts of a cut stream file: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Facts(bg, e.Key); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("facts of a missing stream file: %v", err)
	}
	if _, err := s.ManyFacts(bg, []string{e.Key}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ManyFacts of a missing stream file: %v", err)
	}
}
