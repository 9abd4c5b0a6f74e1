package besclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
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
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bes-cli/bes/bepfile"
)

// readStreams reads a testdata file as the commands do.
func readStreams(t testing.TB, opts bepfile.Options, names ...string) []*Stream {
	t.Helper()
	var out []*Stream
	byKey := map[string]*Stream{}
	for _, name := range names {
		r, err := bepfile.Open(filepath.Join("..", "..", "testdata", name), opts)
		if err != nil {
			t.Fatal(err)
		}
		for {
			st, ev, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			s := byKey[st.Key]
			if s == nil {
				s = &Stream{Info: st}
				byKey[st.Key] = s
				out = append(out, s)
			}
			s.Events = append(s.Events, *ev)
		}
		r.Close()
	}
	return out
}

// call is one request the fake server received.
type call struct {
	lifecycle bool
	key       string
	seq       int64
	obe       []byte
	keywords  []string
	project   string
	md        metadata.MD
}

// fakeBES records what it receives and acknowledges it, with failures a
// test injects through hooks.
type fakeBES struct {
	buildpb.UnimplementedPublishBuildEventServer
	mu    sync.Mutex
	calls []call
	// toolCalls counts PublishBuildToolEventStream calls.
	toolCalls int
	// breakAfter, if set, is called with the number of the call (from 1)
	// and returns after how many acks the call fails with Unavailable
	// (-1: never).
	breakAfter func(n int) int
	// fail, if set, is the status every tool call ends with at once.
	fail error
	// ackSeq, if set, changes the sequence number of an ack.
	ackSeq func(seq int64) int64
	// maxInFlight is the most events received and not acknowledged.
	maxInFlight int
	ackDelay    time.Duration
}

func (f *fakeBES) record(lifecycle bool, obe *buildpb.OrderedBuildEvent, kw []string, project string, md metadata.MD) {
	b, _ := proto.Marshal(obe)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{lifecycle, bepfile.Key(obe.GetStreamId()), obe.GetSequenceNumber(), b, kw, project, md})
}

func (f *fakeBES) PublishLifecycleEvent(ctx context.Context, r *buildpb.PublishLifecycleEventRequest) (*emptypb.Empty, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.record(true, r.GetBuildEvent(), r.GetNotificationKeywords(), r.GetProjectId(), md)
	return &emptypb.Empty{}, nil
}

func (f *fakeBES) PublishBuildToolEventStream(s buildpb.PublishBuildEvent_PublishBuildToolEventStreamServer) error {
	f.mu.Lock()
	f.toolCalls++
	n := f.toolCalls
	f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	limit := -1
	if f.breakAfter != nil {
		limit = f.breakAfter(n)
	}
	md, _ := metadata.FromIncomingContext(s.Context())
	type ack struct {
		id  *buildpb.StreamId
		seq int64
	}
	acks := make(chan ack, 1<<16)
	errc := make(chan error, 1)
	inFlight := 0
	var mu sync.Mutex
	go func() {
		sent := 0
		for a := range acks {
			if limit >= 0 && sent == limit {
				errc <- status.Error(codes.Unavailable, "connection reset")
				return
			}
			time.Sleep(f.ackDelay)
			seq := a.seq
			if f.ackSeq != nil {
				seq = f.ackSeq(seq)
			}
			mu.Lock()
			inFlight--
			mu.Unlock()
			if err := s.Send(&buildpb.PublishBuildToolEventStreamResponse{StreamId: a.id, SequenceNumber: seq}); err != nil {
				errc <- err
				return
			}
			sent++
		}
		errc <- nil
	}()
	for {
		r, err := s.Recv()
		if err == io.EOF {
			close(acks)
			return <-errc
		}
		if err != nil {
			return err
		}
		obe := r.GetOrderedBuildEvent()
		f.record(false, obe, r.GetNotificationKeywords(), r.GetProjectId(), md)
		mu.Lock()
		inFlight++
		f.mu.Lock()
		f.maxInFlight = max(f.maxInFlight, inFlight)
		f.mu.Unlock()
		mu.Unlock()
		select {
		case acks <- ack{obe.GetStreamId(), obe.GetSequenceNumber()}:
		case err := <-errc:
			return err
		}
	}
}

func (f *fakeBES) snapshot() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func startFake(t *testing.T, f *fakeBES) buildpb.PublishBuildEventClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	buildpb.RegisterPublishBuildEventServer(gs, f)
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
	})
	return buildpb.NewPublishBuildEventClient(cc)
}

// summary renders the calls as "L key seq" / "T key seq" lines, runs of
// tool events folded.
func summary(calls []call) []string {
	var out []string
	for i := 0; i < len(calls); i++ {
		c := calls[i]
		if c.lifecycle {
			out = append(out, fmt.Sprintf("L %s %d", c.key, c.seq))
			continue
		}
		j := i
		for j+1 < len(calls) && !calls[j+1].lifecycle && calls[j+1].key == c.key && calls[j+1].seq == calls[j].seq+1 {
			j++
		}
		out = append(out, fmt.Sprintf("T %s %d..%d", c.key, c.seq, calls[j].seq))
		i = j
	}
	return out
}

func fast(o Options) Options {
	o.Backoff, o.MaxBackoff = time.Millisecond, 4*time.Millisecond
	return o
}

// A Bazel file with --lifecycle: lifecycle events made as Bazel makes them,
// in Bazel's order, with its keywords and the project id.
func TestPublishSynthesizedLifecycle(t *testing.T) {
	f := &fakeBES{}
	c := startFake(t, f)
	streams := readStreams(t, bepfile.Options{BuildID: "build-1"}, "test_mixed.bep")
	p := New(c, fast(Options{Lifecycle: true, ProjectID: "proj", Keywords: []string{"ci=nightly"}, Metadata: metadata.Pairs("authorization", "Bearer t0ken")}))
	res, err := p.Publish(context.Background(), streams)
	if err != nil {
		t.Fatal(err)
	}
	inv := streams[0].Info.ID.GetInvocationId()
	wantSummary := []string{
		"L build-1.1. 1",
		"L build-1.1." + inv + " 1",
		"T build-1.3." + inv + " 1..106",
		"L build-1.1." + inv + " 2",
		"L build-1.1. 2",
	}
	calls := f.snapshot()
	if got := summary(calls); !slices.Equal(got, wantSummary) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantSummary, "\n"))
	}
	var kinds []string
	for _, r := range res {
		if !r.OK() || r.Attempts == 0 {
			t.Errorf("result %+v", r)
		}
		kinds = append(kinds, fmt.Sprintf("%s %s %v %d/%d", r.Key, r.Kind, r.Synthesized, r.Acked, r.Events))
	}
	wantKinds := []string{"build-1.1. lifecycle true 2/2", "build-1.1." + inv + " lifecycle true 2/2", "build-1.3." + inv + " tool false 106/106"}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("results %v, want %v", kinds, wantKinds)
	}
	for i, c := range calls {
		if c.project != "proj" {
			t.Errorf("call %d: project %q", i, c.project)
		}
		if got := c.md.Get("authorization"); !slices.Equal(got, []string{"Bearer t0ken"}) {
			t.Errorf("call %d: authorization %v", i, got)
		}
		wantKW := []string(nil)
		if !c.lifecycle && c.seq == 1 {
			wantKW = []string{"command_name=test", "protocol_name=BEP", "ci=nightly"}
		}
		if !slices.Equal(c.keywords, wantKW) {
			t.Errorf("call %d (seq %d): keywords %q, want %q", i, c.seq, c.keywords, wantKW)
		}
	}
	// The lifecycle events: Bazel's messages, the tool stream's times, the
	// result of exit code 3.
	first := &buildpb.OrderedBuildEvent{}
	proto.Unmarshal(calls[0].obe, first)
	if first.GetEvent().GetBuildEnqueued() == nil || first.GetStreamId().GetComponent() != buildpb.StreamId_CONTROLLER || first.GetEvent().GetEventTime() == nil {
		t.Errorf("first lifecycle event: %v", first)
	}
	last := &buildpb.OrderedBuildEvent{}
	proto.Unmarshal(calls[len(calls)-1].obe, last)
	if got := last.GetEvent().GetBuildFinished().GetStatus().GetResult(); got != buildpb.BuildStatus_COMMAND_FAILED {
		t.Errorf("build_finished result %v, want COMMAND_FAILED", got)
	}
	started := &buildpb.OrderedBuildEvent{}
	proto.Unmarshal(calls[1].obe, started)
	if started.GetEvent().GetInvocationAttemptStarted().GetAttemptNumber() != 1 {
		t.Errorf("invocation_attempt_started: %v", started)
	}
	// The tool events are the file's, byte for byte.
	for i, c := range calls[2:108] {
		want := streams[0].Events[i].AppendEncoding(nil, streams[0].Info)
		if !bytes.Equal(c.obe, want) {
			t.Fatalf("tool event %d differs from the file's", i+1)
		}
	}
}

// Recorded lifecycle events are sent as they are, in Bazel's order, and
// none are made for a stream that has them.
func TestPublishRecorded(t *testing.T) {
	f := &fakeBES{}
	c := startFake(t, f)
	streams := readStreams(t, bepfile.Options{}, "bes_test_mixed.lifecycle.obe", "bes_test_mixed.obe")
	res, err := New(c, fast(Options{Lifecycle: true})).Publish(context.Background(), streams)
	if err != nil {
		t.Fatal(err)
	}
	const b, i = "0fff9624-6330-4348-b7e6-0d35256338b9", "8b58a6b7-1857-43e5-b701-ebbabc33fc5c"
	want := []string{"L " + b + ".1. 1", "L " + b + ".1." + i + " 1", "T " + b + ".3." + i + " 1..106", "L " + b + ".1." + i + " 2", "L " + b + ".1. 2"}
	calls := f.snapshot()
	if got := summary(calls); !slices.Equal(got, want) {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range res {
		if r.Synthesized || !r.OK() {
			t.Errorf("result %+v", r)
		}
	}
	// The recorded project id is kept; the tool stream's first request
	// gets Bazel's keywords.
	if calls[0].project != "bepcorpus" || calls[2].project != "" || !slices.Equal(calls[2].keywords, []string{"command_name=test", "protocol_name=BEP"}) {
		t.Errorf("project ids %q %q, keywords %q", calls[0].project, calls[2].project, calls[2].keywords)
	}
}

// A call that breaks is followed by one that re-sends from the first event
// not acknowledged; each event arrives at least once, and the server sees
// them in order within each call.
func TestPublishRetry(t *testing.T) {
	streams := readStreams(t, bepfile.Options{}, "bes_test_mixed.obe")
	for _, breaks := range [][]int{{30}, {0, 10, 0, 50}, {105}} {
		t.Run(fmt.Sprint(breaks), func(t *testing.T) {
			f := &fakeBES{breakAfter: func(n int) int {
				if n <= len(breaks) {
					return breaks[n-1]
				}
				return -1
			}}
			c := startFake(t, f)
			var log bytes.Buffer
			res, err := New(c, fast(Options{Log: &log})).Publish(context.Background(), streams)
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if !r.OK() || r.Attempts != len(breaks)+1 || r.Acked != 106 || r.Sent != 106 {
				t.Fatalf("result %+v (log %s)", r, log.String())
			}
			// The last call starts at the first event not acknowledged.
			calls := f.snapshot()
			acked := 0
			for _, b := range breaks {
				acked += b
			}
			lastCall := calls[len(calls)-(106-acked):]
			if lastCall[0].seq != int64(acked+1) {
				t.Errorf("the last call starts at %d, want %d", lastCall[0].seq, acked+1)
			}
			// Some re-sent requests may have been in flight when a call
			// broke, never seen by the server.
			if r.Resent < len(calls)-106 {
				t.Errorf("Resent %d, but the server saw %d requests repeat an event", r.Resent, len(calls)-106)
			}
			if strings.Count(log.String(), "retrying in") != len(breaks) {
				t.Errorf("log:\n%s", log.String())
			}
		})
	}
}

func TestPublishGivesUp(t *testing.T) {
	streams := readStreams(t, bepfile.Options{}, "build_ok.bep")
	for _, tc := range []struct {
		name     string
		f        *fakeBES
		retries  int
		attempts int
		msg      string
	}{
		{"unavailable", &fakeBES{fail: status.Error(codes.Unavailable, "down")}, 3, 4, "giving up after 4 attempts: rpc error: code = Unavailable desc = down"},
		{"no retries", &fakeBES{fail: status.Error(codes.Unavailable, "down")}, -1, 1, "giving up after 1 attempts"},
		{"failed precondition", &fakeBES{fail: status.Error(codes.FailedPrecondition, "got sequence number 7, want 5")}, 3, 1, "want 5"},
		{"invalid argument", &fakeBES{fail: status.Error(codes.InvalidArgument, "bad")}, 3, 1, "bad"},
		{"wrong ack", &fakeBES{ackSeq: func(s int64) int64 { return s + 1 }}, 3, 1, "server acknowledged sequence number 2, want 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startFake(t, tc.f)
			res, err := New(c, fast(Options{Retries: tc.retries})).Publish(context.Background(), streams)
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if r.OK() || r.Attempts != tc.attempts || r.Err == nil || !strings.Contains(r.Err.Error(), tc.msg) {
				t.Errorf("result %+v, want %d attempts and an error containing %q", r, tc.attempts, tc.msg)
			}
			if tc.name == "wrong ack" && !errors.Is(r.Err, errProtocol) {
				t.Errorf("wrong ack: %v is not a protocol error", r.Err)
			}
		})
	}
}

func TestPublishWindow(t *testing.T) {
	f := &fakeBES{ackDelay: 200 * time.Microsecond}
	c := startFake(t, f)
	streams := readStreams(t, bepfile.Options{}, "bes_test_mixed.obe")
	res, err := New(c, Options{Window: 5}).Publish(context.Background(), streams)
	if err != nil || !res[0].OK() {
		t.Fatalf("%+v, %v", res, err)
	}
	if f.maxInFlight > 5 || f.maxInFlight < 1 {
		t.Errorf("%d events were in flight at once; the window is 5", f.maxInFlight)
	}
}

func TestPublishOverride(t *testing.T) {
	f := &fakeBES{}
	c := startFake(t, f)
	streams := readStreams(t, bepfile.Options{}, "bes_test_mixed.obe", "bes_test_mixed.lifecycle.obe")
	res, err := New(c, fast(Options{BuildID: "B", InvocationID: "I"})).Publish(context.Background(), streams)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"L B.1. 1", "L B.1.I 1", "T B.3.I 1..106", "L B.1.I 2", "L B.1. 2"}
	if got := summary(f.snapshot()); !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	for _, r := range res {
		if !r.OK() {
			t.Errorf("%+v", r)
		}
	}
	// Everything but the stream id is the file's.
	calls := f.snapshot()
	orig := streams[0].Events[5].AppendEncoding(nil, streams[0].Info)
	o, g := &buildpb.OrderedBuildEvent{}, &buildpb.OrderedBuildEvent{}
	proto.Unmarshal(orig, o)
	proto.Unmarshal(calls[2+5].obe, g)
	o.StreamId = &buildpb.StreamId{BuildId: "B", InvocationId: "I", Component: buildpb.StreamId_TOOL}
	if !proto.Equal(o, g) {
		t.Errorf("event 6 after the override: %v, want %v", g, o)
	}

	two := readStreams(t, bepfile.Options{}, "build_ok.bep", "test_mixed.bep")
	if _, err := New(c, Options{InvocationID: "I"}).Publish(context.Background(), two); !errors.Is(err, ErrInvocationOverride) {
		t.Errorf("invocation override of two invocations: %v", err)
	}
}

// TestPublishTLSToPlaintext: an address without a scheme is grpcs://, as for
// Bazel's --bes_backend; against a plaintext server (a bes serve without
// TLS) the handshake fails the same way on every try, so the stream fails
// after one attempt, and its error says to give grpc://HOST:PORT.
func TestPublishTLSToPlaintext(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	buildpb.RegisterPublishBuildEventServer(gs, &fakeBES{})
	go gs.Serve(lis)
	defer gs.Stop()
	cc, err := Dial(lis.Addr().String(), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	streams := readStreams(t, bepfile.Options{}, "build_ok.bep")
	res, err := New(buildpb.NewPublishBuildEventClient(cc), fast(Options{Retries: 3})).Publish(context.Background(), streams)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.OK() || r.Attempts != 1 || r.Err == nil || !strings.Contains(r.Err.Error(), "give grpc://HOST:PORT") {
			t.Errorf("result %+v: want 1 attempt and an error naming grpc://HOST:PORT", r)
		}
	}
}
