package server

// BenchmarkServe16 measures the target of issue 5: with 16 concurrent
// streams, `bes serve` sustains at least half the events per second of a
// do-nothing gRPC server that only acknowledges, with every event
// persisted.
//
//	go test ./store/server -run '^$' -bench Serve16 -benchtime 5x
//
// Both sub-benchmarks serve over a real loopback TCP listener with the
// gRPC server options of `bes serve` (GRPCOptions):
//
//   - bes: the publish server with the local persister on a store in a
//     temporary directory (each batch of events written and fsynced before
//     it is acknowledged), and the index flushed every second, as `bes
//     serve` runs it;
//   - ackonly: a server that acknowledges every request as it reads it and
//     stores nothing.
//
// Each iteration streams 16 generated invocations (package bepgen, a few
// thousand events each) at once, one PublishBuildToolEventStream call per
// stream over its own connection, with a sliding window of unacknowledged
// events (bepfile/publish.DefaultWindow) and acknowledgements read
// concurrently, and waits for every acknowledgement. Every iteration uses
// fresh stream ids, so the bes server stores every event each time; after
// the loop every stream is read back from a freshly opened store and
// compared, event by event, with what was sent. The requests are built
// before the clock runs, so the client's own cost is only gRPC's.
// events/s counts the events acknowledged per second of the timed phase;
// us/fsync (bes) is the disk's fsync latency measured after the loop,
// since the bes figure moves with it on a shared virtual disk.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepgen"
	"github.com/bes-cli/bes/bepfile/besclient"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/local"
)

const (
	benchStreams = 16
	// benchTargets is the targets of each generated invocation: about
	// 3,000 events.
	benchTargets = 400
)

// ackOnlyServer is the baseline: it acknowledges every event as soon as it
// has read it and keeps nothing.
type ackOnlyServer struct {
	buildpb.UnimplementedPublishBuildEventServer
}

func (ackOnlyServer) PublishLifecycleEvent(context.Context, *buildpb.PublishLifecycleEventRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (ackOnlyServer) PublishBuildToolEventStream(call buildpb.PublishBuildEvent_PublishBuildToolEventStreamServer) error {
	for {
		req, err := call.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		obe := req.GetOrderedBuildEvent()
		if err := call.Send(&buildpb.PublishBuildToolEventStreamResponse{StreamId: obe.GetStreamId(), SequenceNumber: obe.GetSequenceNumber()}); err != nil {
			return err
		}
	}
}

// benchEvents generates the events of benchStreams invocations, as Bazel
// sends them on its tool streams (the last is component_stream_finished).
// Only the BuildEvents are kept; each iteration gives them fresh ids.
func benchEvents(b *testing.B) [][]*buildpb.BuildEvent {
	b.Helper()
	var buf bytes.Buffer
	if _, err := bepgen.WriteOBE(&buf, bepgen.CaptureConfig{Seed: 5, Streams: benchStreams, MinTargets: benchTargets, MaxTargets: benchTargets}); err != nil {
		b.Fatal(err)
	}
	byKey := map[string]int{}
	var out [][]*buildpb.BuildEvent
	for data := buf.Bytes(); len(data) > 0; {
		v, n := protowire.ConsumeBytes(data)
		if n < 0 {
			b.Fatal("bad OBE capture")
		}
		data = data[n:]
		obe := &buildpb.OrderedBuildEvent{}
		if err := proto.Unmarshal(v, obe); err != nil {
			b.Fatal(err)
		}
		k := store.Key(obe.GetStreamId())
		i, ok := byKey[k]
		if !ok {
			i = len(out)
			byKey[k] = i
			out = append(out, nil)
		}
		if int64(len(out[i])+1) != obe.GetSequenceNumber() {
			b.Fatalf("stream %s: sequence number %d after %d events", k, obe.GetSequenceNumber(), len(out[i]))
		}
		out[i] = append(out[i], obe.GetEvent())
	}
	if len(out) != benchStreams {
		b.Fatalf("%d streams generated, want %d", len(out), benchStreams)
	}
	return out
}

// benchStream is one stream of one iteration: its key and its requests.
type benchStream struct {
	key  string
	reqs []*buildpb.PublishBuildToolEventStreamRequest
}

// makeStreams builds the requests of one iteration, with stream ids that
// no other iteration uses.
func makeStreams(evs [][]*buildpb.BuildEvent, iter int) []benchStream {
	out := make([]benchStream, len(evs))
	for i, es := range evs {
		id := &buildpb.StreamId{
			BuildId:      fmt.Sprintf("00000000-0000-4000-8000-%06d%06d", iter, i),
			InvocationId: fmt.Sprintf("11111111-0000-4000-8000-%06d%06d", iter, i),
			Component:    buildpb.StreamId_TOOL,
		}
		reqs := make([]*buildpb.PublishBuildToolEventStreamRequest, len(es))
		for j, ev := range es {
			reqs[j] = &buildpb.PublishBuildToolEventStreamRequest{
				OrderedBuildEvent: &buildpb.OrderedBuildEvent{StreamId: id, SequenceNumber: int64(j + 1), Event: ev},
				ProjectId:         "bench",
			}
		}
		reqs[0].NotificationKeywords = []string{"command_name=test", "protocol_name=BEP"}
		out[i] = benchStream{key: store.Key(id), reqs: reqs}
	}
	return out
}

// sendStream publishes one stream in one call as Bazel's client does:
// events go out while acknowledgements are read concurrently, with at most
// window events unacknowledged. It returns once every event is
// acknowledged, in order, and the server ended the call OK.
func sendStream(ctx context.Context, c buildpb.PublishBuildEventClient, s benchStream, window int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	call, err := c.PublishBuildToolEventStream(ctx)
	if err != nil {
		return err
	}
	slots := make(chan struct{}, window)
	recvDone := make(chan error, 1)
	go func() {
		err := func() error {
			for i := range s.reqs {
				resp, err := call.Recv()
				if err != nil {
					return fmt.Errorf("stream %s: after %d acks: %w", s.key, i, err)
				}
				if resp.GetSequenceNumber() != int64(i+1) {
					return fmt.Errorf("stream %s: ack for sequence number %d, want %d", s.key, resp.GetSequenceNumber(), i+1)
				}
				<-slots
			}
			if _, err := call.Recv(); err != io.EOF {
				return fmt.Errorf("stream %s: after the last ack: %v, want the end of the call", s.key, err)
			}
			return nil
		}()
		if err != nil {
			cancel()
		}
		recvDone <- err
	}()
	for _, r := range s.reqs {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return <-recvDone
		}
		if err := call.Send(r); err != nil {
			break // the status comes from Recv
		}
	}
	if err := call.CloseSend(); err != nil {
		cancel()
		<-recvDone
		return err
	}
	return <-recvDone
}

// benchServer serves one PublishBuildEventServer on a loopback TCP port.
type benchServer struct {
	gs      *grpc.Server
	clients []buildpb.PublishBuildEventClient
	conns   []*grpc.ClientConn
}

func startBenchServer(b *testing.B, srv buildpb.PublishBuildEventServer) *benchServer {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	// The options of `bes serve`, without TLS or token.
	gs := grpc.NewServer(GRPCOptions(bepfile.DefaultMaxEventSize)...)
	buildpb.RegisterPublishBuildEventServer(gs, srv)
	go gs.Serve(lis)
	bs := &benchServer{gs: gs}
	// One connection per client, as 16 Bazel processes would have.
	for range benchStreams {
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		bs.conns = append(bs.conns, cc)
		bs.clients = append(bs.clients, buildpb.NewPublishBuildEventClient(cc))
	}
	return bs
}

func (bs *benchServer) stop() {
	for _, cc := range bs.conns {
		cc.Close()
	}
	bs.gs.Stop()
}

// runServe16 runs the benchmark loop against bs and returns the streams
// sent, for verification.
func runServe16(b *testing.B, bs *benchServer, evs [][]*buildpb.BuildEvent) [][]benchStream {
	var sent [][]benchStream
	var elapsed time.Duration
	events := 0
	b.ResetTimer()
	for iter := 0; iter < b.N; iter++ {
		b.StopTimer()
		streams := makeStreams(evs, iter)
		sent = append(sent, streams)
		errs := make([]error, len(streams))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range streams {
			wg.Go(func() {
				<-start
				errs[i] = sendStream(context.Background(), bs.clients[i], streams[i], besclient.DefaultWindow)
			})
		}
		b.StartTimer()
		t0 := time.Now()
		close(start)
		wg.Wait()
		elapsed += time.Since(t0)
		b.StopTimer()
		if err := errors.Join(errs...); err != nil {
			b.Fatal(err)
		}
		for _, s := range streams {
			events += len(s.reqs)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
	return sent
}

// verifyStored checks that a store holds every stream sent, complete and
// event for event as sent.
func verifyStored(b *testing.B, dir string, sent [][]benchStream) {
	b.Helper()
	ctx := context.Background()
	st, err := local.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	entries := map[string]*local.Entry{}
	if err := st.List(ctx, func(e *local.Entry) error { entries[e.Key] = e; return nil }); err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, streams := range sent {
		for _, s := range streams {
			n++
			e := entries[s.key]
			if e == nil {
				b.Fatalf("stream %s is not stored", s.key)
			}
			if e.Events != int64(len(s.reqs)) || !e.Complete {
				b.Fatalf("stream %s: index entry has %d events (complete %v), want %d (complete)", s.key, e.Events, e.Complete, len(s.reqs))
			}
			i := 0
			var scratch []byte
			err := st.Events(ctx, e, func(info *bepfile.Stream, ev *bepfile.Event) error {
				if i >= len(s.reqs) {
					return fmt.Errorf("more than the %d events sent", len(s.reqs))
				}
				want, err := proto.Marshal(s.reqs[i].GetOrderedBuildEvent())
				if err != nil {
					return err
				}
				scratch = ev.AppendEncoding(scratch[:0], info)
				if !bytes.Equal(scratch, want) {
					return fmt.Errorf("event %d (sequence number %d) differs from the one sent", i, ev.Seq)
				}
				i++
				return nil
			})
			if err == nil && i != len(s.reqs) {
				err = fmt.Errorf("%d events in the stream file, want %d", i, len(s.reqs))
			}
			if err != nil {
				b.Fatalf("stream %s: %v", s.key, err)
			}
		}
	}
	if len(entries) != n {
		b.Fatalf("%d streams stored, want %d", len(entries), n)
	}
}

// fsyncLatency measures the disk under dir: the mean time of an fsync
// after a 4 KiB append, which bounds how fast a stream's batches can be
// made durable. It varies a lot on a shared virtual disk, so it is
// reported beside the bes figures.
func fsyncLatency(b *testing.B, dir string) time.Duration {
	b.Helper()
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	const n = 50
	buf := make([]byte, 4096)
	var total time.Duration
	for range n {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		total += time.Since(t0)
	}
	return total / n
}

func BenchmarkServe16(b *testing.B) {
	evs := benchEvents(b)
	// The baseline first: run after the bes server, it would share the
	// machine with the writeback of what that one wrote, and look slower.
	b.Run("ackonly", func(b *testing.B) {
		bs := startBenchServer(b, ackOnlyServer{})
		defer bs.stop()
		runServe16(b, bs, evs)
	})
	b.Run("bes", func(b *testing.B) {
		dir := b.TempDir()
		disk, err := local.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		pub := NewPublishBuildEventServer(disk, Options{
			MaxEventSize: bepfile.DefaultMaxEventSize,
			Persister:    NewBackendPersister(disk, "grpc", 0),
			Log:          io.Discard,
		})
		bs := startBenchServer(b, pub)
		// bes serve brings the index of open streams up to date every
		// second.
		stopFlush := make(chan struct{})
		flushed := make(chan struct{})
		go func() {
			defer close(flushed)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stopFlush:
					return
				case <-tick.C:
					if err := pub.Flush(context.Background()); err != nil {
						b.Error(err)
					}
				}
			}
		}()
		sent := runServe16(b, bs, evs)
		b.ReportMetric(float64(fsyncLatency(b, dir).Microseconds()), "us/fsync")
		close(stopFlush)
		<-flushed
		bs.stop()
		if err := pub.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		verifyStored(b, dir, sent)
	})
}
