package local

import (
	"fmt"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// The limits of a stream's identity in a store. Bazel's ids are UUIDs (36
// bytes) and its type URL is 52 bytes; the limits leave room for any real
// client and refuse what would make the catalog or a stream file unwieldy
// (issue 13: a 40 MiB build_id once made bes's index unreadable, and a
// 20 MiB id a stream file bes could not read back). They are checked
// before anything is stored (Create, OpenAppend), so a stream over them is
// never acknowledged.
const (
	// MaxIDBytes bounds StreamId.build_id and StreamId.invocation_id, each,
	// in bytes. A key (build_id.component.invocation_id) is thus at most
	// 2*MaxIDBytes + 12 bytes.
	MaxIDBytes = 4 << 10
	// MaxStreamIDBytes bounds the StreamId's wire encoding as received
	// (bepfile.Stream.IDBytes, stored exactly), unknown fields included.
	MaxStreamIDBytes = 16 << 10
	// MaxTypeURLBytes bounds the type URL of the stream's Bazel events.
	MaxTypeURLBytes = 4 << 10
)

// ErrLimit is wrapped by the error for a stream whose identity exceeds the
// store's limits (MaxIDBytes, MaxStreamIDBytes, MaxTypeURLBytes): it is
// store.ErrLimit, which every backend wraps for its own limits. Test for it
// with errors.Is.
var ErrLimit = store.ErrLimit

// CheckStreamID returns an error wrapping ErrLimit if st's ids, StreamId
// encoding or type URL exceed the store's limits; nil otherwise. The error
// names the field, its size and the limit, and the key only shortened.
func CheckStreamID(st *bepfile.Stream) error {
	if err := checkIDs(st.Key, st.ID.GetBuildId(), st.ID.GetInvocationId()); err != nil {
		return err
	}
	if n := len(st.IDBytes); n > MaxStreamIDBytes {
		return fmt.Errorf("store: stream %s: stream id of %d bytes %w (%d bytes)", ShortKey(st.Key), n, ErrLimit, MaxStreamIDBytes)
	}
	if n := len(st.TypeURL); n > MaxTypeURLBytes {
		return fmt.Errorf("store: stream %s: type URL of %d bytes %w (%d bytes)", ShortKey(st.Key), n, ErrLimit, MaxTypeURLBytes)
	}
	return nil
}

// checkIDs checks a stream's build and invocation ids against MaxIDBytes.
func checkIDs(key, buildID, invocationID string) error {
	if n := len(buildID); n > MaxIDBytes {
		return fmt.Errorf("store: stream %s: build_id of %d bytes %w (%d bytes per id)", ShortKey(key), n, ErrLimit, MaxIDBytes)
	}
	if n := len(invocationID); n > MaxIDBytes {
		return fmt.Errorf("store: stream %s: invocation_id of %d bytes %w (%d bytes per id)", ShortKey(key), n, ErrLimit, MaxIDBytes)
	}
	return nil
}

// ShortKey returns key quoted, shortened to its first 160 bytes and its
// length when it is longer, for messages (a Bazel key, two UUIDs and a
// component, is 75 bytes).
func ShortKey(key string) string {
	const max = 160
	if len(key) <= max {
		return fmt.Sprintf("%q", key)
	}
	return fmt.Sprintf("%q… (%d bytes)", key[:max], len(key))
}
