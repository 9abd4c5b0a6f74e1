package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bespb"
	"github.com/bes-cli/bes/store/buildgridpb"
	"github.com/bes-cli/bes/store/local"
)

// readOBEs reads a file of varint-delimited messages from testdata.
func readOBEs[T proto.Message](t testing.TB, name string, mk func() T) []T {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var out []T
	for {
		m := mk()
		if err := protodelim.UnmarshalFrom(br, m); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

// toolEvents is the tool stream Bazel sent in bes_test_mixed: 106 events.
func toolEvents(t testing.TB) []*buildpb.OrderedBuildEvent {
	evs := readOBEs(t, "bes_test_mixed.obe", func() *buildpb.OrderedBuildEvent { return &buildpb.OrderedBuildEvent{} })
	if len(evs) != 106 {
		t.Fatalf("%d events in bes_test_mixed.obe, want 106", len(evs))
	}
	return evs
}

const toolKey = "0fff9624-6330-4348-b7e6-0d35256338b9.3.8b58a6b7-1857-43e5-b701-ebbabc33fc5c"

// env is a server on an in-process connection.
type env struct {
	disk   *local.Store
	pub    PublishServer
	client buildpb.PublishBuildEventClient
	query  buildgridpb.QueryBuildEventsClient
	log    *lockedBuffer
	conn   *grpc.ClientConn
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newEnv starts a server storing into a store in dir ("" for a new one);
// opts.Persister and opts.Log are filled in when nil.
func newEnv(t *testing.T, dir string, opts Options) *env {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	disk, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{disk: disk, log: &lockedBuffer{}}
	if opts.Persister == nil {
		opts.Persister = NewBackendPersister(disk, "grpc", 0)
	}
	if opts.Log == nil {
		opts.Log = e.log
	}
	e.pub = NewPublishBuildEventServer(disk, opts)
	lis := bufconn.Listen(1 << 20)
	// The codec of bes serve (GRPCOptions): every test decodes through it.
	gs := grpc.NewServer(grpc.WaitForHandlers(true), grpc.ForceServerCodecV2(newRecvCodec()))
	buildpb.RegisterPublishBuildEventServer(gs, e.pub)
	bg, bq := NewQueryServers(disk, QueryOptions{})
	buildgridpb.RegisterQueryBuildEventsServer(gs, bg)
	bespb.RegisterStreamQueryServer(gs, bq)
	go gs.Serve(lis)
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		gs.Stop()
		if err := e.pub.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	e.client = buildpb.NewPublishBuildEventClient(cc)
	e.query = buildgridpb.NewQueryBuildEventsClient(cc)
	e.conn = cc
	return e
}

func req(obe *buildpb.OrderedBuildEvent) *buildpb.PublishBuildToolEventStreamRequest {
	return &buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: obe}
}

// publish sends evs in one call and returns the acknowledged sequence
// numbers and the call's status.
func publish(t *testing.T, c buildpb.PublishBuildEventClient, evs []*buildpb.OrderedBuildEvent) ([]int64, error) {
	t.Helper()
	call, err := c.PublishBuildToolEventStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		for _, ev := range evs {
			if err := call.Send(req(ev)); err != nil {
				sendErr <- nil // the status comes from Recv
				return
			}
		}
		sendErr <- call.CloseSend()
	}()
	var acks []int64
	for {
		resp, err := call.Recv()
		if err == io.EOF {
			return acks, <-sendErr
		}
		if err != nil {
			<-sendErr
			return acks, err
		}
		if k := store.Key(resp.GetStreamId()); k != store.Key(evs[0].GetStreamId()) {
			t.Errorf("ack for stream %q", k)
		}
		acks = append(acks, resp.GetSequenceNumber())
	}
}

func seqs(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// storedBytes returns the encodings of a stream's events as the store
// holds them, and as QueryEventStreams answers them.
func storedBytes(t *testing.T, e *env, key string) (query, disk [][]byte) {
	t.Helper()
	resp, qerr := e.query.QueryEventStreams(context.Background(), &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: "^" + regexp.QuoteMeta(key) + "$"})
	if qerr != nil && status.Code(qerr) != codes.ResourceExhausted {
		t.Fatal(qerr)
	}
	for _, s := range resp.GetStreams() {
		query = append(query, encodings(t, s.GetEvents())...)
	}
	ents, err := e.disk.Lookup(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	err = e.disk.Events(context.Background(), ents[0], func(s *bepfile.Stream, ev *bepfile.Event) error {
		disk = append(disk, ev.AppendEncoding(nil, s))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if qerr != nil {
		// Over the query's limit: then the stream must be that large.
		size := 0
		for _, b := range disk {
			size += len(b)
		}
		if size <= DefaultMaxQueryResponse {
			t.Fatalf("stream %s of %d bytes: %v", key, size, qerr)
		}
		query = disk
	}
	return query, disk
}

func encodings(t *testing.T, evs []*buildpb.OrderedBuildEvent) [][]byte {
	var out [][]byte
	for _, ev := range evs {
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func checkStored(t *testing.T, e *env, key string, want [][]byte) {
	t.Helper()
	query, disk := storedBytes(t, e, key)
	for name, got := range map[string][][]byte{"query": query, "disk": disk} {
		if len(got) != len(want) {
			t.Errorf("%s holds %d events, want %d", name, len(got), len(want))
			continue
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("%s: event %d differs from the one sent", name, i)
				break
			}
		}
	}
}

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	s, _ := status.FromError(err)
	if s.Code() != code || !strings.Contains(s.Message(), msg) {
		t.Errorf("status %v %q, want %v containing %q", s.Code(), s.Message(), code, msg)
	}
}

func TestToolStream(t *testing.T) {
	e := newEnv(t, "", Options{})
	evs := toolEvents(t)
	acks, err := publish(t, e.client, evs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(acks, seqs(1, 106)) {
		t.Fatalf("acks %v, want 1..106", acks)
	}
	checkStored(t, e, toolKey, encodings(t, evs))
	ents, _ := e.disk.Lookup(context.Background(), toolKey)
	if ents[0].Events != 106 || !ents[0].Complete || ents[0].Result != "TESTS_FAILED" || ents[0].Format != "grpc" {
		t.Errorf("index entry %+v", ents[0])
	}
	log := e.log.String()
	for _, want := range []string{"bes: stream " + toolKey + " opened: tool events from ", "bes: stream " + toolKey + " finished: 106 events\n"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// The whole stream again, as a client that lost every ack would send
	// it: acknowledged again, stored once.
	acks, err = publish(t, e.client, evs)
	if err != nil || !slices.Equal(acks, seqs(1, 106)) {
		t.Fatalf("re-sent stream: acks %v, %v", acks, err)
	}
	checkStored(t, e, toolKey, encodings(t, evs))
}

// A client drops its call after k events, reconnects and re-sends from an
// earlier sequence number; sometimes the abandoned call is still open while
// the new one runs. Every event is stored exactly once, every call's acks
// are in order.
func TestReconnectResend(t *testing.T) {
	evs := toolEvents(t)
	want := encodings(t, evs)
	for _, tc := range []struct {
		k, acked, from int // send k events, read acked acks, then re-send from event from (1-based)
		keepOpen       bool
	}{
		{k: 40, acked: 30, from: 21},
		{k: 40, acked: 40, from: 41},
		{k: 1, acked: 0, from: 1},
		{k: 105, acked: 50, from: 2, keepOpen: true},
		{k: 106, acked: 106, from: 106},
		{k: 70, acked: 10, from: 11, keepOpen: true},
	} {
		t.Run(fmt.Sprintf("k=%d,acked=%d,from=%d,open=%v", tc.k, tc.acked, tc.from, tc.keepOpen), func(t *testing.T) {
			e := newEnv(t, "", Options{MaxBatch: 8})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			call, err := e.client.PublishBuildToolEventStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs[:tc.k] {
				if err := call.Send(req(ev)); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < tc.acked; i++ {
				resp, err := call.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetSequenceNumber() != int64(i+1) {
					t.Fatalf("ack %d has sequence number %d", i, resp.GetSequenceNumber())
				}
			}
			if !tc.keepOpen {
				cancel()
			}
			acks, err := publish(t, e.client, evs[tc.from-1:])
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(acks, seqs(int64(tc.from), 106)) {
				t.Fatalf("acks after reconnecting: %v, want %d..106", acks, tc.from)
			}
			cancel()
			checkStored(t, e, toolKey, want)
		})
	}
}

// Several clients re-send overlapping parts of one stream at once.
func TestConcurrentResenders(t *testing.T) {
	e := newEnv(t, "", Options{MaxBatch: 4})
	evs := toolEvents(t)
	acks, err := publish(t, e.client, evs[:30])
	if err != nil || len(acks) != 30 {
		t.Fatalf("first 30: %v, %v", acks, err)
	}
	var wg sync.WaitGroup
	for _, from := range []int{5, 10, 20, 31} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each starts within what is stored, so each goes through,
			// whatever the others stored meanwhile.
			acks, err := publish(t, e.client, evs[from-1:])
			if err != nil || !slices.Equal(acks, seqs(int64(from), 106)) {
				t.Errorf("acks from %d: %v, %v", from, acks, err)
			}
		}()
	}
	wg.Wait()
	if acks, err := publish(t, e.client, evs); err != nil || len(acks) != 106 {
		t.Fatalf("whole stream: %d acks, %v", len(acks), err)
	}
	checkStored(t, e, toolKey, encodings(t, evs))
}

func TestSequenceErrors(t *testing.T) {
	evs := toolEvents(t)
	e := newEnv(t, "", Options{})
	// A gap in one call.
	acks, err := publish(t, e.client, []*buildpb.OrderedBuildEvent{evs[0], evs[1], evs[3]})
	wantStatus(t, err, codes.FailedPrecondition, "stream "+toolKey+": got sequence number 4, want 3")
	if !slices.Equal(acks, []int64{1, 2}) {
		t.Errorf("acks before the gap: %v", acks)
	}
	// A new call that starts past the end.
	_, err = publish(t, e.client, evs[6:9])
	wantStatus(t, err, codes.FailedPrecondition, "got sequence number 7, want 3")
	// Out of order within a call (a re-send is fine only at the start).
	acks, err = publish(t, e.client, []*buildpb.OrderedBuildEvent{evs[2], evs[3], evs[1]})
	wantStatus(t, err, codes.FailedPrecondition, "got sequence number 2, want 5")
	if !slices.Equal(acks, []int64{3, 4}) {
		t.Errorf("acks before the event out of order: %v", acks)
	}
	// A re-sent number with other content.
	other := proto.CloneOf(evs[1])
	other.Event.EventTime.Nanos++
	_, err = publish(t, e.client, []*buildpb.OrderedBuildEvent{other})
	wantStatus(t, err, codes.AlreadyExists, "sequence number 2 was already received with other content")
	checkStored(t, e, toolKey, encodings(t, evs[:4]))
	if !strings.Contains(e.log.String(), "bes: refused (FailedPrecondition): stream "+toolKey+": got sequence number 4, want 3\n") {
		t.Errorf("refusal not logged:\n%s", e.log.String())
	}

	// Nothing after component_stream_finished.
	if _, err := publish(t, e.client, evs[4:]); err != nil {
		t.Fatal(err)
	}
	extra := proto.CloneOf(evs[104])
	extra.SequenceNumber = 107
	_, err = publish(t, e.client, []*buildpb.OrderedBuildEvent{extra})
	wantStatus(t, err, codes.FailedPrecondition, "is finished: got sequence number 107")
	checkStored(t, e, toolKey, encodings(t, evs))
}

func TestInvalidRequests(t *testing.T) {
	evs := toolEvents(t)
	e := newEnv(t, "", Options{MaxEventSize: 32 << 10})
	big := proto.CloneOf(evs[0])
	big.Event.GetBazelEvent().Value = bytes.Repeat([]byte{'x'}, 40000)
	noID := proto.CloneOf(evs[0])
	noID.StreamId = nil
	wrongURL := proto.CloneOf(evs[0])
	wrongURL.Event.Event = &buildpb.BuildEvent_BazelEvent{BazelEvent: &anypb.Any{TypeUrl: "type.googleapis.com/google.protobuf.Empty"}}
	empty := proto.CloneOf(evs[0])
	empty.Event.Event = nil
	zero := proto.CloneOf(evs[0])
	zero.SequenceNumber = 0
	otherStream := proto.CloneOf(evs[1])
	otherStream.StreamId.InvocationId = "other"

	for _, tc := range []struct {
		name string
		reqs []*buildpb.PublishBuildToolEventStreamRequest
		code codes.Code
		msg  string
	}{
		{"no event", []*buildpb.PublishBuildToolEventStreamRequest{{ProjectId: "p"}}, codes.InvalidArgument, "request without ordered_build_event"},
		{"no stream id", []*buildpb.PublishBuildToolEventStreamRequest{req(noID)}, codes.InvalidArgument, "has no stream id"},
		{"wrong type URL", []*buildpb.PublishBuildToolEventStreamRequest{req(wrongURL)}, codes.InvalidArgument, `bazel_event has type URL "type.googleapis.com/google.protobuf.Empty", want "type.googleapis.com/build_event_stream.BuildEvent"`},
		{"empty event", []*buildpb.PublishBuildToolEventStreamRequest{req(empty)}, codes.InvalidArgument, "the event is empty"},
		{"sequence number 0", []*buildpb.PublishBuildToolEventStreamRequest{req(zero)}, codes.InvalidArgument, "sequence numbers start at 1"},
		{"too big", []*buildpb.PublishBuildToolEventStreamRequest{req(big)}, codes.ResourceExhausted, "exceeds the limit of 32768 bytes"},
		{"two streams in a call", []*buildpb.PublishBuildToolEventStreamRequest{req(evs[0]), req(otherStream)}, codes.InvalidArgument, "got an event of stream 0fff9624-6330-4348-b7e6-0d35256338b9.3.other in the same call"},
		{"lifecycle not preceded", []*buildpb.PublishBuildToolEventStreamRequest{{OrderedBuildEvent: evs[0], CheckPrecedingLifecycleEventsPresent: true}}, codes.FailedPrecondition, "no lifecycle event was received on stream 0fff9624-6330-4348-b7e6-0d35256338b9.1.8b58a6b7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call, err := e.client.PublishBuildToolEventStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tc.reqs {
				call.Send(r)
			}
			call.CloseSend()
			for err == nil {
				_, err = call.Recv()
			}
			wantStatus(t, err, tc.code, tc.msg)
		})
	}
	// The server goes on serving: the stream still goes through whole.
	if acks, err := publish(t, e.client, evs); err != nil || len(acks) != 106 {
		t.Fatalf("after the refusals: %d acks, %v", len(acks), err)
	}
}

func lifecycleRequests(t *testing.T) []*buildpb.PublishLifecycleEventRequest {
	rs := readOBEs(t, "bes_test_mixed.lifecycle.obe", func() *buildpb.PublishLifecycleEventRequest { return &buildpb.PublishLifecycleEventRequest{} })
	if len(rs) != 4 {
		t.Fatalf("%d lifecycle requests, want 4", len(rs))
	}
	return rs
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t, "", Options{})
	lc := lifecycleRequests(t)
	evs := toolEvents(t)
	ctx := context.Background()
	// Bazel's order: enqueued, attempt started, the tool stream, attempt
	// finished, build finished; the tool stream checks that lifecycle
	// events came first.
	for _, r := range lc[:2] {
		if _, err := e.client.PublishLifecycleEvent(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	call, err := e.client.PublishBuildToolEventStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	call.Send(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: evs[0], CheckPrecedingLifecycleEventsPresent: true})
	call.CloseSend()
	if _, err := call.Recv(); err != nil {
		t.Fatal(err)
	}
	if acks, err := publish(t, e.client, evs); err != nil || len(acks) != 106 {
		t.Fatalf("tool stream: %d acks, %v", len(acks), err)
	}
	for _, r := range lc[2:] {
		if _, err := e.client.PublishLifecycleEvent(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// A retried lifecycle event is fine; a gap is not.
	if _, err := e.client.PublishLifecycleEvent(ctx, lc[3]); err != nil {
		t.Errorf("retried build_finished: %v", err)
	}
	gap := proto.CloneOf(lc[0])
	gap.BuildEvent.SequenceNumber = 4
	_, err = e.client.PublishLifecycleEvent(ctx, gap)
	wantStatus(t, err, codes.FailedPrecondition, "stream 0fff9624-6330-4348-b7e6-0d35256338b9.1.: got sequence number 4, want 3")

	for _, key := range []string{"0fff9624-6330-4348-b7e6-0d35256338b9.1.", "0fff9624-6330-4348-b7e6-0d35256338b9.1.8b58a6b7-1857-43e5-b701-ebbabc33fc5c"} {
		var want []*buildpb.OrderedBuildEvent
		for _, r := range lc {
			if store.Key(r.GetBuildEvent().GetStreamId()) == key {
				want = append(want, r.GetBuildEvent())
			}
		}
		checkStored(t, e, key, encodings(t, want))
		ents, _ := e.disk.Lookup(ctx, key)
		if !ents[0].Complete || ents[0].Result != "COMMAND_FAILED" {
			t.Errorf("entry of %s: %+v", key, ents[0])
		}
		if !strings.Contains(e.log.String(), "stream "+key+" finished: 2 events") {
			t.Errorf("no finish logged for %s", key)
		}
	}
}

// A second server on the same store continues a stream the first one left
// unfinished, and recognises what the first one stored.
func TestContinueAfterRestart(t *testing.T) {
	dir := t.TempDir()
	evs := toolEvents(t)
	first := newEnv(t, dir, Options{})
	if acks, err := publish(t, first.client, evs[:50]); err != nil || len(acks) != 50 {
		t.Fatalf("first server: %d acks, %v", len(acks), err)
	}
	if err := first.pub.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	second := newEnv(t, dir, Options{})
	acks, err := publish(t, second.client, evs[39:])
	if err != nil || !slices.Equal(acks, seqs(40, 106)) {
		t.Fatalf("second server: acks %v, %v", acks, err)
	}
	checkStored(t, second, toolKey, encodings(t, evs))
	if !strings.Contains(second.log.String(), "continued by ") || !strings.Contains(second.log.String(), "after sequence number 50 (50 events stored)") {
		t.Errorf("log:\n%s", second.log.String())
	}
}

// failingPersister fails the first Sync of each stream once.
type failingPersister struct {
	Persister
	mu     sync.Mutex
	failed map[string]bool
}

type failingSink struct {
	Sink
	p   *failingPersister
	key string
}

func (p *failingPersister) Open(ctx context.Context, st *bepfile.Stream, source string) (Sink, *store.Stream, error) {
	s, stored, err := p.Persister.Open(ctx, st, source)
	if err != nil {
		return nil, nil, err
	}
	return failingSink{s, p, st.Key}, stored, nil
}

func (s failingSink) Sync(ctx context.Context) error {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if !s.p.failed[s.key] {
		s.p.failed[s.key] = true
		return errors.New("disk on fire")
	}
	return s.Sink.Sync(ctx)
}

func TestPersistenceFailure(t *testing.T) {
	disk, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := &failingPersister{Persister: NewBackendPersister(disk, "grpc", 0), failed: map[string]bool{}}
	e := newEnv(t, disk.Dir(), Options{Persister: p})
	evs := toolEvents(t)
	acks, err := publish(t, e.client, evs)
	wantStatus(t, err, codes.Unavailable, "stream "+toolKey+": cannot store it: disk on fire")
	if len(acks) != 0 {
		t.Fatalf("acks for events not stored: %v", acks)
	}
	// The client retries, as Bazel does on Unavailable.
	if acks, err := publish(t, e.client, evs); err != nil || len(acks) != 106 {
		t.Fatalf("retry: %d acks, %v", len(acks), err)
	}
	checkStored(t, e, toolKey, encodings(t, evs))
}

func TestQueryEventStreams(t *testing.T) {
	e := newEnv(t, "", Options{})
	ctx := context.Background()
	evs := toolEvents(t)
	if _, err := publish(t, e.client, evs); err != nil {
		t.Fatal(err)
	}
	for _, r := range lifecycleRequests(t) {
		if _, err := e.client.PublishLifecycleEvent(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	// A stream that only the store has (ingested, not received).
	ingested := bepfile.NewStream(&buildpb.StreamId{BuildId: "ingested", InvocationId: "inv", Component: buildpb.StreamId_TOOL})
	w, err := e.disk.Create(ctx, ingested)
	if err != nil {
		t.Fatal(err)
	}
	w.Append(&bepfile.Event{Seq: 1, Payload: []byte{}})
	if _, _, err := w.Commit(ctx, "file", "bep", false); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		pattern string
		keys    []string
	}{
		{"", []string{"0fff9624-6330-4348-b7e6-0d35256338b9.1.", "0fff9624-6330-4348-b7e6-0d35256338b9.1.8b58a6b7-1857-43e5-b701-ebbabc33fc5c", toolKey, "ingested.3.inv"}},
		{`\.1\.`, []string{"0fff9624-6330-4348-b7e6-0d35256338b9.1.", "0fff9624-6330-4348-b7e6-0d35256338b9.1.8b58a6b7-1857-43e5-b701-ebbabc33fc5c"}},
		{"8b58a6b7", []string{"0fff9624-6330-4348-b7e6-0d35256338b9.1.8b58a6b7-1857-43e5-b701-ebbabc33fc5c", toolKey}},
		{"^ingested", []string{"ingested.3.inv"}},
		{"nothing", nil},
	} {
		resp, err := e.query.QueryEventStreams(ctx, &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: tc.pattern})
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		var keys []string
		for _, s := range resp.GetStreams() {
			keys = append(keys, store.Key(s.GetStreamId()))
			if store.Key(s.GetStreamId()) == toolKey {
				if got := encodings(t, s.GetEvents()); !slices.EqualFunc(got, encodings(t, evs), bytes.Equal) {
					t.Errorf("%q: the tool stream's events differ from those sent", tc.pattern)
				}
			}
		}
		if !slices.Equal(keys, tc.keys) {
			t.Errorf("%q: streams %v, want %v", tc.pattern, keys, tc.keys)
		}
	}
	_, err = e.query.QueryEventStreams(ctx, &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: "("})
	wantStatus(t, err, codes.InvalidArgument, "build_id_pattern")
}

func TestCloseRefusesNewCalls(t *testing.T) {
	e := newEnv(t, "", Options{})
	evs := toolEvents(t)
	abandon(t, e.client, evs, 10) // its call stays open, holding the stream
	if err := e.pub.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(e.log.String(), "stream "+toolKey+" closed unfinished: 10 events") {
		t.Errorf("log:\n%s", e.log.String())
	}
	ents, _ := e.disk.Lookup(context.Background(), toolKey)
	if ents[0].Events != 10 {
		t.Errorf("index counts %d events after Close, want 10", ents[0].Events)
	}
	_, err := publish(t, e.client, evs[10:])
	wantStatus(t, err, codes.Unavailable, "shutting down")
}
