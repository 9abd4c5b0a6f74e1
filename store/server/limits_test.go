package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/buildgridpb"
)

// Tests of issue 13's faults of bes serve: memory that grew with
// everything received, answers of any size, a stream replaced under the
// server, abandoned streams never let go, malformed payloads accepted.

// heapInUse returns the bytes of live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestFinishedStreamsLeaveMemory: the server keeps nothing of a stream it
// finished; the live heap after 150 streams (8.6 MB of events) is what it
// was after 10. It failed when every event was kept in an in-memory
// storage besides the store.
func TestFinishedStreamsLeaveMemory(t *testing.T) {
	e := newEnv(t, "", Options{})
	base := toolEvents(t)
	sent := 0
	send := func(from, to int) {
		for i := from; i < to; i++ {
			evs := renamed(base, fmt.Sprintf("mem-%03d", i))
			if acks, err := publish(t, e.client, evs); err != nil || len(acks) != len(evs) {
				t.Fatalf("stream %d: %d acks, %v", i, len(acks), err)
			}
			for _, ev := range evs {
				sent += proto.Size(ev)
			}
		}
	}
	send(0, 10)
	before := heapInUse()
	send(10, 150)
	after := heapInUse()
	if n := e.pub.OpenStreams(); n != 0 {
		t.Errorf("%d streams open after every stream finished, want 0", n)
	}
	t.Logf("live heap %d → %d bytes after %d bytes of events", before, after, sent)
	if after > before && after-before > uint64(sent)/8 {
		t.Errorf("live heap grew by %d bytes while receiving %d bytes of finished streams", after-before, sent)
	}
}

// TestQueryLimit: an answer over the size or stream limit is refused with
// ResourceExhausted naming the limit and how to narrow the pattern; an
// answer of exactly the limit is given, and its encoding is the size
// reckoned.
func TestQueryLimit(t *testing.T) {
	e := newEnv(t, "", Options{})
	ctx := context.Background()
	base := toolEvents(t)
	for i := range 3 {
		if _, err := publish(t, e.client, renamed(base, fmt.Sprintf("q-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	all := &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: `\.q-`}
	full, err := NewQueryBuildEventsServer(e.disk, QueryOptions{}).QueryEventStreams(ctx, all)
	if err != nil || len(full.GetStreams()) != 3 {
		t.Fatalf("default limits: %d streams, %v", len(full.GetStreams()), err)
	}
	size := proto.Size(full)
	if size > DefaultMaxQueryResponse {
		t.Fatalf("an answer of %d bytes was given, over the default limit", size)
	}
	for _, tc := range []struct {
		opts QueryOptions
		req  *buildgridpb.QueryEventStreamsRequest
		want codes.Code
		msg  string
	}{
		{QueryOptions{MaxResponse: size}, all, codes.OK, ""},
		{QueryOptions{MaxResponse: size - 1}, all, codes.ResourceExhausted, fmt.Sprintf("would exceed %d bytes", size-1)},
		{QueryOptions{MaxResponse: size / 3}, all, codes.ResourceExhausted, "narrow the pattern"},
		{QueryOptions{MaxResponse: 1000}, all, codes.ResourceExhausted, "would exceed 1000 bytes"}, // known from the catalog
		{QueryOptions{MaxResponse: size / 3}, &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: `\.q-1$`}, codes.OK, ""},
		{QueryOptions{MaxStreams: 2}, all, codes.ResourceExhausted, "would exceed 2 streams"},
		{QueryOptions{MaxStreams: 3}, all, codes.OK, ""},
		{QueryOptions{}, &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: strings.Repeat("a", MaxQueryPattern+1)}, codes.InvalidArgument, "over the limit"},
	} {
		resp, err := NewQueryBuildEventsServer(e.disk, tc.opts).QueryEventStreams(ctx, tc.req)
		if status.Code(err) != tc.want || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%+v %.20q: %v, want %v with %q", tc.opts, tc.req.GetBuildIdPattern(), err, tc.want, tc.msg)
			continue
		}
		if err == nil && tc.opts.MaxResponse > 0 && proto.Size(resp) > tc.opts.MaxResponse {
			t.Errorf("%+v: an answer of %d bytes", tc.opts, proto.Size(resp))
		}
	}
}

// TestReplaceUnderServer: a stream the server received whole is replaced
// in the store by a shorter one (as `bes ingest --replace` does). The
// server answers from the store, and when the client sends the stream
// again it stores the events the store lacks instead of acknowledging
// them from a stale memory (issue 13: 106 events served, 62 stored).
func TestReplaceUnderServer(t *testing.T) {
	e := newEnv(t, "", Options{})
	ctx := context.Background()
	evs := toolEvents(t)
	if acks, err := publish(t, e.client, evs); err != nil || len(acks) != 106 {
		t.Fatalf("%d acks, %v", len(acks), err)
	}
	// The replacement: the stream's first 62 events.
	st := bepfile.NewStream(evs[0].GetStreamId())
	w, err := e.disk.Create(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs[:62] {
		raw, _ := proto.Marshal(ev)
		if err := w.Append(&bepfile.Event{Seq: ev.GetSequenceNumber(), Raw: raw}); err != nil {
			t.Fatal(err)
		}
	}
	if _, res, err := w.Commit(ctx, "truncated.obe", "obe", true); err != nil || res != store.Replaced {
		t.Fatalf("replace: %v, %v", res, err)
	}
	q, d := storedBytes(t, e, toolKey)
	if len(q) != 62 || len(d) != 62 {
		t.Fatalf("after the replace: the query answers %d events, the store holds %d; want 62", len(q), len(d))
	}
	acks, err := publish(t, e.client, evs)
	if err != nil || len(acks) != 106 {
		t.Fatalf("re-sent: %d acks, %v", len(acks), err)
	}
	checkStored(t, e, toolKey, encodings(t, evs))
	// Every event acknowledged is stored: a client that sends an event
	// the replacement stored with other content is refused.
	if _, err := e.disk.Lookup(ctx, toolKey); err != nil {
		t.Fatal(err)
	}
}

// fdCount returns the number of open file descriptors of the process, or
// -1 where /proc does not tell.
func fdCount() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// clock is a settable time for idle timeouts.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// abandon publishes the first n events of evs and, once they are
// acknowledged, leaves the call open and silent until the test ends, as a
// client that stopped sending while its connection stayed up. (A call
// that ends lets its stream go at once: see TestEndedCallLetsGo.)
func abandon(t *testing.T, c buildpb.PublishBuildEventClient, evs []*buildpb.OrderedBuildEvent, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	call, err := c.PublishBuildToolEventStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs[:n] {
		if err := call.Send(req(ev)); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		if _, err := call.Recv(); err != nil {
			t.Fatalf("stream %s: %v", store.Key(evs[0].GetStreamId()), err)
		}
	}
}

// TestAbandonedStreamsLetGo: 600 clients that vanish in the middle of
// their streams hold 600 files and locks until their streams have been
// idle for IdleTimeout; then Flush lets them go (files closed, locks
// released: the store may replace them), and a client that returns
// continues its stream from what the store holds. It failed when streams
// were held until shutdown.
func TestAbandonedStreamsLetGo(t *testing.T) {
	clk := &clock{now: time.Unix(1e9, 0)}
	e := newEnv(t, "", Options{IdleTimeout: time.Minute, Now: clk.Now})
	ctx := context.Background()
	base := toolEvents(t)
	const n = 600
	fds := fdCount()
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				abandon(t, e.client, renamed(base, fmt.Sprintf("gone-%03d", i)), 5)
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if got := e.pub.OpenStreams(); got != n {
		t.Fatalf("%d streams open after %d abandoned, want %d", got, n, n)
	}
	held := fdCount()
	// Not idle long enough yet.
	clk.Add(59 * time.Second)
	if err := e.pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.pub.OpenStreams(); got != n {
		t.Fatalf("%d streams open before the idle timeout, want %d", got, n)
	}
	clk.Add(time.Second)
	if err := e.pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.pub.OpenStreams(); got != 0 {
		t.Errorf("%d streams open after the idle timeout, want 0", got)
	}
	if fds >= 0 {
		t.Logf("file descriptors: %d before, %d with the abandoned streams, %d after the idle timeout", fds, held, fdCount())
		// Other descriptors (the catalog's connections, the gRPC
		// connections) come and go meanwhile: most streams holding one is
		// what shows the streams' files open.
		if held-fds < n*9/10 || fdCount() > fds+20 {
			t.Errorf("file descriptors: %d before, %d with %d abandoned streams, %d after they were let go", fds, held, n, fdCount())
		}
	}
	if c := strings.Count(e.log.String(), "without an event: 5 events stored"); c != n {
		t.Errorf("%d streams logged as let go, want %d", c, n)
	}
	// The lock is released: the store may replace a stream let go.
	key0 := store.Key(renamed(base, "gone-000")[0].GetStreamId())
	if err := e.disk.Delete(ctx, key0); err != nil {
		t.Errorf("delete a stream let go: %v", err)
	}
	// A client that returns continues its stream.
	evs := renamed(base, "gone-001")
	acks, err := publish(t, e.client, evs[3:])
	if err != nil || len(acks) != len(evs)-3 {
		t.Fatalf("the returning client: %d acks, %v", len(acks), err)
	}
	checkStored(t, e, store.Key(evs[0].GetStreamId()), encodings(t, evs))
	if !strings.Contains(e.log.String(), "continued by") {
		t.Errorf("the continuation is not logged:\n%.2000s", e.log.String())
	}
}

// TestEndedCallLetsGo: a call that ends with its stream unfinished (the
// client half-closed it, as bes replay of a truncated file does, or the
// call was cancelled, as when Bazel is killed) lets the stream go at once,
// not after the idle timeout: its lock is released (the store replaces
// it) and one line is logged; a client that returns continues it, nothing
// lost or doubled. A call that ends while a newer call of the stream holds
// it lets nothing go. It failed when streams were let go only when idle
// (bes ingest of the stream was refused as busy for 5 minutes).
func TestEndedCallLetsGo(t *testing.T) {
	e := newEnv(t, "", Options{IdleTimeout: time.Hour, MaxBatch: 8})
	ctx := context.Background()
	base := toolEvents(t)

	// Half-closed after 40 events.
	evs := renamed(base, "half")
	key := store.Key(evs[0].GetStreamId())
	if acks, err := publish(t, e.client, evs[:40]); err != nil || len(acks) != 40 {
		t.Fatalf("40 events: %d acks, %v", len(acks), err)
	}
	if n := e.pub.OpenStreams(); n != 0 {
		t.Errorf("%d streams open once the call ended, want 0", n)
	}
	if c := strings.Count(e.log.String(), "stream "+key+" let go after the call from"); c != 1 || !strings.Contains(e.log.String(), "(the client closed its side) after sequence number 40: 40 events stored") {
		t.Errorf("%d lines of the stream let go, want 1:\n%s", c, e.log.String())
	}
	// The client returns: the stream continues from the store.
	if acks, err := publish(t, e.client, evs[30:]); err != nil || len(acks) != 76 {
		t.Fatalf("the returning client: %d acks, %v", len(acks), err)
	}
	checkStored(t, e, key, encodings(t, evs))

	// Cancelled after 25 events (the client vanished): the store may
	// replace the stream right after.
	evs = renamed(base, "cut")
	key = store.Key(evs[0].GetStreamId())
	cctx, cancel := context.WithCancel(ctx)
	call, err := e.client.PublishBuildToolEventStream(cctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs[:25] {
		if err := call.Send(req(ev)); err != nil {
			t.Fatal(err)
		}
	}
	for range 25 {
		if _, err := call.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for e.pub.OpenStreams() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	w, err := e.disk.Create(ctx, bepfile.NewStream(evs[0].GetStreamId()))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs[:10] {
		raw, _ := proto.Marshal(ev)
		if err := w.Append(&bepfile.Event{Seq: ev.GetSequenceNumber(), Raw: raw}); err != nil {
			t.Fatal(err)
		}
	}
	if _, res, err := w.Commit(ctx, "cut.obe", "obe", true); err != nil || res != store.Replaced {
		t.Fatalf("replace the stream of a cancelled call: %v, %v", res, err)
	}
	if !strings.Contains(e.log.String(), "stream "+key+" let go after the call from") {
		t.Errorf("the cancelled call's stream let go is not logged:\n%s", e.log.String())
	}
	if acks, err := publish(t, e.client, evs[5:]); err != nil || len(acks) != 101 {
		t.Fatalf("the returning client: %d acks, %v", len(acks), err)
	}
	checkStored(t, e, key, encodings(t, evs))

	// A reconnect: call A sends 10 events and stays open; call B takes
	// the stream (re-sending from 6); A ends: B's stream stays open, and
	// B completes it.
	evs = renamed(base, "reconnect")
	key = store.Key(evs[0].GetStreamId())
	send := func(call buildpb.PublishBuildEvent_PublishBuildToolEventStreamClient, evs []*buildpb.OrderedBuildEvent) {
		t.Helper()
		for _, ev := range evs {
			if err := call.Send(req(ev)); err != nil {
				t.Fatal(err)
			}
		}
		for _, ev := range evs {
			if resp, err := call.Recv(); err != nil || resp.GetSequenceNumber() != ev.GetSequenceNumber() {
				t.Fatalf("ack for %d: %v, %v", ev.GetSequenceNumber(), resp, err)
			}
		}
	}
	actx, cancelA := context.WithCancel(ctx)
	defer cancelA()
	a, err := e.client.PublishBuildToolEventStream(actx)
	if err != nil {
		t.Fatal(err)
	}
	send(a, evs[:10])
	b, err := e.client.PublishBuildToolEventStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send(b, evs[5:50])
	cancelA()
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(e.log.String(), "stream "+key+": connection from") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(e.log.String(), "stream "+key+": connection from") {
		t.Fatalf("call A's end is not logged:\n%s", e.log.String())
	}
	if strings.Contains(e.log.String(), "stream "+key+" let go") {
		t.Errorf("call A let go the stream call B holds:\n%s", e.log.String())
	}
	if n := e.pub.OpenStreams(); n != 1 {
		t.Errorf("%d streams open while call B holds one, want 1", n)
	}
	send(b, evs[50:])
	if err := b.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Recv(); err != io.EOF {
		t.Fatalf("call B's end: %v", err)
	}
	checkStored(t, e, key, encodings(t, evs))
	if n := e.pub.OpenStreams(); n != 0 {
		t.Errorf("%d streams open after every call ended, want 0", n)
	}
}

// TestOpenStreamCaps: a new stream over MaxOpenStreams, or over
// MaxOpenStreamsPerClient for its client, is refused with
// ResourceExhausted naming the flag; once a stream finishes there is room
// again, and a stream already open is never refused for the cap.
func TestOpenStreamCaps(t *testing.T) {
	base := toolEvents(t)
	for _, tc := range []struct {
		opts Options
		flag string
	}{
		{Options{MaxOpenStreams: 3}, "--max-open-streams)"},
		{Options{MaxOpenStreamsPerClient: 3}, "--max-open-streams-per-client"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			e := newEnv(t, "", tc.opts)
			for i := range 3 {
				abandon(t, e.client, renamed(base, fmt.Sprintf("cap-%d", i)), 2)
			}
			_, err := publish(t, e.client, renamed(base, "cap-3"))
			wantStatus(t, err, codes.ResourceExhausted, tc.flag)
			// An open stream continues.
			if acks, err := publish(t, e.client, renamed(base, "cap-0")[2:]); err != nil || len(acks) != 104 {
				t.Fatalf("an open stream over the cap: %d acks, %v", len(acks), err)
			}
			// It finished: room for one more.
			if acks, err := publish(t, e.client, renamed(base, "cap-3")); err != nil || len(acks) != 106 {
				t.Fatalf("after a stream finished: %d acks, %v", len(acks), err)
			}
		})
	}
}

// progressPayload is BuildEvent{id: {progress: {opaque_count: n}},
// progress: {stderr: stderr}}, with stderr's bytes as they are.
func progressPayload(n uint64, stderr []byte) []byte {
	var id, prog, ev []byte
	id = protowire.AppendTag(id, 1, protowire.VarintType)
	id = protowire.AppendVarint(id, n)
	ev = protowire.AppendTag(ev, 1, protowire.BytesType)
	ev = protowire.AppendBytes(ev, protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), id))
	prog = protowire.AppendTag(prog, 2, protowire.BytesType)
	prog = protowire.AppendBytes(prog, stderr)
	ev = protowire.AppendTag(ev, 3, protowire.BytesType)
	return protowire.AppendBytes(ev, prog)
}

// TestMalformedPayloads: a Bazel payload that is not well-formed protobuf
// is refused with InvalidArgument, on both methods, and nothing of it is
// stored; a Progress event whose stderr is not UTF-8, as Bazel sends it
// (bazelbuild/bazel#11125), is accepted and stored byte for byte. It
// failed when any payload bytes were accepted.
func TestMalformedPayloads(t *testing.T) {
	e := newEnv(t, "", Options{})
	ctx := context.Background()
	base := toolEvents(t)
	withPayload := func(inv string, p []byte) *buildpb.OrderedBuildEvent {
		ev := renamed(base[:1], inv)[0]
		ev.Event.GetBazelEvent().Value = p
		return ev
	}
	good := progressPayload(1, []byte("ok\n"))
	cutNested := good[:len(good)-2]                                                           // progress cut short
	badTop := []byte{0x0a, 0x7f, 0x01}                                                        // id of 127 bytes, 1 there
	wrongType := protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 7) // progress as a varint
	for _, tc := range []struct {
		name string
		p    []byte
	}{{"nested message cut short", cutNested}, {"top level cut short", badTop}, {"wrong wire type", wrongType}} {
		if d, err := bepfile.CheckBuildEvent(tc.p); err == nil && len(d.Corrupt) == 0 {
			t.Fatalf("%s: bepfile finds the payload sound", tc.name)
		}
		ev := withPayload("bad-"+strings.ReplaceAll(tc.name, " ", "-"), tc.p)
		_, err := publish(t, e.client, []*buildpb.OrderedBuildEvent{ev})
		wantStatus(t, err, codes.InvalidArgument, "bazel_event is not a well-formed build_event_stream.BuildEvent")
		_, err = e.client.PublishLifecycleEvent(ctx, &buildpb.PublishLifecycleEventRequest{BuildEvent: ev})
		wantStatus(t, err, codes.InvalidArgument, "not a well-formed")
		if ents, err := e.disk.Lookup(ctx, store.Key(ev.GetStreamId())); err == nil {
			t.Errorf("%s: stored: %+v", tc.name, ents[0])
		}
	}
	// What Bazel sends: a terminal's bytes in stderr.
	stderr := []byte("gcc: \xff\xfe caf\xe9\n")
	evs := renamed(base, "utf8")
	evs[1].Event.GetBazelEvent().Value = progressPayload(1, stderr)
	if d, _ := bepfile.CheckBuildEvent(evs[1].Event.GetBazelEvent().Value); len(d.Repaired) == 0 {
		t.Fatal("the stderr is not taken for invalid UTF-8")
	}
	if acks, err := publish(t, e.client, evs); err != nil || len(acks) != 106 {
		t.Fatalf("invalid UTF-8 in stderr: %d acks, %v", len(acks), err)
	}
	_, disk := storedBytes(t, e, store.Key(evs[0].GetStreamId()))
	if want, _ := proto.Marshal(evs[1]); len(disk) != 106 || !bytes.Equal(disk[1], want) || !bytes.Contains(disk[1], stderr) {
		t.Errorf("the event with invalid UTF-8 is not stored byte for byte")
	}
}

// TestRefusedAuthLogged: refused calls are logged, the first at once and
// then one line per LogEvery counting those in between, so that a client
// trying tokens cannot flood the log; no token appears in it.
func TestRefusedAuthLogged(t *testing.T) {
	auth, err := NewTokenAuth("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	log := &lockedBuffer{}
	clk := &clock{now: time.Unix(1e9, 0)}
	auth.Log, auth.now = log, clk.Now
	e := newFaultEnv(t, Options{}, auth.ServerOptions()...)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer guess")
	for range 100 {
		if _, err := e.query.QueryEventStreams(ctx, &buildgridpb.QueryEventStreamsRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("a wrong token: %v", err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "refused (Unauthenticated): a call from ") || !strings.Contains(lines[0], "invalid bearer token") {
		t.Fatalf("after 100 refusals in a moment, the log is:\n%s", log.String())
	}
	clk.Add(DefaultAuthLogEvery)
	e.client.PublishLifecycleEvent(context.Background(), lifecycleRequests(t)[0]) // no token at all
	lines = strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "100 calls since 2001-09-09T01:46:40Z") || !strings.Contains(lines[1], "missing authorization") {
		t.Errorf("ten seconds later, the log is:\n%s", log.String())
	}
	if strings.Contains(log.String(), "guess") {
		t.Error("a token appears in the log")
	}
}

// TestConnsPerClient: a client over LimitConnsPerClient's cap has its
// connection closed at once, and logged; a connection closed gives its
// place back.
func TestConnsPerClient(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := &lockedBuffer{}
	lis := LimitConnsPerClient(inner, 3, log)
	defer lis.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// closed reports whether the server closed c (a read sees EOF or a
	// reset rather than a timeout).
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	var mine, theirs []net.Conn
	for range 3 {
		mine = append(mine, dial())
		theirs = append(theirs, <-accepted)
	}
	over := dial()
	if !closed(over) {
		t.Error("the fourth connection of a client with a cap of 3 was kept open")
	}
	if !strings.Contains(log.String(), "refused 1 connection(s), the last from 127.0.0.1: 3 connections open from it") {
		t.Errorf("log: %q", log.String())
	}
	for _, c := range mine {
		if closed(c) {
			t.Error("a connection under the cap was closed")
		}
	}
	// The server ends one of the three (as gRPC does when its client
	// goes): room for another.
	theirs[0].Close()
	theirs[0].Close() // a second Close gives back nothing more
	again := dial()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no room after a connection closed")
	}
	if closed(again) {
		t.Error("the connection after one closed was closed")
	}
	if over2 := dial(); !closed(over2) {
		t.Error("a fourth connection again was kept open")
	}
}
