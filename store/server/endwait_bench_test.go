package server

// BenchmarkEndOfStream measures what a Bazel client waits for at the end of
// a build streamed to `bes serve` (issue 12: with 5,000 stored streams,
// within 1.2× of an empty store's wait):
//
//	go test ./store/server -run '^$' -bench EndOfStream -benchtime 40x -count 5
//
// Each iteration replays one real invocation, `bazel test` as a recording
// BES received it (testdata/bes_test_mixed.obe: 106 tool events, the last
// component_stream_finished; testdata/bes_test_mixed.lifecycle.obe: its 4
// lifecycle events), with fresh build and invocation ids, to the publish
// server with the local persister (as `bes serve` runs it, minus the
// once-a-second Flush) over loopback TCP, in Bazel's order: build_enqueued
// and invocation_attempt_started (PublishLifecycleEvent), the tool stream
// in one PublishBuildToolEventStream call, then invocation_attempt_finished
// and build_finished. Untimed, the first 105 tool events are sent and
// acknowledged; the clock then runs from sending the last event (with the
// half-close) until its acknowledgement and the end of the call have
// arrived. The server closes the stream's Appender (the final catalog
// entry, in one transaction) before it acknowledges a finishing event, so
// the entry is final then; the benchmark checks it after each iteration
// (complete, 106 events).
//
// ns/op is that wait (the mean; p50-ns the median of the iterations);
// lifecycle-ns/op is the two finishing lifecycle calls after it, which
// close the two lifecycle streams' entries the same way; us/fsync is the
// disk's fsync latency measured after the loop (fsyncLatency), since the
// wait is two fsyncs (the stream file's, the catalog's write-ahead log's)
// and moves with the disk's load. The sub-benchmarks:
//
//   - empty: a store created for the run;
//   - 5000: a store filled first with 5,000 other streams (a generated BES
//     capture of 5,000 invocations of 1 to 4 targets, committed with
//     CommitAll as `bes ingest` does), closed, synced to disk and opened
//     again, as a restarted `bes serve` would.

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepgen"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/local"
)

// readDelimited reads the varint-delimited messages of a testdata file
// into new(T)s.
func readDelimited[T proto.Message](b *testing.B, path string, newT func() T) []T {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var out []T
	for off := 0; off < len(data); {
		v, n := protowire.ConsumeBytes(data[off:])
		if n < 0 {
			b.Fatalf("%s: offset %d: want a varint-delimited message", path, off)
		}
		m := newT()
		if err := proto.Unmarshal(v, m); err != nil {
			b.Fatalf("%s: offset %d: %v", path, off, err)
		}
		out = append(out, m)
		off += n
	}
	return out
}

// fillStore commits the n streams of a generated BES capture to the store
// in dir, in batches of 500 (CommitAll, as bes ingest does).
func fillStore(b *testing.B, dir string, n int) {
	b.Helper()
	ctx := context.Background()
	pr, pw := io.Pipe()
	go func() {
		_, err := bepgen.WriteOBE(pw, bepgen.CaptureConfig{Seed: 12, Streams: n, MinTargets: 1, MaxTargets: 4})
		pw.CloseWithError(err)
	}()
	rd, err := bepfile.NewReader(pr, "capture.obe", bepfile.Options{})
	if err != nil {
		b.Fatal(err)
	}
	st, err := local.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	writers := map[string]store.Writer{}
	var done []store.Writer
	commit := func() {
		out, err := st.CommitAll(ctx, done, "capture.obe", "obe", false)
		if err != nil {
			b.Fatal(err)
		}
		for _, o := range out {
			if o.Err != nil || o.Result != local.Created {
				b.Fatalf("fill: %+v", o)
			}
		}
		done = done[:0]
	}
	stored := 0
	for {
		info, ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		w := writers[info.Key]
		if w == nil {
			if w, err = st.Create(ctx, info); err != nil {
				b.Fatal(err)
			}
			writers[info.Key] = w
		}
		if err := w.Append(ev); err != nil {
			b.Fatal(err)
		}
		if w.Meta().Complete {
			delete(writers, info.Key)
			done = append(done, w)
			stored++
			if len(done) == 500 {
				commit()
			}
		}
	}
	if len(done) > 0 {
		commit()
	}
	if stored != n || len(writers) != 0 {
		b.Fatalf("fill: %d streams committed, %d left open, want %d", stored, len(writers), n)
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
}

// withIDs returns a copy of obe on the build and invocation ids of one
// iteration (an empty invocation id stays empty).
func withIDs(obe *buildpb.OrderedBuildEvent, build, inv string) *buildpb.OrderedBuildEvent {
	c := proto.CloneOf(obe)
	c.StreamId.BuildId = build
	if c.StreamId.InvocationId != "" {
		c.StreamId.InvocationId = inv
	}
	return c
}

// endWaitRuns counts the invocations BenchmarkEndOfStream sent, for ids.
var endWaitRuns int

func BenchmarkEndOfStream(b *testing.B) {
	tool := readDelimited(b, "../../testdata/bes_test_mixed.obe", func() *buildpb.OrderedBuildEvent { return new(buildpb.OrderedBuildEvent) })
	life := readDelimited(b, "../../testdata/bes_test_mixed.lifecycle.obe", func() *buildpb.PublishLifecycleEventRequest {
		return new(buildpb.PublishLifecycleEventRequest)
	})
	if len(tool) != 106 || tool[105].GetEvent().GetComponentStreamFinished() == nil || len(life) != 4 {
		b.Fatalf("testdata: %d tool events, %d lifecycle events; want 106 ending with component_stream_finished, and 4", len(tool), len(life))
	}
	// The store of 5,000 streams is filled once, before either
	// sub-benchmark runs, so that both run after the fill: its garbage and
	// its writeback are behind both (see BENCHMARKS.md).
	filled := b.TempDir()
	fillStore(b, filled, 5000)
	for _, n := range []int{0, 5000} {
		name := "empty"
		if n > 0 {
			name = fmt.Sprint(n)
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			if n > 0 {
				dir = filled // each run adds its few streams
			}
			runtime.GC()
			syscall.Sync() // no writeback of earlier runs in the timed phase
			disk, err := local.Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			defer disk.Close()
			pub := NewPublishBuildEventServer(disk, Options{
				MaxEventSize: bepfile.DefaultMaxEventSize,
				Persister:    NewBackendPersister(disk, "grpc", 0),
				Log:          io.Discard,
			})
			bs := startBenchServer(b, pub)
			defer bs.stop()
			c := bs.clients[0]
			ctx := context.Background()
			lifecycle := func(i int, build, inv string) {
				req := proto.CloneOf(life[i])
				req.BuildEvent = withIDs(req.BuildEvent, build, inv)
				if _, err := c.PublishLifecycleEvent(ctx, req); err != nil {
					b.Fatalf("lifecycle event %d: %v", i, err)
				}
			}
			var waits []time.Duration
			var lifeTotal time.Duration
			b.ResetTimer()
			for iter := 0; iter < b.N; iter++ {
				b.StopTimer()
				// Ids no earlier run used: every stream is new to the store.
				endWaitRuns++
				build := fmt.Sprintf("0fff9624-6330-4348-b7e6-%012d", endWaitRuns)
				inv := fmt.Sprintf("8b58a6b7-1857-43e5-b701-%012d", endWaitRuns)
				reqs := make([]*buildpb.PublishBuildToolEventStreamRequest, len(tool))
				for j, obe := range tool {
					reqs[j] = &buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: withIDs(obe, build, inv), ProjectId: "bench"}
				}
				reqs[0].NotificationKeywords = []string{"command_name=test", "protocol_name=BEP"}
				key := store.Key(reqs[0].OrderedBuildEvent.StreamId)
				lifecycle(0, build, inv)
				lifecycle(1, build, inv)

				call, err := c.PublishBuildToolEventStream(ctx)
				if err != nil {
					b.Fatal(err)
				}
				acks := make(chan error, len(reqs)+1)
				go func() {
					for i := range reqs {
						resp, err := call.Recv()
						if err == nil && resp.GetSequenceNumber() != int64(i+1) {
							err = fmt.Errorf("ack for sequence number %d, want %d", resp.GetSequenceNumber(), i+1)
						}
						acks <- err
						if err != nil {
							return
						}
					}
					_, err := call.Recv()
					if err == io.EOF {
						err = nil
					} else if err == nil {
						err = fmt.Errorf("a response after the last ack")
					}
					acks <- err
				}()
				last := len(reqs) - 1
				for _, r := range reqs[:last] {
					if err := call.Send(r); err != nil {
						b.Fatal(err)
					}
				}
				for range last {
					if err := <-acks; err != nil {
						b.Fatalf("stream %s: %v", key, err)
					}
				}

				b.StartTimer()
				t0 := time.Now()
				if err := call.Send(reqs[last]); err != nil {
					b.Fatal(err)
				}
				if err := call.CloseSend(); err != nil {
					b.Fatal(err)
				}
				errLast, errEnd := <-acks, <-acks
				wait := time.Since(t0)
				b.StopTimer()
				if err := cmpErr(errLast, errEnd); err != nil {
					b.Fatalf("stream %s: %v", key, err)
				}
				waits = append(waits, wait)

				t1 := time.Now()
				lifecycle(2, build, inv)
				lifecycle(3, build, inv)
				lifeTotal += time.Since(t1)

				es, err := disk.Lookup(ctx, key)
				if err != nil || len(es) != 1 || es[0].Key != key || !es[0].Complete || es[0].Events != int64(len(reqs)) {
					b.Fatalf("stream %s: catalog entry %+v (%v), want the stream's, complete, with %d events", key, es, err, len(reqs))
				}
				b.StartTimer()
			}
			b.StopTimer()
			var total time.Duration
			for _, w := range waits {
				total += w
			}
			slices.Sort(waits)
			b.ReportMetric(float64(total.Nanoseconds())/float64(len(waits)), "ns/op")
			b.ReportMetric(float64(waits[len(waits)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lifeTotal.Nanoseconds())/float64(len(waits)), "lifecycle-ns/op")
			b.ReportMetric(float64(fsyncLatency(b, dir).Microseconds()), "us/fsync")
			if err := pub.Close(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// cmpErr returns the first non-nil error.
func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
