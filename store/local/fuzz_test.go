package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// Fuzz targets for the two files of a store a reader trusts least: a
// stream file and the index. `go test` runs their seed corpus; run one for
// longer with
//
//	go test -run='^$' -fuzz='^FuzzStreamFile$' -fuzztime=5m ./store/local

// streamFileSeed returns the stream file of the first n events of a real
// stream, as StreamWriter writes it.
func streamFileSeed(t testing.TB, st *bepfile.Stream, evs []bepfile.Event) []byte {
	s := openStore(t)
	e := mustCommit(t, s, st, evs)
	b, err := os.ReadFile(filepath.Join(s.Dir(), e.File))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzStreamFile reads arbitrary bytes as a stream file, its size known or
// not: no panic, every failure a *CorruptError at an offset inside the
// data, and memory bounded by the data, whatever a length claims.
func FuzzStreamFile(f *testing.F) {
	st, evs, _ := obeStream(f)
	f.Add(streamFileSeed(f, st, evs[:3]), true)
	f.Add(streamFileSeed(f, st, evs[len(evs)-2:]), false)
	bst, bevs := bepStream(f, "test_mixed.bep", "fuzz")
	f.Add(streamFileSeed(f, bst, bevs[:2]), true)
	f.Add(streamFileSeed(f, bst, nil), false)
	f.Add([]byte("BESS\x01\x00\x00\x07\xff\xff\xff\xff\x0f"), false)
	f.Fuzz(func(t *testing.T, data []byte, sized bool) {
		size := int64(-1)
		if sized {
			size = int64(len(data))
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc

		rd, err := NewReader(bytes.NewReader(data), "fuzz", size)
		if err != nil {
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Offset < 0 || ce.Offset > int64(len(data)) {
				t.Fatalf("NewReader: %v, want a *CorruptError inside the data", err)
			}
			return
		}
		if rd.Stream().Key != bepfile.Key(rd.Stream().ID) {
			t.Fatalf("stream key %q, id %v", rd.Stream().Key, rd.Stream().ID)
		}
		for n := 0; ; n++ {
			if n > len(data) {
				t.Fatalf("%d events from %d bytes", n, len(data))
			}
			start := rd.Offset()
			ev, err := rd.Next()
			if err == io.EOF {
				if sized && rd.Offset() != size {
					t.Fatalf("clean end at %d of %d bytes", rd.Offset(), size)
				}
				break
			}
			if err != nil {
				var ce *CorruptError
				if !errors.As(err, &ce) || ce.Offset < start || ce.Offset > int64(len(data)) {
					t.Fatalf("Next: %v, want a *CorruptError at or after %d", err, start)
				}
				if _, again := rd.Next(); again != err {
					t.Fatalf("Next after %v returned %v", err, again)
				}
				break
			}
			if int64(len(ev.Payload)+len(ev.Raw)) > rd.Offset()-start {
				t.Fatalf("event of %d bytes from a record of %d", len(ev.Payload)+len(ev.Raw), rd.Offset()-start)
			}
		}
		runtime.ReadMemStats(&ms)
		// The buffered reader, and at most readChunk for a length that
		// is only claimed.
		if got, lim := ms.TotalAlloc-before, uint64(2<<20+64*len(data)); got > lim {
			t.Fatalf("allocated %d bytes reading %d, more than %d", got, len(data), lim)
		}
	})
}

// FuzzIndex puts arbitrary bytes in a store as the index of an older bes
// (index.ndjson): opening the store migrates it into the catalog without
// failing (lines it cannot use are left out), renames it aside, and never
// touches a file outside the store; listing, looking up and Check then
// work, and a commit lists the new stream.
func FuzzIndex(f *testing.F) {
	st, evs, _ := obeStream(f)
	bst, bevs := bepStream(f, "build_ok.bep", "b\n\"x\\")
	var index []byte
	index = append(index, legacyIndexHeader+"\n"...)
	for _, x := range []struct {
		st  *bepfile.Stream
		evs []bepfile.Event
	}{{bst, bevs[:1]}, {st, evs[:2]}} {
		e := mustCommit(f, openStore(f), x.st, x.evs)
		b, err := json.Marshal(e)
		if err != nil {
			f.Fatal(err)
		}
		index = append(append(index, b...), '\n')
	}
	f.Add(index)
	f.Add([]byte(legacyIndexHeader + "\n"))
	f.Add([]byte(legacyIndexHeader + "\n" + `{"key":"a","file":"../../../etc/passwd","size":1}` + "\n"))
	f.Add([]byte(legacyIndexHeader + "\n" + `{"key":"b"}` + "\n" + `{"key":"a"}` + "\n"))
	f.Add([]byte(legacyIndexHeader + "\n" + `{"key":"` + strings.Repeat("k", MaxIDBytes+1) + `","build_id":"` + strings.Repeat("k", MaxIDBytes+1) + `"}` + "\n"))
	newStream := bepfile.NewStream(&buildpb.StreamId{BuildId: "new", Component: buildpb.StreamId_TOOL})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "store")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, legacyIndexName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		if _, err := os.Stat(filepath.Join(dir, legacyIndexName+migratedSuffix)); err != nil {
			t.Fatalf("the old index was not kept aside: %v", err)
		}
		var entries []*Entry
		if err := s.List(ctx, func(e *Entry) error {
			entries = append(entries, e)
			return nil
		}); err != nil {
			t.Fatalf("List: %v", err)
		}
		for _, e := range entries {
			if len(e.BuildID) > MaxIDBytes || len(e.InvocationID) > MaxIDBytes {
				t.Fatalf("entry %q over the limits imported", e.Key)
			}
			err := s.Events(ctx, e, func(*bepfile.Stream, *bepfile.Event) error { return nil })
			if err == nil {
				t.Fatalf("entry %q: events of a stream that is not there", e.Key)
			}
			if e.Key == "" {
				t.Fatal("an entry without a key was imported")
			}
			if _, err := s.Lookup(ctx, e.Key); err != nil {
				t.Fatalf("Lookup(%q): %v", e.Key, err)
			}
		}
		if _, err := s.Lookup(ctx, "x"); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Lookup: %v", err)
		}
		if _, err := s.Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}

		w, err := s.create(newStream)
		if err != nil {
			t.Fatal(err)
		}
		w.Append(&bepfile.Event{Seq: 1, Payload: []byte{}})
		_, _, err = w.Commit(ctx, "fuzz", "", false)
		var dup *store.DuplicateStreamError
		switch {
		case err == nil:
			got, err := s.Lookup(ctx, newStream.Key)
			if err != nil || len(got) != 1 || got[0].Key != newStream.Key {
				t.Fatalf("after the commit: Lookup = %v, %v", got, err)
			}
		case errors.As(err, &dup):
		default:
			t.Fatalf("Commit: %v", err)
		}
		// Nothing but the store directory was made.
		des, err := os.ReadDir(root)
		if err != nil || len(des) != 1 {
			t.Fatalf("the store's parent holds %v (%v)", des, err)
		}
	})
}

// TestStreamFileClaims: a record or header length that a short stream file
// merely claims costs no more memory than the bytes really there, whether
// the file's size is known (the claim is refused) or not (the buffer grows
// as bytes arrive), and the file is reported corrupt, cut short.
func TestStreamFileClaims(t *testing.T) {
	st, evs := synthNamed("claims", 2)
	file := streamFileBytes(t, st, evs)
	head := file[:len(file)-len(evs[1].Payload)-2-4] // up to the second record (flags, length, payload, CRC-32C)
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"record", cat(head, []byte{0}, protowire.AppendVarint(nil, 900<<20), make([]byte, 1000))},
		{"header", cat([]byte("BESS\x01"), protowire.AppendVarint(nil, 15<<20), make([]byte, 1000))},
	} {
		for _, size := range []int64{int64(len(tc.data)), -1} {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			rd, err := NewReader(bytes.NewReader(tc.data), "claims", size)
			for err == nil {
				_, err = rd.Next()
			}
			runtime.ReadMemStats(&after)
			var ce *CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%s, size %d: %v, want a *CorruptError wrapping io.ErrUnexpectedEOF", tc.name, size, err)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
				t.Errorf("%s, size %d: allocated %d bytes", tc.name, size, got)
			}
		}
	}
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
