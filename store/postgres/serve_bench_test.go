package postgres

// BenchmarkServeTeam measures `bes serve`'s events per second on the team
// store (issue 14) beside the local store and a server that only
// acknowledges, in one run:
//
//	eval "$(testdata/services/start.sh)"
//	go test ./store/postgres -run '^$' -bench ServeTeam -benchtime 3x
//
// Each iteration publishes 16 generated invocations (bepgen, 400 targets,
// about 3,000 events each) at once, one PublishBuildToolEventStream call
// per stream over its own connection, with bes replay's client
// (bepfile/besclient: a window of unacknowledged events, acknowledgements
// read concurrently), under fresh build ids, and waits for every
// acknowledgement. The servers are bes serve's publish server with the
// gRPC options of bes serve (store/server.GRPCOptions), on:
//
//   - ackonly: nothing stored, every event acknowledged as read;
//   - local: a store directory (each batch written and fsynced);
//   - team-file: PostgreSQL + blobs in a directory (each batch a blob,
//     fsynced, and a transaction);
//   - team-s3: PostgreSQL + versitygw on loopback (each batch a PUT and a
//     transaction).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepgen"
	"github.com/bes-cli/bes/bepfile/besclient"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/local"
	"github.com/bes-cli/bes/store/server"
)

type ackOnly struct {
	buildpb.UnimplementedPublishBuildEventServer
}

func (ackOnly) PublishLifecycleEvent(context.Context, *buildpb.PublishLifecycleEventRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (ackOnly) PublishBuildToolEventStream(call buildpb.PublishBuildEvent_PublishBuildToolEventStreamServer) error {
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

// benchTools returns the tool streams of 16 generated invocations.
func benchTools(b *testing.B) ([]*besclient.Stream, int) {
	var buf bytes.Buffer
	if _, err := bepgen.WriteOBE(&buf, bepgen.CaptureConfig{Seed: 5, Streams: 16, MinTargets: 400, MaxTargets: 400}); err != nil {
		b.Fatal(err)
	}
	r, err := bepfile.NewReader(&buf, "capture.obe", bepfile.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	byStream := map[*bepfile.Stream]*besclient.Stream{}
	var out []*besclient.Stream
	n := 0
	for {
		st, ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if st.ID.GetComponent() != buildpb.StreamId_TOOL {
			continue
		}
		s := byStream[st]
		if s == nil {
			s = &besclient.Stream{Info: st}
			byStream[st] = s
			out = append(out, s)
		}
		s.Events = append(s.Events, *ev)
		n++
	}
	return out, n
}

func BenchmarkServeTeam(b *testing.B) {
	tools, events := benchTools(b)
	run := func(b *testing.B, srv buildpb.PublishBuildEventServer) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		gs := grpc.NewServer(server.GRPCOptions(bepfile.DefaultMaxEventSize)...)
		buildpb.RegisterPublishBuildEventServer(gs, srv)
		go gs.Serve(lis)
		defer gs.Stop()
		var clients []buildpb.PublishBuildEventClient
		for range tools {
			cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			clients = append(clients, buildpb.NewPublishBuildEventClient(cc))
		}
		nonce := randomHex()
		b.ResetTimer()
		for i := range b.N {
			var wg sync.WaitGroup
			for j, st := range tools {
				wg.Add(1)
				go func() {
					defer wg.Done()
					p := besclient.New(clients[j], besclient.Options{BuildID: fmt.Sprintf("bench-%s-%d", nonce, i), Retries: -1})
					res, err := p.Publish(context.Background(), []*besclient.Stream{st})
					if err != nil || len(res) != 1 || !res[0].OK() {
						b.Errorf("stream %d: %+v, %v", j, res, err)
					}
				}()
			}
			wg.Wait()
		}
		b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
	}
	serve := func(b *testing.B, st store.Backend) {
		pub := server.NewPublishBuildEventServer(st, server.Options{
			MaxEventSize: bepfile.DefaultMaxEventSize,
			Persister:    server.NewBackendPersister(st, "grpc", 0),
			Log:          io.Discard,
		})
		run(b, pub)
		b.StopTimer()
		if err := pub.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
		n := 0
		if err := st.List(context.Background(), func(*store.Entry) error { n++; return nil }); err != nil || n != len(tools)*b.N {
			b.Fatalf("%d streams stored, %v; want %d", n, err, len(tools)*b.N)
		}
	}
	b.Run("ackonly", func(b *testing.B) { run(b, ackOnly{}) })
	b.Run("local", func(b *testing.B) {
		st, err := local.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		serve(b, st)
	})
	b.Run("team-file", func(b *testing.B) {
		st, err := Open(context.Background(), newCatalog(b), "file://"+b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		serve(b, st)
	})
	b.Run("team-s3", func(b *testing.B) {
		st, err := Open(context.Background(), newCatalog(b), newS3Blobs(b))
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		serve(b, st)
	})
}
