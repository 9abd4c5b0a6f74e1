package local

import (
	"errors"
	"io"
	"os"

	"github.com/bes-cli/bes/store"
)

// compareStreams compares the events of the stream files at stored and
// written by store.CompareEvents: as protobuf messages in canonical form
// (store.CanonicalEvent), not as bytes, in any order and without sequence
// numbers, so that the binary file and the JSON file Bazel wrote for one
// invocation are one stream, and a cut copy of a stream is within it.
//
// An error (a file that cannot be read whole) is returned as such: the
// caller takes the streams for different.
func compareStreams(stored, written string) (store.Overlap, error) {
	da, err := eventDigests(stored)
	if err != nil {
		return store.Different, err
	}
	db, err := eventDigests(written)
	if err != nil {
		return store.Different, err
	}
	return store.CompareEvents(da, db), nil
}

// eventDigests returns the store.EventDigest of every event of the stream
// file at path, in file order.
func eventDigests(path string) ([]store.EventDigest, error) {
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
	var out []store.EventDigest
	var buf []byte
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var d store.EventDigest
		d, buf = store.DigestEvent(rd.Stream(), ev, buf)
		out = append(out, d)
	}
}

// overlapWith is Commit's test for an entry stored under the key of a new
// stream file with another digest: how the events of the stored file
// (final) and of the new one (tmp) compare (compareStreams). A file that
// cannot be read whole is Different.
func overlapWith(final, tmp string) store.Overlap {
	o, err := compareStreams(final, tmp)
	if err != nil {
		return store.Different
	}
	return o
}
