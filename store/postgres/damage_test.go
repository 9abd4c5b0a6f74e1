package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
)

// TestDamagedBody: a body that is not what the catalog lists is an error
// naming it, never a shorter or other stream read as whole: a chunk's
// event count that disagrees, a chunk of another size, a blob gone.
func TestDamagedBody(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, newCatalog(t), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, evs := readInput(t, "test_mixed.bep", "damage")
	a := appendInChunks(t, s, st, evs)
	e := entryOfKey(t, s, st.Key)
	read := func() (int, error) {
		n := 0
		err := s.Events(ctx, e, func(*bepfile.Stream, *bepfile.Event) error { n++; return nil })
		return n, err
	}
	if n, err := read(); err != nil || n != len(evs) {
		t.Fatalf("intact: %d events, %v", n, err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := s.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	kid := kidOf(st.Key)

	exec(`UPDATE chunks SET events = events + 1 WHERE kid = $1 AND n = 2`, kid)
	var ce *bess.CorruptError
	if n, err := read(); !errors.As(err, &ce) || !strings.Contains(err.Error(), "events") {
		t.Errorf("a chunk counting one event more: %d events, %v; want a *bess.CorruptError", n, err)
	}
	exec(`UPDATE chunks SET events = events - 1 WHERE kid = $1 AND n = 2`, kid)

	exec(`UPDATE chunks SET size = size - 1 WHERE kid = $1 AND n = 1`, kid)
	if n, err := read(); err == nil || !strings.Contains(err.Error(), "the catalog says") {
		t.Errorf("a chunk of another size: %d events, %v", n, err)
	}
	exec(`UPDATE chunks SET size = size + 1 WHERE kid = $1 AND n = 1`, kid)

	chunks, _, err := s.body(ctx, st.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.blobs.remove(ctx, chunks[2].blob); err != nil {
		t.Fatal(err)
	}
	n, err := read()
	if !errors.Is(err, errBlobMissing) || errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), chunks[2].blob) {
		t.Errorf("a blob gone: %d events, %v; want an error naming it, not a stream not found", n, err)
	}
	if n != 40 {
		t.Errorf("a blob gone: %d events read before the error, want the 40 of the chunks before it", n)
	}
	// A stream deleted meanwhile is not found.
	a.Close(ctx)
	if err := s.Delete(ctx, st.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := read(); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted: %v, want ErrNotFound", err)
	}
}

// appendInChunks opens st for appending on s and stores evs live, in
// chunks of 40 events (one Sync each), as bes serve does; the Appender is
// returned open.
func appendInChunks(t *testing.T, s *Store, st *bepfile.Stream, evs []bepfile.Event) store.Appender {
	t.Helper()
	ctx := context.Background()
	a, _, err := s.OpenAppend(ctx, st, store.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		a.Append(&evs[i])
		if i%40 == 39 {
			if err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return a
}
