package postgres

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// TestCloseCompacts: a stream appended in many syncs, one chunk each, is
// one chunk after Close, with the same bytes and entry; a reader that had
// listed the old chunks still reads them whole (their blobs wait in the
// garbage), and they are deleted once the grace period is over.
func TestCloseCompacts(t *testing.T) {
	ctx := context.Background()
	catalog, blobs := newCatalog(t), newS3Blobs(t)
	s, err := Open(ctx, catalog, blobs, WithGrace(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, evs := readInput(t, "test_mixed.bep", "compact")
	a, _, err := s.OpenAppend(ctx, st, store.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		a.Append(&evs[i])
		if i%10 == 9 {
			if err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before, _, err := s.body(ctx, st.Key)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 12 { // the header, 10 syncs of 10, one of 6
		t.Fatalf("%d chunks before Close, want 12", len(before))
	}
	live := entryOfKey(t, s, st.Key)
	final, err := a.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	after, _, err := s.body(ctx, st.Key)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[0].size != final.Size || after[0].events != int64(len(evs)) {
		t.Fatalf("after Close: %+v, want one chunk of %d bytes, %d events", after, final.Size, len(evs))
	}
	if final.Digest != live.Digest || final.Size != live.Size {
		t.Errorf("entry before Close %+v, after %+v", live, final)
	}
	read := func(chunks []chunk) []byte {
		t.Helper()
		var out []byte
		cr := &chunkReader{ctx: ctx, b: s.blobs, chunks: chunks}
		defer cr.Close()
		err := s.decode(ctx, cr, "body", final.Size, st.Key, func(st *bepfile.Stream, ev *bepfile.Event) error {
			out = ev.AppendEncoding(out, st)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var want []byte
	for i := range evs {
		want = evs[i].AppendEncoding(want, st)
	}
	if got := read(after); !bytes.Equal(got, want) {
		t.Errorf("the compacted stream reads %d bytes, want %d", len(got), len(want))
	}
	if got := read(before); !bytes.Equal(got, want) {
		t.Errorf("the old chunks, read after Close, give %d bytes, want %d", len(got), len(want))
	}
	// Past the grace period, the next sweep deletes the old chunks.
	time.Sleep(1100 * time.Millisecond)
	s.sweep(ctx)
	if r, err := s.blobs.open(ctx, before[3].blob); err == nil {
		r.Close()
		t.Errorf("old chunk %s still there after the sweep", before[3].blob)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM garbage`).Scan(&n); err != nil || n != 0 {
		t.Errorf("garbage rows after the sweep: %d, %v", n, err)
	}
	if r, err := s.blobs.open(ctx, after[0].blob); err != nil {
		t.Errorf("the compacted chunk: %v", err)
	} else {
		r.Close()
	}
}
