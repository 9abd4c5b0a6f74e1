package local

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"slices"

	"github.com/bes-cli/bes/bepfile"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"
)

// sameStream reports whether the stream files at paths a and b hold the
// same stream although their bytes differ: what makes the binary file and
// the JSON file Bazel wrote for one invocation (or two captures of one
// stream) one stream, so that ingesting the second is Unchanged rather than
// a duplicate.
//
// Two streams are the same when they hold the same events, each as many
// times, in any order: events are compared as protobuf messages (see
// canonicalEvent), not as bytes, since Bazel's binary file and the JSON
// file bes re-encodes order fields and map entries differently. Order is
// left out because Bazel writes its two files independently, and the two
// files of one run may list a few events in another order (in testdata's
// test_mixed, named_set 0 and 1 and a progress event trade places; in
// build_ok, a progress event and a target_completed). Sequence numbers,
// which follow the order, are left out with it; the stream id is compared
// decoded (not its encoding), event times are kept.
//
// An error (a file that cannot be read whole) is returned as such: the
// caller takes the streams for different.
func sameStream(a, b string) (bool, error) {
	da, err := eventDigests(a)
	if err != nil {
		return false, err
	}
	db, err := eventDigests(b)
	if err != nil {
		return false, err
	}
	if len(da) != len(db) {
		return false, nil
	}
	slices.SortFunc(da, func(x, y [sha256.Size]byte) int { return bytes.Compare(x[:], y[:]) })
	slices.SortFunc(db, func(x, y [sha256.Size]byte) int { return bytes.Compare(x[:], y[:]) })
	return slices.Equal(da, db), nil
}

// eventDigests returns the SHA-256 of the canonical form of every event of
// the stream file at path, in file order.
func eventDigests(path string) ([][sha256.Size]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow|nonBlock, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	rd, err := NewReader(f, path, fi.Size())
	if err != nil {
		return nil, err
	}
	var out [][sha256.Size]byte
	var buf []byte
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var c []byte
		c, buf = canonicalEvent(rd.Stream(), ev, buf)
		out = append(out, sha256.Sum256(c))
	}
}

// canonicalEvent returns the canonical form of an event of stream st (buf
// is scratch space, returned for reuse): its OrderedBuildEvent decoded
// without sequence number, its Bazel payload in canonical form
// (bepfile.CanonicalBuildEvent), fields bes does not know dropped, encoded
// deterministically. A compact event and the same event kept whole thus
// have one form, and so have two encodings of one stream id; two stream
// ids that join into one key (a.3.b with c, a with b.3.c) do not. An event
// that does not decode is its own bytes, marked apart.
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

// sameStreamAs is Commit's test for an entry stored under the key of a new
// stream file with another digest: whether the stored file (final) and the
// new one (tmp) hold the same stream (sameStream). A stored file that
// cannot be read is not the same.
func sameStreamAs(final, tmp string) bool {
	same, err := sameStream(final, tmp)
	return err == nil && same
}
