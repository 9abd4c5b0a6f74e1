package local

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
)

// appendAll appends evs in batches of n, syncing after each.
func appendAll(t testing.TB, a *Appender, evs []bepfile.Event, n int) {
	t.Helper()
	for i := range evs {
		if err := a.Append(&evs[i]); err != nil {
			t.Fatal(err)
		}
		if (i+1)%n == 0 || i == len(evs)-1 {
			if err := a.Sync(bg); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func lenOf(s *store.Stream) int {
	if s == nil {
		return -1
	}
	return s.Len()
}

func entryOf(t testing.TB, s *Store, key string) *Entry {
	t.Helper()
	es, err := s.Lookup(bg, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Key != key {
		t.Fatalf("lookup %q: %v", key, entryKeys(es))
	}
	return es[0]
}

// appendedEntry returns the entry of st with evs appended live, in one
// go, in a store of its own: the file an Appender writes of them.
func appendedEntry(t testing.TB, st *bepfile.Stream, evs []bepfile.Event) *Entry {
	t.Helper()
	a, _, err := openStore(t).openAppend(bg, st, AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, evs, len(evs))
	e, err := a.Close(bg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// recordBytes returns the bytes of a stream file's records: without its
// header, and without the end record of a file written whole.
func recordBytes(t testing.TB, file []byte, whole bool) []byte {
	t.Helper()
	rd, err := bess.NewReader(bytes.NewReader(file), "file", int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	start := rd.Offset()
	for {
		if _, err := rd.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if rd.Whole() != whole || whole != (rd.EndOffset() >= 0) {
		t.Fatalf("whole %v, end record at %d; want whole %v", rd.Whole(), rd.EndOffset(), whole)
	}
	if whole {
		return file[start:rd.EndOffset()]
	}
	return file[start:]
}

// An appended stream holds the very records a StreamWriter commits for the
// same events, and is listed from the moment it is opened.
func TestAppendMatchesCommit(t *testing.T) {
	st, evs, _ := obeStream(t)
	for _, synth := range []bool{false, true} {
		if synth {
			st, evs = synthStream()
		}
		s := openStore(t)
		a, loaded, err := s.openAppend(bg, st, AppendOptions{Source: "127.0.0.1:1", Format: "grpc"})
		if err != nil {
			t.Fatal(err)
		}
		if loaded != nil {
			t.Fatalf("new stream: loaded %d events", loaded.Len())
		}
		e := entryOf(t, s, st.Key)
		if e.Events != 0 || e.Complete || e.Source != "127.0.0.1:1" || e.Format != "grpc" {
			t.Fatalf("entry of a new stream: %+v", e)
		}
		appendAll(t, a, evs, 7)
		// Readers see every synced event before Close.
		_, got := readBack(t, s, e)
		sameEvents(t, got, evs)
		final, err := a.Close(bg)
		if err != nil {
			t.Fatal(err)
		}

		ref := openStore(t)
		want := mustCommit(t, ref, st, evs)
		if final.Events != int64(len(evs)) || final.Complete != want.Complete {
			t.Errorf("appended entry %+v, committed %+v", final, want)
		}
		// The same records; the committed file (bess version 3) says it
		// was written whole and ends with its end record.
		gotFile, _ := os.ReadFile(filepath.Join(s.Dir(), final.File))
		wantFile, _ := os.ReadFile(filepath.Join(ref.Dir(), want.File))
		if g, w := recordBytes(t, gotFile, false), recordBytes(t, wantFile, true); !bytes.Equal(g, w) {
			t.Errorf("appended file's records (%d bytes) differ from the committed one's (%d bytes)", len(g), len(w))
		}
		if e := entryOf(t, s, st.Key); *e != *final {
			t.Errorf("index entry %+v, Close returned %+v", e, final)
		}
	}
}

// A writer killed in the middle of a write leaves a torn record: opening
// the stream again cuts it off, returns the stored events, and appending
// goes on where the synced events end.
func TestAppendResumeAfterCrash(t *testing.T) {
	st, evs, _ := obeStream(t)
	s := openStore(t)
	a, _, err := s.openAppend(bg, st, AppendOptions{IndexInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, evs[:40], 10)
	// Crash: half of the next batch reaches the file, nothing is closed,
	// the index still counts no event.
	var torn bytes.Buffer
	enc := a.enc
	enc.SetWriter(&torn)
	for i := 40; i < 45; i++ {
		enc.Record(&evs[i])
	}
	if _, err := a.f.WriteAt(torn.Bytes()[:torn.Len()-3], a.size); err != nil {
		t.Fatal(err)
	}
	unlockFile(a.f)
	a.f.Close()
	if e := entryOf(t, s, st.Key); e.Events != 0 {
		t.Fatalf("index counts %d events before Reconcile; the test wants a stale entry", e.Events)
	}

	b, loaded, err := s.openAppend(bg, st, AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The four whole records of the torn batch stay (they are whole,
	// though never acknowledged); the cut fifth goes.
	if loaded == nil || loaded.Len() != 44 {
		t.Fatalf("loaded %d events, want 44", lenOf(loaded))
	}
	if e := entryOf(t, s, st.Key); e.Events != 44 {
		t.Errorf("entry counts %d events after reopening, want 44", e.Events)
	}
	appendAll(t, b, evs[44:], 16)
	final, err := b.Close(bg)
	if err != nil {
		t.Fatal(err)
	}
	want := appendedEntry(t, st, evs)
	if final.Digest != want.Digest || final.Events != 106 || !final.Complete {
		t.Errorf("entry after resuming %+v, want digest %s, 106 events, complete", final, want.Digest)
	}
	_, got := readBack(t, s, final)
	sameEvents(t, got, evs)
}

func TestAppendBusy(t *testing.T) {
	st, evs := synthStream()
	s := openStore(t)
	a, _, err := s.openAppend(bg, st, AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(bg)
	other, err := Open(s.Dir()) // another Store on the same directory
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.openAppend(bg, st, AppendOptions{}); !errors.Is(err, ErrStreamBusy) {
		t.Fatalf("second appender: %v, want ErrStreamBusy", err)
	}
	// Reconcile leaves a held file alone.
	appendAll(t, a, evs[:3], 3)
	if _, err := a.f.WriteAt([]byte{1, 2, 3}, a.size); err != nil { // not synced, not counted
		t.Fatal(err)
	}
	fixed, err := other.Reconcile(bg)
	if err != nil || len(fixed) != 0 {
		t.Fatalf("Reconcile with a live appender: fixed %v, %v", fixed, err)
	}
	if err := a.f.Truncate(a.size); err != nil {
		t.Fatal(err)
	}
}

// Reconcile brings the entries of streams left open up to date.
func TestReconcile(t *testing.T) {
	st, evs, _ := obeStream(t)
	s := openStore(t)
	a, _, err := s.openAppend(bg, st, AppendOptions{IndexInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, evs, 50)
	unlockFile(a.f)
	a.f.Close() // killed: the entry still says 0 events
	if e := entryOf(t, s, st.Key); e.Events != 0 {
		t.Fatalf("stale entry has %d events", e.Events)
	}
	other, _ := synthStream()
	mustCommit(t, s, other, nil) // an ordinary stream: left as it is
	fixed, err := s.Reconcile(bg)
	if err != nil {
		t.Fatal(err)
	}
	if len(fixed) != 1 || fixed[0] != st.Key {
		t.Fatalf("fixed %v, want [%s]", fixed, st.Key)
	}
	e := entryOf(t, s, st.Key)
	want := appendedEntry(t, st, evs)
	if e.Events != 106 || !e.Complete || e.Digest != want.Digest || e.Size != want.Size {
		t.Errorf("reconciled entry %+v", e)
	}
	if fixed, err := s.Reconcile(bg); err != nil || len(fixed) != 0 {
		t.Errorf("second Reconcile: %v, %v", fixed, err)
	}
}

// TestAppendGroupCommit: appenders of one store that write their entries
// at once (each one row, in its own small transaction of the catalog; no
// index rewritten whole) all end up in the catalog as of their last write,
// while another Store on the directory (another process) is writing too.
func TestAppendGroupCommit(t *testing.T) {
	s := openStore(t)
	_, evs := synthStream()
	const n = 16
	apps := make([]*Appender, n)
	for i := range apps {
		st := bepfile.NewStream(&buildpb.StreamId{BuildId: fmt.Sprintf("group-%02d", i), InvocationId: "inv", Component: buildpb.StreamId_TOOL})
		a, _, err := s.openAppend(bg, st, AppendOptions{IndexInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		apps[i] = a
		appendAll(t, a, evs[:i%len(evs)+1], 2)
	}
	// The interval keeps the entries behind until Flush.
	for _, a := range apps[:2] {
		if e := entryOf(t, s, a.Stream().Key); e.Events != 0 {
			t.Fatalf("%s: entry counts %d events before Flush, want 0", e.Key, e.Events)
		}
		if err := a.Flush(bg); err != nil {
			t.Fatal(err)
		}
		if e := entryOf(t, s, a.Stream().Key); e.Events != a.Events() {
			t.Errorf("%s: entry counts %d events, %d synced", e.Key, e.Events, a.Events())
		}
	}
	other, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	// All close at once.
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, a := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = a.Close(bg)
		}()
	}
	wg.Add(1)
	go func() { // and another process commits meanwhile
		defer wg.Done()
		for i := range 8 {
			st, evs := synthNamed(fmt.Sprintf("other-%d", i), 2)
			if _, _, err := commit(t, other, st, evs, false); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	for i, a := range apps {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		e := entryOf(t, s, a.Stream().Key)
		if e.Events != int64(i%len(evs)+1) || e.Size != a.size || e.Digest != a.currentEntry().Digest {
			t.Errorf("%s: entry %+v after close, want %d events, size %d", e.Key, e, i%len(evs)+1, a.size)
		}
	}
	if got := len(list(t, s)); got != n+8 {
		t.Errorf("%d entries, want %d", got, n+8)
	}
	if res, err := s.Check(bg); err != nil || !res.OK() {
		t.Errorf("store check: %+v, %v", res, err)
	}
}

// TestCommitLeavesHeldStreamAlone: a stream file that an Appender holds (a
// stream received live, listed or, for a moment after OpenAppend created
// it, not yet) is not replaced by a commit, with or without replace, and
// Check does not take it for a file nobody indexed.
func TestCommitLeavesHeldStreamAlone(t *testing.T) {
	s := openStore(t)
	st, evs := synthStream()
	a, _, err := s.openAppend(bg, st, AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, evs[:3], 3)
	for _, replace := range []bool{false, true} {
		w, err := s.create(st)
		if err != nil {
			t.Fatal(err)
		}
		for i := range evs {
			if err := w.Append(&evs[i]); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := w.Commit(bg, "src", "bep", replace); !errors.Is(err, ErrStreamBusy) {
			t.Fatalf("commit (replace %v) over a live stream: %v, want ErrStreamBusy", replace, err)
		}
		w2, err := s.create(st)
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.commitAll(bg, []*StreamWriter{w2}, "src", "bep", replace)
		if err != nil || !errors.Is(out[0].Err, ErrStreamBusy) {
			t.Fatalf("CommitAll (replace %v) over a live stream: %v, %+v, want ErrStreamBusy", replace, err, out)
		}
	}
	if err := a.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if e := entryOf(t, s, st.Key); e.Events != 3 {
		t.Errorf("entry of the live stream counts %d events, want 3", e.Events)
	}

	// A held stream file without an entry: an Appender between creating
	// a new stream's file and writing its entry.
	other := bepfile.NewStream(&buildpb.StreamId{BuildId: "held", InvocationId: "inv", Component: buildpb.StreamId_TOOL})
	f, err := os.OpenFile(filepath.Join(s.Dir(), FileName(other.Key)), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ok, err := tryLock(f); !ok || err != nil {
		t.Fatalf("flock: %v, %v", ok, err)
	}
	w, err := s.create(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(&evs[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.Commit(bg, "src", "bep", false); !errors.Is(err, ErrStreamBusy) {
		t.Fatalf("commit over a held, unindexed stream file: %v, want ErrStreamBusy", err)
	}
	if res, err := s.Check(bg); err != nil || !res.OK() {
		t.Errorf("store check with a held, unindexed stream file: %+v, %v", res, err)
	}
	unlockFile(f)
	if res, err := s.Check(bg); err != nil || res.OK() {
		t.Errorf("store check with an unheld, unindexed stream file: %+v, %v; want a problem", res, err)
	}
	if _, err := a.Close(bg); err != nil {
		t.Fatal(err)
	}
}

// TestAppendCompleteOnlyWithFinish: a tool stream that has Bazel's event
// with last_message but not yet its component_stream_finished (a server
// killed between the two) is not listed complete, neither as the
// Appender wrote it nor as Rebuild reads it back; the finish event
// completes it.
func TestAppendCompleteOnlyWithFinish(t *testing.T) {
	s := openStore(t)
	st, evs := bepStream(t, "test_mixed.bep", "live")
	a, _, err := s.openAppend(bg, st, AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, evs, 50)
	if err := a.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if e := entryOf(t, s, st.Key); e.Events != 105 || e.Complete {
		t.Fatalf("after last_message, before the finish: %+v", e)
	}
	if err := s.Rebuild(bg); err != nil {
		t.Fatal(err)
	}
	if e := entryOf(t, s, st.Key); e.Events != 105 || e.Complete {
		t.Fatalf("rebuilt after last_message, before the finish: %+v", e)
	}
	finish, err := proto.Marshal(&buildpb.OrderedBuildEvent{StreamId: st.ID, SequenceNumber: 106, Event: &buildpb.BuildEvent{
		Event: &buildpb.BuildEvent_ComponentStreamFinished{ComponentStreamFinished: &buildpb.BuildEvent_BuildComponentStreamFinished{Type: buildpb.BuildEvent_BuildComponentStreamFinished_FINISHED}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, []bepfile.Event{{Seq: 106, Raw: finish}}, 1)
	if _, err := a.Close(bg); err != nil {
		t.Fatal(err)
	}
	if e := entryOf(t, s, st.Key); e.Events != 106 || !e.Complete {
		t.Fatalf("after the finish: %+v", e)
	}
}

// TestAppendAfterCommit: bes serve going on with a stream that was
// ingested whole (bess version 3, with its end record): OpenAppend loads
// its events, writes its header again without the whole flag and cuts
// off the end record, then appends; the stream reads back whole, and,
// being a live stream's file now, a record cut short at its end is a
// write in progress that Rebuild indexes as a partial stream, not damage.
func TestAppendAfterCommit(t *testing.T) {
	st, evs, _ := obeStream(t)
	s := openStore(t)
	mustCommit(t, s, st, evs[:50])
	a, loaded, err := s.openAppend(bg, st, AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if loaded == nil || loaded.Len() != 50 {
		t.Fatalf("loaded %d events, want 50", lenOf(loaded))
	}
	appendAll(t, a, evs[50:], 20)
	final, err := a.Close(bg)
	if err != nil {
		t.Fatal(err)
	}
	_, got := readBack(t, s, final)
	sameEvents(t, got, evs)
	path := filepath.Join(s.Dir(), final.File)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recordBytes(t, b, false) // no whole flag, no end record
	if err := os.WriteFile(path, b[:len(b)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	loseCatalog(t, s)
	if err := s.Rebuild(bg); err != nil {
		t.Fatal(err)
	}
	if e := entryOf(t, s, st.Key); e.Events != int64(len(evs)-1) {
		t.Errorf("rebuilt entry: %d events, want %d (the cut record left out)", e.Events, len(evs)-1)
	}
}
