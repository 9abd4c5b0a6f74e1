package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bespb"
	"github.com/bes-cli/bes/store/buildgridpb"
	"github.com/bes-cli/bes/store/local"
)

// The server under faults: many clients that drop their calls and re-send,
// requests that are malformed, and clients that stall, all at once on one
// server with a store on disk.

// renamed returns the events with the invocation id of their stream set to
// inv.
func renamed(evs []*buildpb.OrderedBuildEvent, inv string) []*buildpb.OrderedBuildEvent {
	out := make([]*buildpb.OrderedBuildEvent, len(evs))
	for i, ev := range evs {
		out[i] = proto.CloneOf(ev)
		out[i].StreamId.InvocationId = inv
	}
	return out
}

// faultyClient publishes evs over and over in calls it cuts at random
// points, each time re-sending from a random point at or before the last
// event acknowledged, until every event is acknowledged. It checks that
// every call's acks are in order, for the events it sent. It returns the
// number of calls made.
func faultyClient(ctx context.Context, c buildpb.PublishBuildEventClient, evs []*buildpb.OrderedBuildEvent, rng *rand.Rand) (int, error) {
	acked := 0 // events 1..acked are acknowledged
	for calls := 1; ; calls++ {
		if calls > 500 {
			return calls, fmt.Errorf("%d events of %d acknowledged after 500 calls", acked, len(evs))
		}
		if err := ctx.Err(); err != nil {
			return calls, err
		}
		from := acked - rng.IntN(min(acked, 8)+1) // re-send some acknowledged ones
		n := 1 + rng.IntN(len(evs)-from)
		cut := rng.IntN(3) != 0     // two calls in three are dropped
		readAcks := rng.IntN(n + 1) // after this many acks
		callCtx, cancel := context.WithCancel(ctx)
		call, err := c.PublishBuildToolEventStream(callCtx)
		if err != nil {
			cancel()
			return calls, err
		}
		go func() {
			for _, ev := range evs[from : from+n] {
				if call.Send(req(ev)) != nil {
					return
				}
			}
			if !cut {
				call.CloseSend()
			}
		}()
		want := int64(from + 1)
		for {
			if cut && int(want)-from-1 >= readAcks {
				cancel()
				break
			}
			resp, err := call.Recv()
			if err == io.EOF {
				if int(want) != from+n+1 {
					cancel()
					return calls, fmt.Errorf("call ended after ack %d, want %d", want-1, from+n)
				}
				break
			}
			if err != nil {
				cancel()
				return calls, fmt.Errorf("call from %d: %w", from+1, err)
			}
			if got := resp.GetSequenceNumber(); got != want {
				cancel()
				return calls, fmt.Errorf("ack %d, want %d: acks out of order", got, want)
			}
			acked = max(acked, int(want))
			want++
		}
		cancel()
		if acked == len(evs) {
			return calls, nil
		}
	}
}

// TestManyFaultyClients: 64 clients, two per stream, publish 32 streams at
// once, cutting their calls at random points and re-sending from random
// points; meanwhile malformed requests of every kind arrive. Every event is
// stored exactly once, in order, on disk and in memory; every refusal is
// the right gRPC error; the server goes on serving.
func TestManyFaultyClients(t *testing.T) {
	e := newFaultEnv(t, Options{MaxEventSize: 64 << 10, MaxBatch: 16})
	base := toolEvents(t)
	const streams, clients = 32, 64
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	calls := make([]int, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := renamed(base, fmt.Sprintf("inv-%02d", i%streams))
			n, err := faultyClient(ctx, e.client, evs, rand.New(rand.NewPCG(uint64(i), 6)))
			calls[i] = n
			if err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		}()
	}
	// Malformed requests, over and over while the clients run.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for round := 0; round < 20 && ctx.Err() == nil; round++ {
			malformed(t, ctx, e)
		}
	}()
	wg.Wait()

	total := 0
	for _, n := range calls {
		total += n
	}
	t.Logf("%d calls for %d streams", total, streams)
	for i := range streams {
		evs := renamed(base, fmt.Sprintf("inv-%02d", i))
		key := store.Key(evs[0].GetStreamId())
		checkStored(t, e.env, key, encodings(t, evs))
		ents, err := e.disk.Lookup(ctx, key)
		if err != nil || len(ents) != 1 || ents[0].Events != 106 || !ents[0].Complete {
			t.Errorf("stream %s: entry %+v, %v", key, ents, err)
		}
	}
	res, err := e.disk.Check(ctx)
	if err != nil || !res.OK() {
		t.Errorf("store check after the storm: %+v, %v", res, err)
	}
}

// rawCodec sends bytes as they are, to put malformed messages on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }
func (rawCodec) Name() string                       { return "proto" }

// malformed sends one malformed request of each kind and checks that each
// is refused with its gRPC error.
func malformed(t *testing.T, ctx context.Context, e *faultEnv) {
	base := toolEvents(t)[1]
	noID := proto.CloneOf(base)
	noID.StreamId = nil
	wrongURL := proto.CloneOf(base)
	wrongURL.StreamId.InvocationId = "malformed"
	wrongURL.Event.Event = &buildpb.BuildEvent_BazelEvent{BazelEvent: &anypb.Any{TypeUrl: "type.googleapis.com/evil.Payload", Value: []byte("x")}}
	big := proto.CloneOf(base)
	big.StreamId.InvocationId = "malformed"
	big.SequenceNumber = 1
	big.Event.GetBazelEvent().Value = bytes.Repeat([]byte{'x'}, 100<<10)
	// An id over the store's limits (issue 13): refused, never acknowledged.
	hugeID := proto.CloneOf(base)
	hugeID.StreamId.BuildId = strings.Repeat("b", local.MaxIDBytes+1)
	hugeID.SequenceNumber = 1
	for _, tc := range []struct {
		obe  *buildpb.OrderedBuildEvent
		code codes.Code
	}{
		{noID, codes.InvalidArgument},
		{wrongURL, codes.InvalidArgument},
		{big, codes.ResourceExhausted},
		{hugeID, codes.InvalidArgument},
	} {
		_, err := e.client.PublishLifecycleEvent(ctx, &buildpb.PublishLifecycleEventRequest{BuildEvent: tc.obe})
		if status.Code(err) != tc.code && ctx.Err() == nil {
			t.Errorf("lifecycle event refused with %v, want %v", err, tc.code)
		}
		call, err := e.client.PublishBuildToolEventStream(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		call.Send(req(tc.obe))
		call.CloseSend()
		for err == nil {
			_, err = call.Recv()
		}
		if status.Code(err) != tc.code && ctx.Err() == nil {
			t.Errorf("tool event refused with %v, want %v", err, tc.code)
		}
	}
	// Bytes that are no protobuf, and a string that is not UTF-8.
	badUTF8 := []byte{0x12, 0x05, 0x0a, 0x03, 'a', 0xff, 'b'} // build_event{stream_id{build_id: "a\xffb"}}
	for _, raw := range [][]byte{{0xff, 0xff, 0xff}, badUTF8} {
		err := e.conn.Invoke(ctx, "/google.devtools.build.v1.PublishBuildEvent/PublishLifecycleEvent", raw, &emptypb.Empty{}, grpc.ForceCodec(rawCodec{}))
		if status.Code(err) != codes.Internal && ctx.Err() == nil {
			t.Errorf("undecodable request %x: %v, want Internal", raw, err)
		}
	}
}

// stallingEvents makes a stream of n events, sequence numbers 1..n, each a
// copy of a small Bazel event.
func stallingEvents(t *testing.T, inv string, n int) []*buildpb.OrderedBuildEvent {
	tmpl := toolEvents(t)[1]
	out := make([]*buildpb.OrderedBuildEvent, n)
	for i := range out {
		out[i] = proto.CloneOf(tmpl)
		out[i].StreamId.InvocationId = inv
		out[i].SequenceNumber = int64(i + 1)
	}
	return out
}

// TestStalledClients: a client that opens a call and sends nothing, one
// that sends thousands of events and never reads an ack (so that the
// server's acks back up), and a connection that never speaks gRPC cannot
// keep other clients, on other streams or on the very stream the stalled
// reader writes, from publishing.
func TestStalledClients(t *testing.T) {
	e := newFaultEnv(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A call that sends nothing.
	silent, err := e.client.PublishBuildToolEventStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = silent
	// A call that sends 4000 events and reads no ack, on its own
	// connection, whose stream window stays at 64 KiB: the server's acks
	// fill it and its Send blocks.
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return e.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stallEvs := stallingEvents(t, "stalled", 4000)
	deaf, err := buildpb.NewPublishBuildEventClient(cc).PublishBuildToolEventStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent := make(chan int, 1)
	go func() {
		n := 0
		for _, ev := range stallEvs {
			if deaf.Send(req(ev)) != nil {
				break
			}
			n++
		}
		sent <- n
	}()
	// A connection that never speaks.
	mute, err := e.lis.DialContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	// Let the stalled reader's acks back up.
	time.Sleep(200 * time.Millisecond)

	// Other clients: eight streams, and the stalled reader's own stream
	// published whole by another client.
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := renamed(toolEvents(t), fmt.Sprintf("busy-%d", i))
			if acks, err := publish(t, e.client, evs); err != nil || len(acks) != len(evs) {
				t.Errorf("client %d: %d acks, %v", i, len(acks), err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if acks, err := publish(t, e.client, stallEvs); err != nil || len(acks) != len(stallEvs) {
			t.Errorf("the stalled stream, published by another client: %d acks, %v", len(acks), err)
		}
	}()
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the other clients did not finish within a minute: a stalled client blocks them")
	}
	for i := range 8 {
		evs := renamed(toolEvents(t), fmt.Sprintf("busy-%d", i))
		checkStored(t, e.env, store.Key(evs[0].GetStreamId()), encodings(t, evs))
	}
	checkStored(t, e.env, store.Key(stallEvs[0].GetStreamId()), encodings(t, stallEvs))
	select {
	case n := <-sent:
		t.Logf("the stalled reader could send all its %d events", n)
	default:
		t.Logf("the stalled reader is still blocked sending")
	}
	cancel() // the stalled calls end; the server closes cleanly (cleanup)
}

// TestAuthInterceptors: with a token, every call, unary or streaming, to
// either service needs it.
func TestAuthInterceptors(t *testing.T) {
	auth, err := NewTokenAuth("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewTokenAuth(""); err == nil {
		t.Error("an empty token was accepted")
	}
	e := newFaultEnv(t, Options{}, auth.ServerOptions()...)
	evs := toolEvents(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		md    []string
		want  codes.Code
		write bool
	}{
		{"no token", nil, codes.Unauthenticated, false},
		{"wrong token", []string{"authorization", "Bearer s3cre7"}, codes.Unauthenticated, false},
		{"longer token", []string{"authorization", "Bearer s3cret-and-more"}, codes.Unauthenticated, false},
		{"no scheme", []string{"authorization", "s3cret"}, codes.Unauthenticated, false},
		{"basic", []string{"authorization", "Basic s3cret"}, codes.Unauthenticated, false},
		{"good token", []string{"authorization", "Bearer s3cret"}, codes.OK, true},
		{"scheme in lower case", []string{"authorization", "bearer s3cret"}, codes.OK, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cctx := ctx
			if tc.md != nil {
				cctx = metadata.AppendToOutgoingContext(ctx, tc.md...)
			}
			_, err := e.client.PublishLifecycleEvent(cctx, lifecycleRequests(t)[0])
			if status.Code(err) != tc.want {
				t.Errorf("PublishLifecycleEvent: %v, want %v", err, tc.want)
			}
			call, err := e.client.PublishBuildToolEventStream(cctx)
			if err == nil {
				call.Send(req(evs[0]))
				call.CloseSend()
				for err == nil {
					_, err = call.Recv()
				}
			}
			if err == io.EOF {
				err = nil
			}
			if status.Code(err) != tc.want {
				t.Errorf("PublishBuildToolEventStream: %v, want %v", err, tc.want)
			}
			_, err = e.query.QueryEventStreams(cctx, &buildgridpb.QueryEventStreamsRequest{})
			if status.Code(err) != tc.want {
				t.Errorf("QueryEventStreams: %v, want %v", err, tc.want)
			}
		})
	}
	// Only the authenticated calls stored anything.
	var n int
	e.disk.List(ctx, func(*store.Entry) error { n++; return nil })
	if n != 2 {
		t.Errorf("%d streams stored, want the 2 of the authenticated calls", n)
	}
	if strings.Contains(e.log.String(), "s3cret") {
		t.Error("the token appears in the log")
	}
}

// faultEnv is env with the server's listener and the client's connection
// at hand, and server options of the test's choice.
type faultEnv struct {
	*env
	lis  *bufconn.Listener
	conn *grpc.ClientConn
}

func newFaultEnv(t *testing.T, opts Options, sopts ...grpc.ServerOption) *faultEnv {
	t.Helper()
	disk, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := &faultEnv{env: &env{disk: disk, log: &lockedBuffer{}}}
	opts.Persister = NewBackendPersister(disk, "grpc", 0)
	opts.Log = e.log
	e.pub = NewPublishBuildEventServer(disk, opts)
	e.lis = bufconn.Listen(1 << 20)
	gs := grpc.NewServer(append(sopts, grpc.WaitForHandlers(true))...)
	buildpb.RegisterPublishBuildEventServer(gs, e.pub)
	bg, bq := NewQueryServers(disk, QueryOptions{})
	buildgridpb.RegisterQueryBuildEventsServer(gs, bg)
	bespb.RegisterStreamQueryServer(gs, bq)
	go gs.Serve(e.lis)
	e.conn, err = grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return e.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.conn.Close()
		gs.Stop()
		if err := e.pub.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	e.client = buildpb.NewPublishBuildEventClient(e.conn)
	e.query = buildgridpb.NewQueryBuildEventsClient(e.conn)
	return e
}
