package store

import (
	"bytes"
	"crypto/sha256"
	"slices"

	"github.com/bes-cli/bes/bepfile"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"
)

// EventDigest is the SHA-256 of an event's canonical form (see
// CanonicalEvent): two events with one digest are one event for
// Writer.Commit's rule (CompareEvents, CommitExisting).
type EventDigest = [sha256.Size]byte

// DigestEvent returns the EventDigest of event ev of stream st; buf is
// scratch space, returned for reuse.
func DigestEvent(st *bepfile.Stream, ev *bepfile.Event, buf []byte) (EventDigest, []byte) {
	c, buf := CanonicalEvent(st, ev, buf)
	return sha256.Sum256(c), buf
}

// CanonicalEvent returns the canonical form of an event of stream st (buf
// is scratch space, returned for reuse): its OrderedBuildEvent decoded
// without sequence number, its Bazel payload in canonical form
// (bepfile.CanonicalBuildEvent), fields bes does not know dropped, encoded
// deterministically. A compact event and the same event kept whole thus
// have one form, and so have two encodings of one stream id, and Bazel's
// binary file and the JSON file bes re-encodes (which order fields and map
// entries differently); two stream ids that join into one key (a.3.b with
// c, a with b.3.c) do not. Event times are kept. An event that does not
// decode is its own bytes, marked apart.
func CanonicalEvent(st *bepfile.Stream, ev *bepfile.Event, buf []byte) (canon, scratch []byte) {
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

// Overlap is how the events of a stream being committed relate to those
// of the stream stored under its key (CompareEvents).
type Overlap int

const (
	// Different: each stream has an event the other lacks.
	Different Overlap = iota
	// Same: the same events, each as many times.
	Same
	// Subset: every event of the new stream is among the stored one's,
	// which has more (a cut copy of a stored stream).
	Subset
	// Superset: every event of the stored stream is among the new one's,
	// which has more (the whole stream of a stored cut one).
	Superset
)

func (o Overlap) String() string {
	switch o {
	case Same:
		return "same"
	case Subset:
		return "subset"
	case Superset:
		return "superset"
	}
	return "different"
}

// CompareEvents compares the events of a stored stream and of a new one
// under the same key, given as the EventDigests of their events in any
// order, as multisets: order and sequence numbers are left out, since
// Bazel writes its .bep and .json files independently and the two files of
// one run may list a few events in another order (in testdata's
// test_mixed, named_set 0 and 1 and a progress event trade places). It
// sorts both slices in place.
func CompareEvents(stored, written []EventDigest) Overlap {
	cmp := func(x, y EventDigest) int { return bytes.Compare(x[:], y[:]) }
	slices.SortFunc(stored, cmp)
	slices.SortFunc(written, cmp)
	switch {
	case len(stored) == len(written):
		if slices.Equal(stored, written) {
			return Same
		}
		return Different
	case len(written) < len(stored):
		if within(written, stored) {
			return Subset
		}
	default:
		if within(stored, written) {
			return Superset
		}
	}
	return Different
}

// within reports whether the sorted multiset a is contained in the sorted
// multiset b.
func within(a, b []EventDigest) bool {
	j := 0
	for _, x := range a {
		for j < len(b) && bytes.Compare(b[j][:], x[:]) < 0 {
			j++
		}
		if j == len(b) || b[j] != x {
			return false
		}
		j++
	}
	return true
}

// CommitExisting is Writer.Commit's rule, without replace, for a stream
// (described by entry) whose key is stored (old) with other bytes, given
// how their events compare (CompareEvents; Different when the stored
// stream cannot be read whole):
//
//   - Same or Subset: Unchanged, nothing written (the .json of a stored
//     .bep; a cut copy, or a partial one, of a stored stream);
//   - Superset, with old partial (not Complete) and entry Complete:
//     Replaced (the whole .bep of a stream whose receiving was cut, or
//     whose truncated file was ingested first);
//   - anything else: a *DuplicateStreamError.
//
// Both backends (store/local, store/postgres) apply it, so that the rule
// is written once.
func CommitExisting(old, entry *Entry, o Overlap) (CommitResult, error) {
	switch {
	case o == Same, o == Subset:
		return Unchanged, nil
	case o == Superset && !old.Complete && entry.Complete:
		return Replaced, nil
	}
	return 0, &DuplicateStreamError{Key: entry.Key}
}
