package local

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store/bess"
)

// problemKinds returns the kinds of the problems, by file.
func problemKinds(r *CheckResult) map[string]ProblemKind {
	out := map[string]ProblemKind{}
	for _, p := range r.Problems {
		out[p.File] = p.Kind
	}
	return out
}

func mustCheck(t *testing.T, s *Store) *CheckResult {
	t.Helper()
	r, err := s.Check(bg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rewriteEntry changes the catalog entry of key with edit, bypassing the
// store's checks, as a damaged or hand-edited catalog would; an edit that
// returns false drops the entry.
func rewriteEntry(t *testing.T, s *Store, key string, edit func(e *Entry) bool) {
	t.Helper()
	err := s.write(bg, func(tx *sql.Tx) error {
		e, err := getEntryTx(bg, tx, key)
		if err != nil || e == nil {
			return fmt.Errorf("entry %q: %v", key, err)
		}
		if !edit(e) {
			return deleteEntryTx(bg, tx, key)
		}
		return putEntryTx(bg, tx, e)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func synthNamed(name string, n int) (*bepfile.Stream, []bepfile.Event) {
	st := bepfile.NewStream(&buildpb.StreamId{BuildId: name, InvocationId: "i", Component: buildpb.StreamId_TOOL})
	var evs []bepfile.Event
	for i := range n {
		evs = append(evs, bepfile.Event{Seq: int64(i + 1), Payload: []byte(strings.Repeat(name, i+1))})
	}
	return st, evs
}

// TestCheckFindsAndRepairFixes damages a store in every way Check knows and
// checks that it names each problem, that Repair fixes them all, and that
// no stream is then listed with more (or other) than its file holds.
func TestCheckFindsAndRepairFixes(t *testing.T) {
	s := openStore(t)
	if r := mustCheck(t, s); !r.OK() || r.Entries != 0 {
		t.Fatalf("empty store: %+v", r)
	}
	keys := map[string]*Entry{}
	for _, name := range []string{"missing", "unindexed", "digest", "metadata", "badname", "behind", "corrupt", "fine"} {
		st, evs := synthNamed(name, 5)
		if name == "behind" {
			// Received live (bes serve), not committed.
			a, _, err := s.openAppend(bg, st, AppendOptions{})
			if err != nil {
				t.Fatal(err)
			}
			appendAll(t, a, evs, 5)
			if keys[name], err = a.Close(bg); err != nil {
				t.Fatal(err)
			}
			continue
		}
		keys[name] = mustCommit(t, s, st, evs)
	}
	if r := mustCheck(t, s); !r.OK() || r.Entries != 8 || r.Files != 8 {
		t.Fatalf("consistent store: %+v", r)
	}
	path := func(name string) string { return filepath.Join(s.Dir(), keys[name].File) }

	// A file gone.
	os.Remove(path("missing"))
	// A file the index lost.
	rewriteEntry(t, s, keys["unindexed"].Key, func(*Entry) bool { return false })
	// Other bytes under the same size (the payload of the last event).
	b, _ := os.ReadFile(path("digest"))
	b[len(b)-1] ^= 1
	os.WriteFile(path("digest"), b, 0o600)
	// An entry claiming a complete stream.
	rewriteEntry(t, s, keys["metadata"].Key, func(e *Entry) bool { e.Complete = true; return true })
	// An entry naming a file outside the store (its own file is then
	// not indexed).
	rewriteEntry(t, s, keys["badname"].Key, func(e *Entry) bool { e.File = "../../" + e.File; return true })
	// A stream a killed server left: two more whole records and a torn one.
	st, evs := synthNamed("behind", 8)
	long := appendedEntry(t, st, evs)
	whole := streamFileBytes(t, st, evs)
	if int64(len(whole)) != long.Size {
		t.Fatalf("stream file of %d bytes, entry says %d", len(whole), long.Size)
	}
	os.WriteFile(path("behind"), whole[:len(whole)-2], 0o600)
	// A file that is no stream file at all (of the same size).
	os.WriteFile(path("corrupt"), append([]byte("BESS\x09"), make([]byte, keys["corrupt"].Size-5)...), 0o600)
	// Temporary files of killed writers.
	os.WriteFile(filepath.Join(s.Dir(), ".stream-123.tmp"), []byte("BESS"), 0o600)
	os.WriteFile(filepath.Join(s.Dir(), ".index-456.tmp"), []byte(legacyIndexHeader), 0o600)
	os.WriteFile(filepath.Join(s.Dir(), ".owner-0123456789abcdef.tmp"), nil, 0o600)
	os.WriteFile(filepath.Join(s.Dir(), ".stream-0123456789abcdef-0123456789abcdef.tmp"), []byte("BESS"), 0o600)
	// A live writer's temporary file is not a problem.
	live, err := s.create(bepfile.NewStream(&buildpb.StreamId{BuildId: "live"}))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()

	r := mustCheck(t, s)
	want := map[string]ProblemKind{
		keys["missing"].File:                            ProblemMissing,
		keys["unindexed"].File:                          ProblemUnindexed,
		keys["digest"].File:                             ProblemMismatch,
		keys["metadata"].File:                           ProblemMetadata,
		"../../" + keys["badname"].File:                 ProblemBadName,
		keys["badname"].File:                            ProblemUnindexed,
		keys["behind"].File:                             ProblemBehind,
		keys["corrupt"].File:                            ProblemCorrupt,
		".stream-123.tmp":                               ProblemTemp,
		".index-456.tmp":                                ProblemTemp,
		".owner-0123456789abcdef.tmp":                   ProblemTemp,
		".stream-0123456789abcdef-0123456789abcdef.tmp": ProblemTemp,
	}
	if got := problemKinds(r); !mapsEqual(got, want) {
		t.Fatalf("problems:\n%v\nwant\n%v", got, want)
	}
	for _, p := range r.Problems {
		if p.Detail == "" || (p.Kind != ProblemTemp && p.Key == "") {
			t.Errorf("problem without detail or key: %+v", p)
		}
	}

	rep, err := s.Repair(bg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.After.OK() {
		t.Fatalf("after Repair: %+v\nactions: %q", rep.After.Problems, rep.Actions)
	}
	actions := strings.Join(rep.Actions, "\n")
	for _, w := range []string{
		"quarantined " + keys["digest"].File + " aside as " + keys["digest"].File + ".quarantine",
		"moved " + keys["corrupt"].File + " aside",
		"stream \"unindexed.3.i\": indexed from its file",
		"stream \"missing.3.i\": dropped the entry of missing file",
		"stream \"metadata.3.i\": entry written anew from its file",
		"index entry updated from its file",
		"removed stale temporary file .stream-123.tmp",
		"removed stale temporary file .index-456.tmp",
		"removed stale temporary file .owner-0123456789abcdef.tmp",
		"removed stale temporary file .stream-0123456789abcdef-0123456789abcdef.tmp",
	} {
		if !strings.Contains(actions, w) {
			t.Errorf("actions lack %q:\n%s", w, actions)
		}
	}
	if _, err := os.Stat(path("corrupt") + ".corrupt"); err != nil {
		t.Errorf("the corrupt file was not kept aside: %v", err)
	}
	if _, err := os.Stat(path("digest") + ".quarantine"); err != nil {
		t.Errorf("the file whose content disagrees with its entry was not quarantined: %v", err)
	}
	if _, err := os.Stat(live.path); err != nil {
		t.Errorf("Repair removed a live writer's file: %v", err)
	}
	// Every entry now tells the truth about its file.
	got := map[string]*Entry{}
	for _, e := range list(t, s) {
		got[e.Key] = e
		_, evs := readBack(t, s, e)
		if int64(len(evs)) != e.Events {
			t.Errorf("%s: entry says %d events, the file holds %d", e.Key, e.Events, len(evs))
		}
	}
	if e := got[keys["behind"].Key]; e == nil || e.Events != 7 || e.Complete {
		t.Errorf("the stream left by a server: %+v, want its 7 whole events", e)
	}
	if e := got[keys["metadata"].Key]; e == nil || e.Complete {
		t.Errorf("the stream whose entry claimed completeness: %+v", e)
	}
	if e := got[keys["unindexed"].Key]; e == nil || e.Events != 5 {
		t.Errorf("the unindexed stream: %+v", e)
	}
	for _, name := range []string{"missing", "corrupt", "digest"} {
		if got[keys[name].Key] != nil {
			t.Errorf("stream %s still listed", name)
		}
	}
	if rep2, err := s.Repair(bg); err != nil || !rep2.Before.OK() || len(rep2.Actions) != 0 {
		t.Errorf("second Repair: %+v, %v", rep2, err)
	}
}

// streamFileBytes returns the stream file StreamWriter writes for evs.
func streamFileBytes(t *testing.T, st *bepfile.Stream, evs []bepfile.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := bess.NewEncoder(&buf)
	if _, err := enc.Header(st); err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if _, err := enc.Record(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestCheckLiveAppender: a stream a live Appender writes is ahead of its
// entry; Check names it open, not a problem, and Repair leaves it alone.
// A reader sees every synced event, and a record being written at the end
// of the file is not damage.
func TestCheckLiveAppender(t *testing.T) {
	st, evs, _ := obeStream(t)
	s := openStore(t)
	a, _, err := s.openAppend(bg, st, AppendOptions{IndexInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(bg)
	appendAll(t, a, evs[:30], 10)
	// Half of the next record is being written.
	var torn bytes.Buffer
	enc := a.enc
	enc.SetWriter(&torn)
	enc.Record(&evs[30])
	if _, err := a.f.WriteAt(torn.Bytes()[:torn.Len()/2], a.size); err != nil {
		t.Fatal(err)
	}
	other, err := Open(s.Dir()) // as another process would
	if err != nil {
		t.Fatal(err)
	}
	r := mustCheck(t, other)
	if !r.OK() || !slices.Equal(r.Open, []string{st.Key}) {
		t.Fatalf("check with a live appender: %+v", r)
	}
	e := entryOf(t, other, st.Key)
	if e.Events != 0 {
		t.Fatalf("the test wants an entry behind its file, it counts %d events", e.Events)
	}
	_, got := readBack(t, other, e)
	if len(got) != 30 {
		t.Errorf("a reader sees %d events of the live stream, want the 30 synced", len(got))
	}
	rep, err := other.Repair(bg)
	if err != nil || len(rep.Actions) != 0 || !rep.After.OK() {
		t.Errorf("Repair with a live appender: %+v, %v", rep, err)
	}
	if err := a.f.Truncate(a.size); err != nil {
		t.Fatal(err)
	}
}

// TestRepairLostIndex: with the catalog gone or garbled, Repair rebuilds it
// from the stream files, a stream a killed server left with a torn record
// included; a garbled catalog is kept aside.
func TestRepairLostIndex(t *testing.T) {
	st, evs, _ := obeStream(t)
	s := openStore(t)
	a, _, err := s.openAppend(bg, st, AppendOptions{IndexInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, evs[:50], 25)
	if _, err := a.f.WriteAt([]byte{0, 0x80}, a.size); err != nil { // a torn record
		t.Fatal(err)
	}
	unlockFile(a.f)
	a.f.Close()
	other, _ := synthNamed("other", 3)
	mustCommit(t, s, other, nil)
	for _, garbage := range []bool{true, false} {
		if garbage {
			garbleCatalog(t, s)
		} else {
			loseCatalog(t, s)
		}
		r := mustCheck(t, s)
		if garbage && problemKinds(r)[catalogName] != ProblemIndex {
			t.Errorf("garbled catalog: problems %+v", r.Problems)
		}
		if !garbage && len(r.Problems) != 2 {
			t.Errorf("lost catalog: problems %+v, want two unindexed files", r.Problems)
		}
		rep, err := s.Repair(bg)
		if err != nil || !rep.After.OK() {
			t.Fatalf("Repair: %+v, %v", rep, err)
		}
		if e := entryOf(t, s, st.Key); e.Events != 50 || e.Complete {
			t.Errorf("the stream of the killed server: %d events, complete %v; want 50, partial", e.Events, e.Complete)
		}
		if len(list(t, s)) != 2 {
			t.Errorf("%d entries after Repair, want 2", len(list(t, s)))
		}
		if garbage {
			if m, _ := filepath.Glob(filepath.Join(s.Dir(), catalogName+".corrupt-*")); len(m) != 1 {
				t.Errorf("the garbled catalog was not kept aside: %q", m)
			}
		}
	}
}

// TestRepairLostCatalogCutCommitted: with the catalog lost, Repair tells a
// committed stream file cut mid-record (damage: quarantined, reported with
// its file and byte offset, never indexed) from a live stream's file that
// ends mid-record (bes serve killed during a write: indexed as a partial
// stream). Before stream files said they were written whole (bess version
// 3), both were indexed as partial streams (issue 13).
func TestRepairLostCatalogCutCommitted(t *testing.T) {
	st, evs, _ := obeStream(t)
	s := openStore(t)
	e := mustCommit(t, s, st, evs)
	live, levs := synthNamed("live", 20)
	a, _, err := s.openAppend(bg, live, AppendOptions{IndexInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, a, levs[:12], 4)
	if _, err := a.f.WriteAt([]byte{0, 0x80}, a.size); err != nil { // a torn record
		t.Fatal(err)
	}
	unlockFile(a.f)
	a.f.Close()
	loseCatalog(t, s)
	// Cut the committed file inside a record, half way through.
	path := filepath.Join(s.Dir(), e.File)
	rd, err := bess.NewReader(bytes.NewReader(mustRead(t, path)), path, e.Size)
	if err != nil {
		t.Fatal(err)
	}
	var cut int64
	for range len(evs) / 2 {
		if _, err := rd.Next(); err != nil {
			t.Fatal(err)
		}
	}
	cut = rd.Offset() + 3
	if err := os.Truncate(path, cut); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Repair(bg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.After.OK() {
		t.Errorf("after Repair: %+v", rep.After.Problems)
	}
	if es, _ := s.Lookup(bg, st.Key); len(es) != 0 {
		t.Errorf("the cut committed stream is indexed: %d events, complete %v", es[0].Events, es[0].Complete)
	}
	if !fileExists(path + ".quarantine") {
		t.Errorf("%s was not quarantined; actions %q", e.File, rep.Actions)
	}
	said := false
	for _, act := range rep.Actions {
		var off int64
		if i := strings.Index(act, "at offset "); i >= 0 && strings.Contains(act, "quarantined "+e.File) && strings.Contains(act, path) {
			fmt.Sscan(act[i+len("at offset "):], &off)
			said = off >= rd.Offset() && off <= cut // in the record that was cut
		}
	}
	if !said {
		t.Errorf("no action quarantines %s naming its path and an offset in [%d, %d]: %q", e.File, rd.Offset(), cut, rep.Actions)
	}
	if le := entryOf(t, s, live.Key); le.Events != 12 || le.Complete {
		t.Errorf("the live stream: %d events, complete %v; want 12, partial", le.Events, le.Complete)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRepairBesideLiveWriters runs Repair in a loop while Appenders (bes
// serve) open new streams and append to them, in another Store on the
// directory (another process): Repair never moves, quarantines or
// re-indexes a stream a live writer holds, so every synced event is
// readable afterwards and nothing is moved aside (issue 13: repair beside a
// live server moved 9 of 500 new stream files aside, and they were lost).
func TestRepairBesideLiveWriters(t *testing.T) {
	s := openStore(t)
	repairer, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer repairer.Close()
	_, evs := synthNamed("live", 6)
	const streams = 150
	// A stream whose entry each round of Repair finds lost, so that every
	// round rebuilds entries from stream files beside the live writers.
	lost, lostEvs := synthNamed("lost", 4)
	mustCommit(t, s, lost, lostEvs)
	done, stop := make(chan struct{}), make(chan struct{})
	repairs := 0
	var repairErr error
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := repairer.write(bg, func(tx *sql.Tx) error { return deleteEntryTx(bg, tx, lost.Key) })
			if err == nil {
				var rep *RepairResult
				rep, err = repairer.Repair(bg)
				if err == nil && !slices.ContainsFunc(rep.Actions, func(a string) bool { return strings.Contains(a, "indexed from its file") }) {
					err = fmt.Errorf("repair did not index the lost stream: %q", rep.Actions)
				}
			}
			if err != nil {
				repairErr = err
				return
			}
			repairs++
		}
	}()
	var keys []string
	for i := range streams {
		st := bepfile.NewStream(&buildpb.StreamId{BuildId: fmt.Sprintf("live-%03d", i), InvocationId: "inv", Component: buildpb.StreamId_TOOL})
		a, _, err := s.openAppend(bg, st, AppendOptions{IndexInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		appendAll(t, a, evs[:3], 1)
		appendAll(t, a, evs[3:], 3)
		if i%2 == 0 { // half of them left open a while, behind their entries
			if _, err := a.Close(bg); err != nil {
				t.Fatal(err)
			}
		} else {
			defer a.Close(bg)
		}
		keys = append(keys, st.Key)
	}
	close(stop)
	<-done
	if repairErr != nil {
		t.Fatal(repairErr)
	}
	if repairs == 0 {
		t.Fatal("no Repair ran")
	}
	for _, k := range keys {
		e := entryOf(t, s, k)
		_, got := readBack(t, s, e)
		if len(got) != len(evs) {
			t.Errorf("%s: %d events readable, %d synced", k, len(got), len(evs))
		}
	}
	if e := entryOf(t, s, lost.Key); e.Events != 4 {
		t.Errorf("the lost stream: %+v", e)
	}
	if m, _ := filepath.Glob(filepath.Join(s.Dir(), "*.bess.*")); len(m) != 0 {
		t.Errorf("Repair moved live streams aside: %q", m)
	}
	t.Logf("%d repairs beside %d live streams", repairs, streams)
}
