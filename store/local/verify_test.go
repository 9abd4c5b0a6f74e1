package local

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store/bess"
)

// eventsOf reads the stream of e with Events, and returns how many events
// fn saw and the error.
func eventsOf(s *Store, e *Entry) (int, error) {
	n := 0
	err := s.Events(bg, e, func(*bepfile.Stream, *bepfile.Event) error { n++; return nil })
	return n, err
}

// TestReadChecksStreamAgainstEntry: what Events and Load return is checked
// against the stream file's checksums and its catalog entry (issue 13: a
// damaged stream was served as data, exit 0): a byte flipped in a record,
// a stream cut at a record boundary (which reads as a shorter stream
// without the entry), and, in a stream file of the format before issue 13
// (no checksums: testdata/v1-store), a byte flipped anywhere, each give a
// *CorruptError naming the file and an offset; never the events as if
// nothing happened.
func TestReadChecksStreamAgainstEntry(t *testing.T) {
	st, evs := synthNamed("verify", 6)
	for _, tc := range []struct {
		name   string
		damage func(b []byte) []byte
		cause  error
		seen   int // events fn sees before the error
	}{
		// A committed file ends with an end record of 6 bytes (bess
		// version 3).
		{"flipped payload byte", func(b []byte) []byte { b[len(b)-6-6] ^= 1; return b }, bess.ErrChecksum, 5},
		{"cut at a record boundary", func(b []byte) []byte { return b[:len(b)-6-(len("verify")*6+2+4)] }, io.ErrUnexpectedEOF, 5},
	} {
		s := openStore(t)
		e := mustCommit(t, s, st, evs)
		path := filepath.Join(s.Dir(), e.File)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, tc.damage(b), 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := eventsOf(s, e)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.File != path || !errors.Is(err, tc.cause) || n != tc.seen {
			t.Errorf("%s: %d events, %v; want %d and a *CorruptError wrapping %v", tc.name, n, err, tc.seen, tc.cause)
		}
		if _, err := s.Load(bg, e); !errors.As(err, &ce) {
			t.Errorf("%s: Load: %v", tc.name, err)
		}
	}

	// A catalog entry that counts other events than its bytes hold.
	s := openStore(t)
	e := mustCommit(t, s, st, evs)
	spliced := *e
	spliced.Events++
	if n, err := eventsOf(s, &spliced); err == nil || !strings.Contains(err.Error(), "hold 6 events, the catalog entry says 7") || n != 6 {
		t.Errorf("an entry counting 7 events of 6: %d events, %v", n, err)
	}

	// Version 1 files: the entry's digest.
	dir := copyDir(t, filepath.Join("testdata", "v1-store"))
	old, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	all := list(t, old)
	if len(all) == 0 {
		t.Fatal("testdata/v1-store lists nothing")
	}
	for _, e := range all {
		if n, err := eventsOf(old, e); err != nil || int64(n) != e.Events {
			t.Fatalf("v1 stream %s: %d events, %v; want %d", e.Key, n, err, e.Events)
		}
	}
	e = all[len(all)-1]
	path := filepath.Join(dir, e.File)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b[4] != bess.Version1 {
		t.Fatalf("testdata/v1-store/%s has version %d", e.File, b[4])
	}
	b[len(b)-1] ^= 0x40 // the last payload's last byte: still decodes
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := eventsOf(old, e)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != path || !strings.Contains(err.Error(), "SHA-256") || int64(n) != e.Events {
		t.Errorf("a flipped byte in a v1 stream: %d events, %v", n, err)
	}
}

// TestRepairQuarantinesDamagedTail: the records a killed server synced
// after the size its entry vouches for are checked too: a last record cut
// short is a write it never finished, which Repair cuts off, but a record
// whose checksum fails is damage, which Repair quarantines, saying so,
// rather than failing (issue 13: Repair stopped on the error) or indexing
// the stream as it is.
func TestRepairQuarantinesDamagedTail(t *testing.T) {
	st, evs := synthNamed("tail", 6)
	s := openStore(t)
	a, _, err := s.openAppend(bg, st, AppendOptions{IndexInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, evs[:3], 3)
	if err := a.Flush(bg); err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, evs[3:], 3)
	vouched := entryOf(t, s, st.Key)
	// A byte flipped in the last event's payload, and the server killed.
	b := make([]byte, 1)
	a.f.ReadAt(b, a.size-6)
	b[0] ^= 1
	a.f.WriteAt(b, a.size-6)
	unlockFile(a.f)
	a.f.Close()

	if k := problemKinds(mustCheck(t, s))[vouched.File]; k != ProblemMismatch {
		t.Errorf("check: %q, want %q", k, ProblemMismatch)
	}
	rep, err := s.Repair(bg)
	if err != nil {
		t.Fatalf("Repair: %v", err)
	}
	if !rep.After.OK() || !strings.Contains(strings.Join(rep.Actions, "\n"), "quarantined "+vouched.File) {
		t.Errorf("Repair: %+v, actions %q", rep.After.Problems, rep.Actions)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), vouched.File+".quarantine")); err != nil {
		t.Errorf("not quarantined: %v", err)
	}
	if n := len(list(t, s)); n != 0 {
		t.Errorf("%d streams listed", n)
	}
}

// TestAppendToVersion1File: a stream file of the format before issue 13
// (testdata/v1-store) continued by an Appender stays one format (version 1
// records after version 1 records), reads back whole, event for event, and
// checks consistent: a store written before checksums keeps working.
func TestAppendToVersion1File(t *testing.T) {
	dir := copyDir(t, filepath.Join("testdata", "v1-store"))
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var e *Entry
	for _, c := range list(t, s) {
		if e == nil || c.Events > e.Events {
			e = c
		}
	}
	st, before := readBack(t, s, e)
	a, loaded, err := s.openAppend(bg, st, AppendOptions{IndexInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if int64(loaded.Len()) != e.Events {
		t.Fatalf("OpenAppend loaded %d events, the entry says %d", loaded.Len(), e.Events)
	}
	last := before[len(before)-1]
	more := []bepfile.Event{{Seq: last.Seq + 1, Payload: []byte("added")}, {Seq: last.Seq + 2, Payload: []byte("after checksums")}}
	appendAll(t, a, more, 1)
	after, err := a.Close(bg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, e.File))
	if err != nil || b[4] != bess.Version1 {
		t.Fatalf("the continued file: version %d, %v", b[4], err)
	}
	_, got := readBack(t, s, after)
	if len(got) != len(before)+2 || string(got[len(got)-1].Payload) != "after checksums" {
		t.Errorf("read back %d events, want %d", len(got), len(before)+2)
	}
	if r := mustCheck(t, s); !r.OK() {
		t.Errorf("check: %+v", r.Problems)
	}
}
