package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp/syntax"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bes-cli/bes/bepfile"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func toolID(build, inv string) *buildpb.StreamId {
	return &buildpb.StreamId{BuildId: build, InvocationId: inv, Component: buildpb.StreamId_TOOL}
}

// bazelOBE returns a Bazel event of stream id with the given payload.
func bazelOBE(id *buildpb.StreamId, seq int64, payload []byte) *buildpb.OrderedBuildEvent {
	return &buildpb.OrderedBuildEvent{
		StreamId:       id,
		SequenceNumber: seq,
		Event: &buildpb.BuildEvent{
			EventTime: &timestamppb.Timestamp{Seconds: 1700000000 + seq, Nanos: int32(seq * 1000)},
			Event: &buildpb.BuildEvent_BazelEvent{BazelEvent: &anypb.Any{
				TypeUrl: bepfile.BazelEventTypeURL,
				Value:   payload,
			}},
		},
	}
}

func keys(sts []*Stream) []string {
	var out []string
	for _, st := range sts {
		out = append(out, st.Key())
	}
	return out
}

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		id   *buildpb.StreamId
		want string
	}{
		{toolID("B", "I"), "B.3.I"},
		{&buildpb.StreamId{BuildId: "B", Component: buildpb.StreamId_CONTROLLER}, "B.1."},
		{&buildpb.StreamId{}, ".0."},
		{nil, ".0."},
	} {
		if got := Key(tc.id); got != tc.want {
			t.Errorf("Key(%v) = %q, want %q", tc.id, got, tc.want)
		}
	}
}

func TestStreamInfoMatchesBepfile(t *testing.T) {
	for _, id := range []*buildpb.StreamId{
		{},
		toolID("B", "I"),
		{BuildId: "B", Component: buildpb.StreamId_CONTROLLER},
		{InvocationId: "only-inv"},
		{BuildId: "a/../b\x00\n", InvocationId: "日本", Component: buildpb.StreamId_WORKER},
		{Component: buildpb.StreamId_BuildComponent(-5)},
	} {
		got, want := streamInfo(id), bepfile.NewStream(id)
		if !bytes.Equal(got.IDBytes, want.IDBytes) || got.Key != want.Key || got.TypeURL != want.TypeURL {
			t.Errorf("streamInfo(%v) = %x %q, bepfile.NewStream = %x %q", id, got.IDBytes, got.Key, want.IDBytes, want.Key)
		}
	}
	// Invalid UTF-8 cannot be marshalled by proto, but must not panic here.
	info := streamInfo(&buildpb.StreamId{BuildId: "\xff"})
	if info.Key != "\xff.0." {
		t.Errorf("key = %q", info.Key)
	}
}

func TestNewStreamDuplicate(t *testing.T) {
	s := New()
	id := toolID("B", "I")
	st, err := s.NewStream(id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Key() != "B.3.I" || !proto.Equal(st.ID(), id) {
		t.Errorf("stream = %q %v", st.Key(), st.ID())
	}
	_, err = s.NewStream(toolID("B", "I"))
	var dup *DuplicateStreamError
	if !errors.As(err, &dup) || dup.Key != "B.3.I" {
		t.Fatalf("second NewStream: %v, want DuplicateStreamError for B.3.I", err)
	}
	if got := err.Error(); got != "stream with key B.3.I already exists" {
		t.Errorf("Error() = %q", got)
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d", s.Len())
	}
	// The stored id is a copy.
	id.BuildId = "changed"
	if st.ID().GetBuildId() != "B" {
		t.Error("stream id aliases the caller's message")
	}
}

func TestGetStreamCreates(t *testing.T) {
	s := New()
	a := s.GetStream(toolID("B", "I"))
	if a == nil || s.Len() != 1 {
		t.Fatalf("GetStream = %v, Len = %d", a, s.Len())
	}
	if b := s.GetStream(toolID("B", "I")); b != a {
		t.Error("second GetStream returned another stream")
	}
	if _, err := s.NewStream(toolID("B", "I")); err == nil {
		t.Error("NewStream after GetStream: no error")
	}
	if st, err := s.Lookup("B.3.I"); err != nil || st != a {
		t.Errorf("Lookup = %v, %v", st, err)
	}
	if _, err := s.Lookup("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup(nope) = %v, want ErrNotFound", err)
	}
}

func TestMatchingStreams(t *testing.T) {
	s := New()
	for _, id := range []*buildpb.StreamId{
		toolID("b1", "inv-x"),
		toolID("b2", "inv-y"),
		{BuildId: "b1", Component: buildpb.StreamId_CONTROLLER},
		{BuildId: "b1", InvocationId: "inv-x", Component: buildpb.StreamId_CONTROLLER},
		toolID("zzz-b", "other"),
	} {
		s.GetStream(id)
	}
	for _, tc := range []struct {
		pattern string
		want    []string
	}{
		{`\.3\.`, []string{"b1.3.inv-x", "b2.3.inv-y", "zzz-b.3.other"}},
		{`^b`, []string{"b1.1.", "b1.1.inv-x", "b1.3.inv-x", "b2.3.inv-y"}},
		{`b`, []string{"b1.1.", "b1.1.inv-x", "b1.3.inv-x", "b2.3.inv-y", "zzz-b.3.other"}},
		{`nv-`, []string{"b1.1.inv-x", "b1.3.inv-x", "b2.3.inv-y"}}, // a substring in the middle
		{`\.1\.$`, []string{"b1.1."}},
		{`(?i)INV-Y`, []string{"b2.3.inv-y"}},
		{``, []string{"b1.1.", "b1.1.inv-x", "b1.3.inv-x", "b2.3.inv-y", "zzz-b.3.other"}},
		{`^nomatch$`, nil},
	} {
		got, err := s.MatchingStreams(tc.pattern)
		if err != nil {
			t.Errorf("MatchingStreams(%q): %v", tc.pattern, err)
			continue
		}
		if !slices.Equal(keys(got), tc.want) {
			t.Errorf("MatchingStreams(%q) = %q, want %q", tc.pattern, keys(got), tc.want)
		}
	}
	if got := keys(s.Streams()); !slices.IsSorted(got) || len(got) != 5 {
		t.Errorf("Streams() = %q", got)
	}
}

func TestMatchingStreamsInvalid(t *testing.T) {
	s := New()
	s.GetStream(toolID("B", "I"))
	for _, p := range []string{`(`, `[a-`, `a**`, `(?=x)`, `(a)\1`} {
		_, err := s.MatchingStreams(p)
		var se *syntax.Error
		if !errors.As(err, &se) {
			t.Errorf("MatchingStreams(%q) = %v, want a *syntax.Error", p, err)
		}
	}
}

func TestPublishAndQuery(t *testing.T) {
	ctx := context.Background()
	s := New()
	id := toolID("B", "I")
	st := s.GetStream(id)
	var want [][]byte
	for i := int64(1); i <= 5; i++ {
		obe := bazelOBE(id, i, []byte(fmt.Sprintf("payload %d", i)))
		if err := st.Publish(obe); err != nil {
			t.Fatal(err)
		}
		b, _ := proto.Marshal(obe)
		want = append(want, b)
	}
	// A lifecycle-like event that is not a Bazel event stays raw.
	other := &buildpb.OrderedBuildEvent{StreamId: id, SequenceNumber: 6, Event: &buildpb.BuildEvent{
		Event: &buildpb.BuildEvent_ComponentStreamFinished{ComponentStreamFinished: &buildpb.BuildEvent_BuildComponentStreamFinished{
			Type: buildpb.BuildEvent_BuildComponentStreamFinished_FINISHED,
		}},
	}}
	if err := st.Publish(other); err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(other)
	want = append(want, b)

	if st.Len() != 6 {
		t.Fatalf("Len = %d", st.Len())
	}
	var got [][]byte
	for ev, err := range st.Query(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		if (ev.Raw == nil) != (ev.Seq <= 5) {
			t.Errorf("event %d: compact = %v", ev.Seq, ev.Raw == nil)
		}
		got = append(got, ev.AppendEncoding(nil, st.Info()))
	}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("Query(nil) returned other events")
	}

	// A filter, and stopping early.
	even := FilterFunc(func(_ *Stream, ev *bepfile.Event) (bool, error) { return ev.Seq%2 == 0, nil })
	var seqs []int64
	for ev, err := range st.Query(ctx, even) {
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ev.Seq)
		if len(seqs) == 2 {
			break
		}
	}
	if !slices.Equal(seqs, []int64{2, 4}) {
		t.Errorf("filtered seqs = %v", seqs)
	}

	// A failing filter ends the query with its error.
	boom := errors.New("boom")
	n, errs := 0, 0
	for _, err := range st.Query(ctx, FilterFunc(func(_ *Stream, ev *bepfile.Event) (bool, error) {
		if ev.Seq == 3 {
			return false, boom
		}
		return true, nil
	})) {
		if err != nil {
			errs++
			if !errors.Is(err, boom) {
				t.Errorf("err = %v", err)
			}
			continue
		}
		n++
	}
	if n != 2 || errs != 1 {
		t.Errorf("failing filter: %d events, %d errors", n, errs)
	}

	// Publishing another stream's event is refused.
	err := st.Publish(bazelOBE(toolID("B", "other"), 7, nil))
	if !errors.Is(err, ErrWrongStream) {
		t.Errorf("Publish(other stream) = %v", err)
	}
	if err := st.Publish(nil); err == nil {
		t.Error("Publish(nil): no error")
	}
	if st.Len() != 6 {
		t.Errorf("Len after refused publishes = %d", st.Len())
	}
}

func TestQueryCancel(t *testing.T) {
	st := New().GetStream(toolID("B", "I"))
	for i := int64(1); i <= 10; i++ {
		st.Append(bepfile.Event{Seq: i, Payload: []byte{byte(i)}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	var gotErr error
	for ev, err := range st.Query(ctx, nil) {
		if err != nil {
			gotErr = err
			continue
		}
		n++
		if ev.Seq == 3 {
			cancel()
		}
	}
	if n != 3 || !errors.Is(gotErr, context.Canceled) {
		t.Errorf("after cancel: %d events, err %v", n, gotErr)
	}
}

// TestQuerySnapshot checks that events appended during a query are not
// seen by it, and that the loop body may publish to the stream.
func TestQuerySnapshot(t *testing.T) {
	id := toolID("B", "I")
	st := New().GetStream(id)
	for i := int64(1); i <= 3; i++ {
		st.Publish(bazelOBE(id, i, nil))
	}
	n := 0
	for _, err := range st.Query(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		st.Publish(bazelOBE(id, int64(100+n), nil))
	}
	if n != 3 || st.Len() != 6 {
		t.Errorf("saw %d events, Len = %d", n, st.Len())
	}
}

func TestConcurrent(t *testing.T) {
	const (
		workers = 8
		shared  = 20 // streams every worker publishes to
		rounds  = 5
	)
	ctx := context.Background()
	s := New()
	var created, dups atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				for j := range shared {
					id := toolID(fmt.Sprintf("b%02d", j), "inv")
					seq := int64(w*rounds + r + 1)
					if err := s.GetStream(id).Publish(bazelOBE(id, seq, []byte{byte(w), byte(r)})); err != nil {
						t.Error(err)
						return
					}
					// Everyone tries to create the same "new" streams.
					_, err := s.NewStream(&buildpb.StreamId{BuildId: fmt.Sprintf("n%02d", j), Component: buildpb.StreamId_CONTROLLER})
					var dup *DuplicateStreamError
					switch {
					case err == nil:
						created.Add(1)
					case errors.As(err, &dup):
						dups.Add(1)
					default:
						t.Error(err)
					}
				}
				// Read while others write.
				sts, err := s.MatchingStreams(`^b\d+\.3\.inv$`)
				if err != nil {
					t.Error(err)
					return
				}
				for _, st := range sts {
					for ev, err := range st.Query(ctx, nil) {
						if err != nil {
							t.Error(err)
							return
						}
						if ev.Seq <= 0 || len(ev.Payload) != 2 {
							t.Errorf("bad event %+v", ev)
						}
					}
					if _, err := st.ToProto(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if created.Load() != shared || dups.Load() != workers*rounds*shared-shared {
		t.Errorf("created %d, duplicates %d", created.Load(), dups.Load())
	}
	if s.Len() != 2*shared {
		t.Errorf("Len = %d, want %d", s.Len(), 2*shared)
	}
	sts, _ := s.MatchingStreams(`\.3\.`)
	if len(sts) != shared {
		t.Fatalf("%d tool streams", len(sts))
	}
	for _, st := range sts {
		if st.Len() != workers*rounds {
			t.Errorf("%s: %d events, want %d", st.Key(), st.Len(), workers*rounds)
		}
		var seqs []int64
		for ev, err := range st.Query(ctx, nil) {
			if err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, ev.Seq)
		}
		slices.Sort(seqs)
		for i, seq := range seqs {
			if seq != int64(i+1) {
				t.Errorf("%s: seqs %v", st.Key(), seqs)
				break
			}
		}
	}
}

// TestCorpusRoundTrip publishes a real Bazel BES tool stream and checks that
// Query and ToProto give back exactly the recorded bytes.
func TestCorpusRoundTrip(t *testing.T) {
	obes, frames := readOBEs(t, "bes_test_mixed.obe")
	s := New()
	for _, obe := range obes {
		if err := s.GetStream(obe.GetStreamId()).Publish(obe); err != nil {
			t.Fatal(err)
		}
	}
	sts := s.Streams()
	if len(sts) != 1 {
		t.Fatalf("%d streams", len(sts))
	}
	st := sts[0]
	if st.Len() != len(frames) {
		t.Fatalf("Len = %d, want %d", st.Len(), len(frames))
	}
	i, compact := 0, 0
	for ev, err := range st.Query(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.IsBazel() {
			compact++
		}
		if got := ev.AppendEncoding(nil, st.Info()); !bytes.Equal(got, frames[i]) {
			t.Errorf("event %d differs from the recording", i)
		}
		i++
	}
	// Every Bazel event is compact; component_stream_finished is not.
	if compact != len(frames)-1 {
		t.Errorf("%d of %d events compact", compact, len(frames))
	}
	msg, err := st.ToProto()
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(msg.GetStreamId(), obes[0].GetStreamId()) {
		t.Errorf("stream id = %v", msg.GetStreamId())
	}
	if len(msg.GetEvents()) != len(frames) {
		t.Fatalf("ToProto: %d events", len(msg.GetEvents()))
	}
	for i, obe := range msg.GetEvents() {
		b, err := proto.Marshal(obe)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, frames[i]) {
			t.Errorf("ToProto event %d does not marshal to the recorded bytes", i)
		}
	}
	// The whole message survives the wire too.
	b, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < len(bytes.Join(frames, nil)) {
		t.Errorf("marshalled message is only %d bytes", len(b))
	}
}

func TestAdd(t *testing.T) {
	s := New()
	info := bepfile.NewStream(toolID("B", "I"))
	st := NewStreamFromInfo(info)
	st.Append(bepfile.Event{Seq: 1, Payload: []byte("x")})
	if err := s.Add(st); err != nil {
		t.Fatal(err)
	}
	var dup *DuplicateStreamError
	if err := s.Add(NewStreamFromInfo(info)); !errors.As(err, &dup) || dup.Key != "B.3.I" {
		t.Errorf("second Add = %v", err)
	}
	if got := s.GetStream(toolID("B", "I")); got != st || got.Info() != info || got.Len() != 1 {
		t.Error("GetStream does not return the added stream")
	}
}
