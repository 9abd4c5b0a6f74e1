package local

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

var bg = context.Background()

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// frames splits varint-delimited data into frames, dropping a cut last one.
func frames(t testing.TB, data []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		if k <= 0 {
			t.Fatalf("bad varint at frame %d", len(out))
		}
		if uint64(len(data)-k) < n {
			break
		}
		out = append(out, data[k:k+int(n)])
		data = data[k+int(n):]
	}
	return out
}

// obeStream reads testdata/bes_test_mixed.obe as a reader of OBE files
// would: the stream identity from the first event's raw bytes, each event
// compacted when exact. It also returns the file's bytes.
func obeStream(t testing.TB) (*bepfile.Stream, []bepfile.Event, []byte) {
	t.Helper()
	data := testdata(t, "bes_test_mixed.obe")
	// Decode with protodelim to check the frames are what they should be.
	br := bufio.NewReader(bytes.NewReader(data))
	var obes []*buildpb.OrderedBuildEvent
	for {
		obe := &buildpb.OrderedBuildEvent{}
		if err := protodelim.UnmarshalFrom(br, obe); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		obes = append(obes, obe)
	}
	raw := frames(t, data)
	if len(raw) != len(obes) || len(raw) < 100 {
		t.Fatalf("%d frames, %d events", len(raw), len(obes))
	}
	var idBytes []byte
	for b := raw[0]; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if num == 1 {
			idBytes, _ = protowire.ConsumeBytes(b)
			break
		}
		b = b[protowire.ConsumeFieldValue(num, typ, b):]
	}
	id := obes[0].GetStreamId()
	st := &bepfile.Stream{ID: id, Key: bepfile.Key(id), IDBytes: idBytes, TypeURL: obes[0].GetEvent().GetBazelEvent().GetTypeUrl()}
	evs := make([]bepfile.Event, len(raw))
	var scratch []byte
	for i, f := range raw {
		evs[i] = bepfile.Event{Seq: obes[i].GetSequenceNumber(), Raw: f}
		scratch, _ = evs[i].Compact(st, scratch)
	}
	return st, evs, data
}

func openStore(t testing.TB, opts ...Option) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func write(t testing.TB, s *Store, st *bepfile.Stream, evs []bepfile.Event) *StreamWriter {
	t.Helper()
	w, err := s.create(st)
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		if err := w.Append(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func commit(t testing.TB, s *Store, st *bepfile.Stream, evs []bepfile.Event, replace bool) (*Entry, CommitResult, error) {
	t.Helper()
	return write(t, s, st, evs).Commit(bg, "src", "obe", replace)
}

func mustCommit(t testing.TB, s *Store, st *bepfile.Stream, evs []bepfile.Event) *Entry {
	t.Helper()
	e, res, err := commit(t, s, st, evs, false)
	if err != nil {
		t.Fatal(err)
	}
	if res != Created {
		t.Fatalf("commit %q: %v", st.Key, res)
	}
	return e
}

func readBack(t testing.TB, s *Store, e *Entry) (*bepfile.Stream, []bepfile.Event) {
	t.Helper()
	var st *bepfile.Stream
	var evs []bepfile.Event
	err := s.Events(bg, e, func(s *bepfile.Stream, ev *bepfile.Event) error {
		st = s
		evs = append(evs, *ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, evs
}

func list(t testing.TB, s *Store) []*Entry {
	t.Helper()
	var out []*Entry
	if err := s.List(bg, func(e *Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func entryKeys(es []*Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Key)
	}
	return out
}

// sameEvents compares events field by field (a nil and an empty Payload of
// a compact event are the same event).
func sameEvents(t testing.TB, got, want []bepfile.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.HasTime != w.HasTime || g.Time != w.Time ||
			!bytes.Equal(g.Payload, w.Payload) || !bytes.Equal(g.Raw, w.Raw) || (g.Raw == nil) != (w.Raw == nil) {
			t.Fatalf("event %d = %+v, want %+v", i, g, w)
		}
	}
}

func synthStream() (*bepfile.Stream, []bepfile.Event) {
	st := bepfile.NewStream(&buildpb.StreamId{BuildId: "build-1", InvocationId: "inv-1", Component: buildpb.StreamId_TOOL})
	ts := func(s int64, n int32) bepfile.Timestamp { return bepfile.Timestamp{Seconds: s, Nanos: n} }
	evs := []bepfile.Event{
		{Seq: 1, HasTime: true, Time: ts(1700000000, 1), Payload: []byte("first")},
		{Seq: 2, HasTime: true, Time: ts(1700000000, 999999999), Payload: []byte{}},
		{Seq: 3, Payload: bytes.Repeat([]byte{0xab}, 200000)}, // no time, big
		{Seq: 10, HasTime: true, Time: ts(1699999990, 0), Payload: []byte("gap, time going back")},
		{Seq: 0, Payload: []byte("seq zero")},
		{Seq: -7, HasTime: true, Time: ts(-5, -3), Payload: []byte("negative")},
		{Seq: -6, Raw: []byte("\x0a\x00raw, not even a valid OBE \x00\xff")},
		{Seq: 1 << 62, HasTime: true, Time: ts(1<<40, 7), Raw: []byte{}},
		{Seq: 1<<62 + 1, HasTime: true, Time: ts(1<<40, 8), Payload: []byte("last")},
	}
	return st, evs
}

func TestRoundTripSynthetic(t *testing.T) {
	s := openStore(t)
	st, evs := synthStream()
	e := mustCommit(t, s, st, evs)
	if e.Key != "build-1.3.inv-1" || e.BuildID != "build-1" || e.InvocationID != "inv-1" || e.Component != 3 ||
		e.Events != int64(len(evs)) || e.Complete || e.File != FileName(e.Key) || e.Source != "src" || e.Format != "obe" {
		t.Errorf("entry = %+v", e)
	}
	fi, err := os.Stat(filepath.Join(s.Dir(), e.File))
	if err != nil || fi.Size() != e.Size || fi.Mode().Perm() != 0o600 {
		t.Errorf("stream file: %v, %v (entry size %d)", fi, err, e.Size)
	}
	gotSt, got := readBack(t, s, e)
	if gotSt.Key != st.Key || !bytes.Equal(gotSt.IDBytes, st.IDBytes) || gotSt.TypeURL != st.TypeURL || !proto.Equal(gotSt.ID, st.ID) {
		t.Errorf("stream = %+v", gotSt)
	}
	sameEvents(t, got, evs)
	for i := range evs {
		if !bytes.Equal(got[i].AppendEncoding(nil, gotSt), evs[i].AppendEncoding(nil, st)) {
			t.Errorf("event %d encodes differently", i)
		}
	}
	// Compact events with empty payloads stay compact.
	if got[1].Raw != nil || got[1].Payload == nil {
		t.Errorf("event 1 = %+v", got[1])
	}

	// Load gives the same events in a store.Stream.
	ms, err := s.Load(bg, e)
	if err != nil {
		t.Fatal(err)
	}
	if ms.Key() != st.Key || ms.Len() != len(evs) {
		t.Errorf("Load: %q, %d events", ms.Key(), ms.Len())
	}
}

// TestOBERoundTrip stores a recorded BES tool stream and exports it again:
// the export must be the recording, byte for byte, and the stored file
// much smaller.
func TestOBERoundTrip(t *testing.T) {
	s := openStore(t)
	st, evs, data := obeStream(t)
	compact := 0
	for _, ev := range evs {
		if ev.IsBazel() {
			compact++
		}
	}
	if compact != len(evs)-1 {
		t.Errorf("%d of %d events compact", compact, len(evs))
	}
	e := mustCommit(t, s, st, evs)
	if !e.Complete || e.Command != "test" || e.Result != "TESTS_FAILED" || e.ExitCode != 3 || !e.HasExitCode ||
		e.Events != int64(len(evs)) || e.Start.IsZero() || !e.Finish.After(e.Start) || e.InvocationID == "" {
		t.Errorf("entry = %+v", e)
	}
	var out []byte
	err := s.Events(bg, e, func(st *bepfile.Stream, ev *bepfile.Event) error {
		b := ev.AppendEncoding(nil, st)
		out = protowire.AppendBytes(out, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, data) {
		t.Fatalf("export differs from the recording (%d vs %d bytes)", len(out), len(data))
	}
	ratio := float64(e.Size) / float64(len(data))
	t.Logf("stream file %d bytes, OBE file %d bytes: %.1f%%", e.Size, len(data), 100*ratio)
	if ratio >= 0.75 {
		t.Errorf("stream file is %.1f%% of the OBE file, want < 75%%", 100*ratio)
	}
	// The in-memory replay gives the same stream.
	ms, err := s.Load(bg, e)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ms.ToProto()
	if err != nil {
		t.Fatal(err)
	}
	var out2 []byte
	for _, obe := range msg.GetEvents() {
		b, _ := proto.Marshal(obe)
		out2 = protowire.AppendBytes(out2, b)
	}
	if !bytes.Equal(out2, data) {
		t.Error("Load + ToProto differs from the recording")
	}
}

// bepStream turns a Bazel binary file into compact events with sequence
// numbers from 1, as a reader of Bazel files would.
func bepStream(t testing.TB, file, buildID string) (*bepfile.Stream, []bepfile.Event) {
	raw := frames(t, testdata(t, file))
	st := bepfile.NewStream(&buildpb.StreamId{BuildId: buildID, InvocationId: buildID, Component: buildpb.StreamId_TOOL})
	evs := make([]bepfile.Event, len(raw))
	for i, f := range raw {
		evs[i] = bepfile.Event{Seq: int64(i + 1), Payload: f}
	}
	return st, evs
}

func TestDuplicateUnchangedReplace(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	s := openStore(t, WithClock(func() time.Time { return now }))
	st, evs := synthStream()
	e1 := mustCommit(t, s, st, evs)
	if !e1.Ingested.Equal(now) {
		t.Errorf("Ingested = %v", e1.Ingested)
	}
	index1 := catalogJSON(t, s)
	file1, _ := os.ReadFile(filepath.Join(s.Dir(), e1.File))

	// Identical content: Unchanged, the stored entry comes back.
	now = now.Add(time.Hour)
	e, res, err := commit(t, s, st, evs, false)
	if err != nil || res != Unchanged || !e.Ingested.Equal(e1.Ingested) || e.Digest != e1.Digest {
		t.Errorf("identical commit: %+v, %v, %v", e, res, err)
	}
	if _, res, err := commit(t, s, st, evs, true); err != nil || res != Unchanged {
		t.Errorf("identical commit with replace: %v, %v", res, err)
	}

	// Other content, same key, no replace: DuplicateStreamError, no change.
	other := slices.Clone(evs)
	other[0].Payload = []byte("changed")
	_, _, err = commit(t, s, st, other, false)
	var dup *store.DuplicateStreamError
	if !errors.As(err, &dup) || dup.Key != st.Key {
		t.Fatalf("duplicate commit: %v", err)
	}
	index2 := catalogJSON(t, s)
	file2, _ := os.ReadFile(filepath.Join(s.Dir(), e1.File))
	if index1 != index2 || !bytes.Equal(file1, file2) {
		t.Error("a refused commit changed the store")
	}
	assertNoTemp(t, s)

	// With replace: Replaced.
	e3, res, err := commit(t, s, st, other, true)
	if err != nil || res != Replaced || e3.Digest == e1.Digest || !e3.Ingested.Equal(now) {
		t.Fatalf("replace: %+v, %v, %v", e3, res, err)
	}
	got := list(t, s)
	if len(got) != 1 || got[0].Digest != e3.Digest {
		t.Errorf("list = %+v", got)
	}
	_, back := readBack(t, s, got[0])
	sameEvents(t, back, other)
	assertNoTemp(t, s)
}

func assertNoTemp(t testing.TB, s *Store) {
	t.Helper()
	names, err := s.tempNames(true)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		t.Errorf("temporary file %s left behind", n)
	}
}

func TestAbort(t *testing.T) {
	s := openStore(t)
	st, evs := synthStream()
	w := write(t, s, st, evs)
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	if err := w.Append(&evs[0]); !errors.Is(err, ErrWriterClosed) {
		t.Errorf("Append after Abort: %v", err)
	}
	if _, _, err := w.Commit(bg, "", "", false); !errors.Is(err, ErrWriterClosed) {
		t.Errorf("Commit after Abort: %v", err)
	}
	assertNoTemp(t, s)
	if got := list(t, s); len(got) != 0 {
		t.Errorf("list = %+v", got)
	}
}

func TestCreateRejectsBadStream(t *testing.T) {
	s := openStore(t)
	st := bepfile.NewStream(&buildpb.StreamId{BuildId: "B"})
	for _, bad := range []*bepfile.Stream{
		nil,
		{ID: st.ID, Key: "other", IDBytes: st.IDBytes},
		{ID: st.ID, Key: st.Key, IDBytes: []byte{0x0a, 0x05}},
	} {
		if w, err := s.create(bad); err == nil {
			w.Abort()
			t.Errorf("Create(%+v): no error", bad)
		}
	}
	assertNoTemp(t, s)
}

func TestHostileIDs(t *testing.T) {
	s := openStore(t)
	long := strings.Repeat("x", MaxIDBytes) // the longest ids a store takes
	ids := []*buildpb.StreamId{
		{BuildId: "../../../etc/passwd", InvocationId: "/", Component: buildpb.StreamId_TOOL},
		{BuildId: "..", InvocationId: "..", Component: buildpb.StreamId_TOOL},
		{BuildId: "a/b", InvocationId: "c\\d", Component: buildpb.StreamId_TOOL},
		{BuildId: "nul\x00byte", InvocationId: "new\nline", Component: buildpb.StreamId_TOOL},
		{BuildId: "\r\n{\"key\":\"fake\"}\n", Component: buildpb.StreamId_CONTROLLER},
		{BuildId: long, InvocationId: long, Component: buildpb.StreamId_TOOL},
		{BuildId: "Case", InvocationId: "inv", Component: buildpb.StreamId_TOOL},
		{BuildId: "case", InvocationId: "inv", Component: buildpb.StreamId_TOOL},
		{BuildId: "CASE", InvocationId: "INV", Component: buildpb.StreamId_TOOL},
		{BuildId: "<script>&amp;", InvocationId: "\u2028日本", Component: buildpb.StreamId_WORKER},
		{BuildId: "", InvocationId: "", Component: buildpb.StreamId_UNKNOWN_COMPONENT},
		{BuildId: " ", InvocationId: "\t", Component: buildpb.StreamId_TOOL},
	}
	var keys []string
	files := map[string]bool{}
	for i, id := range ids {
		st := bepfile.NewStream(id)
		evs := []bepfile.Event{{Seq: 1, Payload: []byte(fmt.Sprint("event of ", i))}}
		e := mustCommit(t, s, st, evs)
		if files[e.File] {
			t.Errorf("%q: file %s shared", e.Key, e.File)
		}
		files[e.File] = true
		keys = append(keys, st.Key)
	}
	// Every file is in the directory itself.
	des, err := os.ReadDir(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
		if de.IsDir() && de.Name() != tempDirName {
			t.Errorf("directory %s in the store", de.Name())
		}
	}
	if temps, err := os.ReadDir(filepath.Join(s.Dir(), tempDirName)); err != nil || len(temps) != 0 {
		t.Errorf("the temporary files' directory holds %v (%v)", temps, err)
	}
	if len(names) != len(ids)+5 { // + catalog.db, its -wal and -shm, lock, and tmp/
		t.Errorf("store holds %q", names)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "..", "..", "..", "etc")); err == nil {
		t.Error("something was written outside the store")
	}
	slices.Sort(keys)
	got := list(t, s)
	if !slices.Equal(entryKeys(got), keys) {
		t.Fatalf("list keys differ:\n got %q\nwant %q", entryKeys(got), keys)
	}
	for i, e := range got {
		id := ids[slices.IndexFunc(ids, func(id *buildpb.StreamId) bool { return bepfile.Key(id) == e.Key })]
		if e.BuildID != id.BuildId || e.InvocationID != id.InvocationId || e.Component != int32(id.Component) {
			t.Errorf("entry %d = %q %q %d", i, e.BuildID, e.InvocationID, e.Component)
		}
		st, evs := readBack(t, s, e)
		if st.Key != e.Key || !proto.Equal(st.ID, id) || len(evs) != 1 {
			t.Errorf("read back %q: %q, %d events", e.Key, st.Key, len(evs))
		}
		l, err := s.Lookup(bg, e.Key)
		if err != nil || len(l) != 1 || l[0].Key != e.Key {
			t.Errorf("Lookup(%q) = %v, %v", e.Key, entryKeys(l), err)
		}
	}
	// Rebuild gets every one of them back.
	if err := s.Rebuild(bg); err != nil {
		t.Fatal(err)
	}
	if got := list(t, s); !slices.Equal(entryKeys(got), keys) {
		t.Errorf("after rebuild: %q", entryKeys(got))
	}
}

// TestListLarge lists 10,000 entries from the catalog alone: the stream files
// do not exist, so List cannot be opening them.
func TestListLarge(t *testing.T) {
	s := openStore(t)
	const n = 10000
	err := s.write(bg, func(tx *sql.Tx) error {
		for i := range n {
			key := fmt.Sprintf("build-%05d.3.inv-%05d", i, i)
			if err := putEntryTx(bg, tx, &Entry{Key: key, InvocationID: fmt.Sprintf("inv-%05d", i), Events: int64(i), File: FileName(key), Command: "build"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	err = s.List(bg, func(e *Entry) error {
		if e.Events != int64(i) || e.Command != "build" {
			return fmt.Errorf("entry %d = %+v", i, e)
		}
		i++
		return nil
	})
	if err != nil || i != n {
		t.Fatalf("List: %d entries, %v", i, err)
	}
	got, err := s.Lookup(bg, "inv-09999")
	if err != nil || len(got) != 1 {
		t.Errorf("Lookup = %v, %v", entryKeys(got), err)
	}
	// A Commit adds to them.
	st := bepfile.NewStream(&buildpb.StreamId{BuildId: "build-05000x"})
	mustCommit(t, s, st, nil)
	i = 0
	if err := s.List(bg, func(*Entry) error { i++; return nil }); err != nil || i != n+1 {
		t.Errorf("after commit: %d entries, %v", i, err)
	}
}

func TestCorruptIndex(t *testing.T) {
	s := openStore(t)
	st, evs := synthStream()
	mustCommit(t, s, st, evs)
	garbleCatalog(t, s)
	path := filepath.Join(s.Dir(), catalogName)
	err := s.List(bg, func(*Entry) error { return nil })
	var ie *IndexError
	if !errors.As(err, &ie) || ie.File != path || !strings.Contains(err.Error(), "bes store check --repair") {
		t.Errorf("List = %v", err)
	}
	if _, err := s.Lookup(bg, st.Key); !errors.As(err, &ie) {
		t.Errorf("Lookup = %v", err)
	}
	if _, _, err := commit(t, s, bepfile.NewStream(&buildpb.StreamId{BuildId: "new"}), nil, false); !errors.As(err, &ie) {
		t.Errorf("Commit = %v", err)
	}
	// Opening the store does not fail: Check and Repair must be able to.
	if _, err := Open(s.Dir()); err != nil {
		t.Errorf("Open = %v", err)
	}
	// Rebuild repairs it.
	if err := s.Rebuild(bg); err != nil {
		t.Fatal(err)
	}
	if got := list(t, s); len(got) != 1 || got[0].Key != st.Key {
		t.Errorf("after rebuild: %q", entryKeys(got))
	}
}

func TestCorruptStreamFile(t *testing.T) {
	s := openStore(t)
	st, evs := synthStream()
	e := mustCommit(t, s, st, evs)
	path := filepath.Join(s.Dir(), e.File)
	good, _ := os.ReadFile(path)
	// A committed file is written whole (bess version 3): its header has
	// flags, and it ends with an end record.
	headerLen := len(magic) + 1 + 1 + protowire.SizeBytes(len(st.IDBytes)) + protowire.SizeBytes(len(st.TypeURL)) + 4 // and its CRC-32C
	endLen := 1 + protowire.SizeVarint(uint64(len(evs))) + 4

	for _, tc := range []struct {
		name   string
		data   []byte
		events int // events seen before the error
		offset int64
		cause  error
	}{
		{"empty", nil, 0, 0, io.ErrUnexpectedEOF},
		{"magic", append([]byte("XESS"), good[4:]...), 0, 0, nil},
		{"version", append([]byte("BESS\x09"), good[5:]...), 0, 4, nil},
		{"cut header", good[:headerLen-7], 0, int64(len(magic) + 1 + 1 + protowire.SizeBytes(len(st.IDBytes))), io.ErrUnexpectedEOF},
		{"cut in first record", good[:headerLen+4], 0, int64(headerLen) + 1, io.ErrUnexpectedEOF},
		{"cut in last record", good[:len(good)-endLen-1], len(evs) - 1, -1, bess.ErrCut},
		{"cut in end record", good[:len(good)-1], len(evs), -1, bess.ErrCut},
		{"unknown flag", append(append(slices.Clone(good[:headerLen]), 0x10), good[headerLen+1:]...), 0, int64(headerLen), nil},
		{"huge length", append(slices.Clone(good[:headerLen]), 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f), 0, int64(headerLen) + 1, nil},
		{"length past end", append(slices.Clone(good[:headerLen]), 0x00, 0xff, 0x01, 1, 2, 3), 0, int64(headerLen) + 1, io.ErrUnexpectedEOF},
	} {
		os.WriteFile(path, tc.data, 0o600)
		n := 0
		err := s.Events(bg, e, func(*bepfile.Stream, *bepfile.Event) error { n++; return nil })
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Errorf("%s: err = %v", tc.name, err)
			continue
		}
		if ce.File != path || n != tc.events || (tc.offset >= 0 && ce.Offset != tc.offset) || (tc.cause != nil && !errors.Is(err, tc.cause)) {
			t.Errorf("%s: %d events, %v", tc.name, n, err)
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "offset") {
			t.Errorf("%s: message %q", tc.name, err)
		}
	}
	// A missing file.
	os.Remove(path)
	if err := s.Events(bg, e, func(*bepfile.Stream, *bepfile.Event) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	// A file name in the index that is not a stream file name is refused.
	bad := *e
	bad.File = "../" + e.File
	if err := s.Events(bg, &bad, func(*bepfile.Stream, *bepfile.Event) error { return nil }); err == nil {
		t.Error("Events with a bad file name: no error")
	}
}

func TestRebuild(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := openStore(t, WithClock(func() time.Time { return now }))
	st1, evs1, _ := obeStream(t)
	st2, evs2 := bepStream(t, "build_ok.bep", "b2")
	st3, evs3 := bepStream(t, "query.bep", "b3")
	e1 := mustCommit(t, s, st1, evs1)
	mustCommit(t, s, st2, evs2)
	mustCommit(t, s, st3, evs3)
	before := list(t, s)

	// Lose the catalog: everything but the source fields comes back.
	loseCatalog(t, s)
	if got := list(t, s); len(got) != 0 {
		t.Fatalf("list without catalog: %d", len(got))
	}
	if err := s.Rebuild(bg); err != nil {
		t.Fatal(err)
	}
	after := list(t, s)
	if len(after) != len(before) {
		t.Fatalf("rebuilt %d entries, want %d", len(after), len(before))
	}
	for i := range before {
		b, a := *before[i], *after[i]
		if a.Source != "" || a.Ingested.IsZero() {
			t.Errorf("rebuilt %q: source %q ingested %v", a.Key, a.Source, a.Ingested)
		}
		a.Source, a.Format, a.Ingested = b.Source, b.Format, b.Ingested
		if !entriesEqual(&a, &b) {
			t.Errorf("rebuilt entry:\n got %+v\nwant %+v", a, b)
		}
	}

	// Commit again, then drop one entry of the catalog: Rebuild restores
	// it and keeps the source fields of the others.
	loseCatalog(t, s)
	for _, w := range []struct {
		st  *bepfile.Stream
		evs []bepfile.Event
	}{{st1, evs1}, {st2, evs2}, {st3, evs3}} {
		commit(t, s, w.st, w.evs, false)
	}
	dropped := *list(t, s)[1]
	rewriteEntry(t, s, dropped.Key, func(*Entry) bool { return false })
	if len(list(t, s)) != 2 {
		t.Fatal("catalog edit failed")
	}
	// Also a damaged stream file, which is left out.
	os.WriteFile(filepath.Join(s.Dir(), FileName("junk")), []byte("BESS\x01\x05"), 0o600)
	err := s.Rebuild(bg)
	var ce *CorruptError
	if !errors.As(err, &ce) || !strings.Contains(ce.File, FileName("junk")) {
		t.Errorf("Rebuild = %v", err)
	}
	got := list(t, s)
	if len(got) != 3 {
		t.Fatalf("rebuilt %q", entryKeys(got))
	}
	for _, e := range got {
		if want := "src"; e.Key == dropped.Key && e.Source != "" || e.Key != dropped.Key && e.Source != want {
			t.Errorf("%q: source %q (dropped %q)", e.Key, e.Source, dropped.Key)
		}
	}
	if l, _ := s.Lookup(bg, e1.Key); len(l) != 1 || !l[0].Complete || l[0].Command != "test" {
		t.Errorf("rebuilt OBE entry = %+v", l)
	}
}

func entriesEqual(a, b *Entry) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// TestConcurrentCommits commits from many goroutines through two Store
// values on one directory, as two processes would.
func TestConcurrentCommits(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s1, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	const workers, per = 12, 8
	var wg sync.WaitGroup
	for w := range workers {
		s := s1
		if w%2 == 1 {
			s = s2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				st := bepfile.NewStream(&buildpb.StreamId{BuildId: fmt.Sprintf("w%02d-%02d", w, i), Component: buildpb.StreamId_TOOL})
				evs := []bepfile.Event{{Seq: 1, Payload: []byte{byte(w), byte(i)}}}
				cw, err := s.create(st)
				if err != nil {
					t.Error(err)
					return
				}
				cw.Append(&evs[0])
				if _, res, err := cw.Commit(bg, "", "", false); err != nil || res != Created {
					t.Error(res, err)
				}
				// Everyone also races on one shared key with identical content.
				shared := bepfile.NewStream(&buildpb.StreamId{BuildId: "shared"})
				cw, _ = s.create(shared)
				if _, _, err := cw.Commit(bg, "", "", false); err != nil {
					t.Error(err)
				}
				// Read while others write.
				if _, err := s.Lookup(bg, "shared"); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got := list(t, s1)
	if len(got) != workers*per+1 {
		t.Errorf("index has %d entries, want %d", len(got), workers*per+1)
	}
	if !slices.IsSortedFunc(got, func(a, b *Entry) int { return strings.Compare(a.Key, b.Key) }) {
		t.Error("index not sorted")
	}
	assertNoTemp(t, s1)
}

// TestMultiProcess runs committers in separate processes (this test binary
// re-run as a helper) on one store.
func TestMultiProcess(t *testing.T) {
	if dir := os.Getenv("BES_STORE_TEST_HELPER_DIR"); dir != "" {
		helperProcess(t, dir, os.Getenv("BES_STORE_TEST_HELPER_ID"))
		return
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	dir := filepath.Join(t.TempDir(), "store")
	const procs, per = 4, 15
	var cmds []*exec.Cmd
	for p := range procs {
		cmd := exec.Command(exe, "-test.run=^TestMultiProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "BES_STORE_TEST_HELPER_DIR="+dir, "BES_STORE_TEST_HELPER_ID="+strconv.Itoa(p), "BES_STORE_TEST_HELPER_N="+strconv.Itoa(per))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("helper %d:\n%s", p, out.String())
			}
		})
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Error(err)
		}
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := list(t, s)
	if len(got) != procs*per {
		t.Errorf("index has %d entries, want %d", len(got), procs*per)
	}
}

func helperProcess(t *testing.T, dir, id string) {
	n, _ := strconv.Atoi(os.Getenv("BES_STORE_TEST_HELPER_N"))
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		st := bepfile.NewStream(&buildpb.StreamId{BuildId: fmt.Sprintf("p%s-%03d", id, i), Component: buildpb.StreamId_TOOL})
		w, err := s.create(st)
		if err != nil {
			t.Fatal(err)
		}
		w.Append(&bepfile.Event{Seq: 1, Payload: []byte(id)})
		if _, _, err := w.Commit(bg, "helper", "", false); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Dir())
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("store dir: %v, %v", fi.Mode(), err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := Open(f); err == nil {
		t.Error("Open(a file): no error")
	}
	if _, err := Open(""); err == nil {
		t.Error("Open(\"\"): no error")
	}
}

func TestDefaultDir(t *testing.T) {
	home := func() (string, error) { return "/home/u", nil }
	noHome := func() (string, error) { return "", errors.New("no home") }
	for _, tc := range []struct {
		env  map[string]string
		goos string
		home func() (string, error)
		want string
	}{
		{map[string]string{"BES_STORE": "/s", "XDG_DATA_HOME": "/x"}, "linux", home, "/s"},
		{map[string]string{"XDG_DATA_HOME": "/x"}, "linux", home, "/x/bes"},
		{map[string]string{"XDG_DATA_HOME": "relative"}, "linux", home, "/home/u/.local/share/bes"},
		{nil, "linux", home, "/home/u/.local/share/bes"},
		{nil, "darwin", home, "/home/u/Library/Application Support/bes"},
		{map[string]string{"XDG_DATA_HOME": "/x"}, "darwin", home, "/x/bes"},
		{nil, "linux", noHome, ""},
	} {
		got, err := defaultDir(func(k string) string { return tc.env[k] }, tc.goos, tc.home)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("defaultDir(%v, %s) = %q, %v; want %q", tc.env, tc.goos, got, err, tc.want)
		}
	}
}

func TestFileName(t *testing.T) {
	if got := FileName("B.3.I"); !streamFileRE.MatchString(got) {
		t.Errorf("FileName = %q", got)
	}
	if FileName("a") == FileName("A") {
		t.Error("case-only different keys share a file")
	}
}

func BenchmarkWriteRead(b *testing.B) {
	s := openStore(b)
	st, evs, data := obeStream(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w := write(b, s, st, evs)
		e, _, err := w.Commit(bg, "", "", true)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Events(bg, e, func(*bepfile.Stream, *bepfile.Event) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
