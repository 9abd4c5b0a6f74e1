package postgres

import (
	"context"
	"io"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
)

// overlap compares the events of the stream stored under key and of the
// one w wrote by store.CompareEvents (the rule store/local applies too):
// as multisets of canonical events (store.CanonicalEvent), in any order,
// without sequence numbers, so that the .bep and the .json Bazel wrote for
// one invocation are one stream, and a cut copy of a stream is within it.
// A stream that cannot be read whole is Different.
func (s *Store) overlap(ctx context.Context, key string, w *Writer) store.Overlap {
	var stored []store.EventDigest
	var buf []byte
	err := s.read(ctx, key, func(st *bepfile.Stream, ev *bepfile.Event) error {
		var d store.EventDigest
		d, buf = store.DigestEvent(st, ev, buf)
		stored = append(stored, d)
		return nil
	})
	if err != nil {
		return store.Different
	}
	r, done, err := w.body()
	if err != nil {
		return store.Different
	}
	defer done()
	rd, err := bess.NewReader(r, "new stream", w.size)
	if err != nil {
		return store.Different
	}
	var written []store.EventDigest
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return store.Different
		}
		var d store.EventDigest
		d, buf = store.DigestEvent(rd.Stream(), ev, buf)
		written = append(written, d)
	}
	return store.CompareEvents(stored, written)
}
