package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"slices"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store/bess"
)

// sameEvents reports whether the stream stored under key and the one w
// wrote hold the same events although their bytes differ, by store/local's
// rule (store/local/same.go): the same events, each as many times, in any
// order, compared as protobuf messages without sequence numbers, so that
// the .bep and the .json Bazel wrote for one invocation are one stream
// (Unchanged) rather than a duplicate. A stream that cannot be read whole
// is not the same.
func (s *Store) sameEvents(ctx context.Context, key string, w *Writer) bool {
	var stored [][sha256.Size]byte
	var buf []byte
	err := s.read(ctx, key, func(st *bepfile.Stream, ev *bepfile.Event) error {
		var c []byte
		c, buf = canonicalEvent(st, ev, buf)
		stored = append(stored, sha256.Sum256(c))
		return nil
	})
	if err != nil {
		return false
	}
	r, done, err := w.body()
	if err != nil {
		return false
	}
	defer done()
	rd, err := bess.NewReader(r, "new stream", w.size)
	if err != nil {
		return false
	}
	var written [][sha256.Size]byte
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return false
		}
		var c []byte
		c, buf = canonicalEvent(rd.Stream(), ev, buf)
		written = append(written, sha256.Sum256(c))
	}
	if len(stored) != len(written) {
		return false
	}
	cmp := func(x, y [sha256.Size]byte) int { return bytes.Compare(x[:], y[:]) }
	slices.SortFunc(stored, cmp)
	slices.SortFunc(written, cmp)
	return slices.Equal(stored, written)
}

// canonicalEvent is store/local's canonical form of an event of stream st
// (buf is scratch space, returned for reuse): its OrderedBuildEvent
// decoded without sequence number, its Bazel payload in canonical form
// (bepfile.CanonicalBuildEvent), fields bes does not know dropped, encoded
// deterministically; an event that does not decode is its own bytes,
// marked apart.
func canonicalEvent(st *bepfile.Stream, ev *bepfile.Event, buf []byte) (canon, scratch []byte) {
	buf = ev.AppendEncoding(buf[:0], st)
	obe := &buildpb.OrderedBuildEvent{}
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(buf, obe); err != nil {
		return append([]byte("raw:"), buf...), buf
	}
	obe.SequenceNumber = 0
	if a := obe.GetEvent().GetBazelEvent(); a != nil && a.GetTypeUrl() == bepfile.BazelEventTypeURL {
		a.Value, _ = bepfile.CanonicalBuildEvent(a.Value)
	}
	c, err := (proto.MarshalOptions{Deterministic: true}).Marshal(obe)
	if err != nil {
		return append([]byte("raw:"), buf...), buf
	}
	return append([]byte("obe:"), c...), buf
}
