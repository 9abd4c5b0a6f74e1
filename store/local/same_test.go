package local

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/store"
)

// readInput reads a file of testdata with bepfile, as bes ingest does: its
// one stream and its events.
func readInput(t testing.TB, name string) (*bepfile.Stream, []bepfile.Event) {
	t.Helper()
	r, err := bepfile.Open(filepath.Join("..", "..", "testdata", name), bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var st *bepfile.Stream
	var evs []bepfile.Event
	for {
		s, ev, err := r.Next()
		if err == io.EOF {
			return st, evs
		}
		if err != nil {
			t.Fatal(err)
		}
		if st != nil && s != st {
			t.Fatalf("%s: two streams", name)
		}
		st = s
		evs = append(evs, *ev)
	}
}

// TestCommitBinaryAndJSON: the binary and the JSON file Bazel 4.2.3 wrote
// for one invocation are one stream, whichever is committed first, with
// Commit and with CommitAll; the stored stream stays the first one.
func TestCommitBinaryAndJSON(t *testing.T) {
	for _, name := range []string{"test_mixed", "build_ok", "build_keep_going_fail", "test_cached", "query"} {
		t.Run(name, func(t *testing.T) {
			bst, bevs := readInput(t, name+".bep")
			jst, jevs := readInput(t, name+".json")
			if bst.Key != jst.Key {
				t.Fatalf("keys %q and %q", bst.Key, jst.Key)
			}
			for _, order := range [][2]string{{"bep", "json"}, {"json", "bep"}} {
				s := openStore(t)
				in := map[string]struct {
					st  *bepfile.Stream
					evs []bepfile.Event
				}{"bep": {bst, bevs}, "json": {jst, jevs}}
				first, second := in[order[0]], in[order[1]]
				e1 := mustCommit(t, s, first.st, first.evs)
				e2, res, err := commit(t, s, second.st, second.evs, false)
				if err != nil || res != Unchanged || e2.Digest != e1.Digest || e2.Source != e1.Source {
					t.Errorf("%s then %s: Commit = %+v, %v, %v; want the first entry, unchanged", order[0], order[1], e2, res, err)
				}
				out, err := s.commitAll(bg, []*StreamWriter{write(t, s, second.st, second.evs)}, "again", "ndjson", false)
				if err != nil || out[0].Err != nil || out[0].Result != Unchanged || out[0].Entry.Digest != e1.Digest {
					t.Errorf("%s then %s: CommitAll = %+v, %v; want unchanged", order[0], order[1], out, err)
				}
			}
		})
	}
	// The real files really differ: in their bytes, and test_mixed's in
	// the order of three events (named sets 0 and 1 and a progress event).
	_, bevs := readInput(t, "test_mixed.bep")
	_, jevs := readInput(t, "test_mixed.json")
	moved := 0
	for i := range bevs {
		if !bevs[i].IsBazel() {
			continue
		}
		a, _ := bepfile.CanonicalBuildEvent(bevs[i].Payload)
		b, _ := bepfile.CanonicalBuildEvent(jevs[i].Payload)
		if !bytes.Equal(a, b) {
			moved++
		}
	}
	if moved != 3 {
		t.Errorf("test_mixed: %d events in other places in the two files, want 3", moved)
	}
}

// metadataPayload encodes a build_metadata event whose map entries come in
// the order of keys (Go's deterministic encoding sorts them).
func metadataPayload(t testing.TB, keys []string, md map[string]string) []byte {
	t.Helper()
	ev := &bes.BuildEvent{Id: &bes.BuildEventId{Id: &bes.BuildEventId_BuildMetadata{BuildMetadata: &bes.BuildEventId_BuildMetadataId{}}}}
	id, err := proto.Marshal(ev.Id)
	if err != nil {
		t.Fatal(err)
	}
	var m []byte
	for _, k := range keys {
		var entry []byte
		entry = protowire.AppendTag(entry, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, k)
		entry = protowire.AppendTag(entry, 2, protowire.BytesType)
		entry = protowire.AppendString(entry, md[k])
		m = protowire.AppendTag(m, 1, protowire.BytesType)
		m = protowire.AppendBytes(m, entry)
	}
	fd := ev.ProtoReflect().Descriptor().Fields()
	var b []byte
	b = protowire.AppendTag(b, fd.ByName("id").Number(), protowire.BytesType)
	b = protowire.AppendBytes(b, id)
	b = protowire.AppendTag(b, fd.ByName("build_metadata").Number(), protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// progressPayload encodes a progress event.
func progressPayload(t testing.TB, n int32, stderr string) []byte {
	t.Helper()
	b, err := proto.Marshal(&bes.BuildEvent{
		Id:      &bes.BuildEventId{Id: &bes.BuildEventId_Progress{Progress: &bes.BuildEventId_ProgressId{OpaqueCount: n}}},
		Payload: &bes.BuildEvent_Progress{Progress: &bes.Progress{Stderr: stderr}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCommitSameEvents: a stream under a stored key is unchanged when it
// holds the same events as protobuf messages, in any order and any form,
// or a part of them (one event fewer: store.CommitExisting); any other
// difference (an event's content, one event twice, an event time) is a
// duplicate; --replace stores the new bytes.
func TestCommitSameEvents(t *testing.T) {
	md := map[string]string{"ALPHA": "1", "BETA": "2", "GAMMA": "3"}
	goOrder := metadataPayload(t, []string{"ALPHA", "BETA", "GAMMA"}, md)
	javaOrder := metadataPayload(t, []string{"GAMMA", "ALPHA", "BETA"}, md)
	if bytes.Equal(goOrder, javaOrder) {
		t.Fatal("one encoding")
	}
	p1, p2 := progressPayload(t, 1, "Loading\n"), progressPayload(t, 2, "Analyzing\n")
	inv := "5e7a1d2c-0000-4000-8000-00000000a11e"
	st := bepfile.NewStream(&buildpb.StreamId{BuildId: inv, InvocationId: inv, Component: buildpb.StreamId_TOOL})
	evs := func(payloads ...[]byte) []bepfile.Event {
		out := make([]bepfile.Event, len(payloads))
		for i, p := range payloads {
			out[i] = bepfile.Event{Seq: int64(i + 1), Payload: p}
		}
		return out
	}
	stored := evs(javaOrder, p1, p2)
	whole := evs(goOrder, p1, p2)
	for i := range whole { // the same events, kept whole (Raw)
		whole[i] = bepfile.Event{Seq: whole[i].Seq, Raw: whole[i].AppendEncoding(nil, st)}
	}
	timed := evs(javaOrder, p1, p2)
	timed[1].HasTime, timed[1].Time = true, bepfile.Timestamp{Seconds: 1795464889, Nanos: 5}
	for _, tc := range []struct {
		name string
		evs  []bepfile.Event
		same bool
	}{
		{"map entries in Go's order", evs(goOrder, p1, p2), true},
		{"two events swapped", evs(goOrder, p2, p1), true},
		{"kept whole (Raw), not compact", whole, true},
		{"another progress text", evs(goOrder, p1, progressPayload(t, 2, "Analyzing.\n")), false},
		{"another metadata value", evs(metadataPayload(t, []string{"ALPHA", "BETA", "GAMMA"}, map[string]string{"ALPHA": "1", "BETA": "2", "GAMMA": "4"}), p1, p2), false},
		{"one event fewer (a cut copy, within the stored events)", evs(goOrder, p1), true},
		{"one event twice, another missing", evs(goOrder, p1, p1), false},
		{"an event time", timed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			first := mustCommit(t, s, st, stored)
			e, res, err := commit(t, s, st, tc.evs, false)
			var dup *store.DuplicateStreamError
			switch {
			case tc.same && (err != nil || res != Unchanged || e.Digest != first.Digest):
				t.Errorf("Commit = %v, %v; want unchanged", res, err)
			case !tc.same && !errors.As(err, &dup):
				t.Errorf("Commit = %v, %v; want a duplicate", res, err)
			}
			// With replace, other bytes replace the stream.
			e, res, err = commit(t, s, st, tc.evs, true)
			if err != nil || res != Replaced || e.Digest == first.Digest {
				t.Errorf("Commit with replace = %v, %v; want replaced", res, err)
			}
			_, got := readBack(t, s, e)
			if !slices.EqualFunc(got, tc.evs, func(a, b bepfile.Event) bool {
				return a.Seq == b.Seq && bytes.Equal(a.Payload, b.Payload) && bytes.Equal(a.Raw, b.Raw) && a.HasTime == b.HasTime && a.Time == b.Time
			}) {
				t.Errorf("replaced stream holds other events")
			}
		})
	}
}

// TestCommitJoinedIDs: two stream ids that join into one key (a.3.b with
// c, a with b.3.c) are one stream for the store, as for BuildGrid, but the
// same events under the other id are other content: a duplicate.
func TestCommitJoinedIDs(t *testing.T) {
	a := bepfile.NewStream(&buildpb.StreamId{BuildId: "a.3.b", InvocationId: "c", Component: buildpb.StreamId_TOOL})
	b := bepfile.NewStream(&buildpb.StreamId{BuildId: "a", InvocationId: "b.3.c", Component: buildpb.StreamId_TOOL})
	if a.Key != b.Key {
		t.Fatal("the ids do not join")
	}
	evs := []bepfile.Event{{Seq: 1, Payload: progressPayload(t, 1, "Loading\n")}}
	s := openStore(t)
	mustCommit(t, s, a, evs)
	var dup *store.DuplicateStreamError
	if _, res, err := commit(t, s, b, evs, false); !errors.As(err, &dup) {
		t.Errorf("Commit under the other id = %v, %v; want a duplicate", res, err)
	}
	if _, res, err := commit(t, s, a, evs, false); err != nil || res != Unchanged {
		t.Errorf("Commit under the same id = %v, %v; want unchanged", res, err)
	}
}
