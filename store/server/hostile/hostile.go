// Package hostile is a misbehaving client of a Build Event Service, kept to
// test `bes serve` against what issue 13's red-team run did to it: huge
// events, huge ids, thousands of abandoned streams, slow connections,
// malformed payloads and repeated queries. Each scenario returns what the
// server answered, for the caller to judge; none checks anything itself.
//
// commands/serve_hostile_test.go runs every scenario against a `bes serve`
// child process on the loopback interface; testdata/hostile/main.go runs
// them from the command line, against a server of one's choice.
package hostile

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store/bespb"
	"github.com/bes-cli/bes/store/buildgridpb"
)

// Client sends hostile traffic over Conn. Prefix starts every build id it
// makes, so that runs do not collide.
type Client struct {
	Conn   grpc.ClientConnInterface
	Prefix string
}

func (c *Client) pub() buildpb.PublishBuildEventClient {
	return buildpb.NewPublishBuildEventClient(c.Conn)
}

// Progress returns the payload of a Bazel Progress event: BuildEvent{id:
// {progress: {opaque_count: n}}, progress: {stderr}}, stderr's bytes as
// they are (Bazel sends a terminal's bytes, not always UTF-8:
// bazelbuild/bazel#11125).
func Progress(n uint64, stderr []byte) []byte {
	id := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), n)
	var ev []byte
	ev = protowire.AppendTag(ev, 1, protowire.BytesType) // BuildEvent.id
	ev = protowire.AppendBytes(ev, protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), id))
	prog := protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), stderr)
	ev = protowire.AppendTag(ev, 3, protowire.BytesType) // BuildEvent.progress
	return protowire.AppendBytes(ev, prog)
}

// Events returns a tool stream of build id build and invocation inv: n
// Progress events whose stderr is stderrSize bytes, then
// component_stream_finished, numbered from 1.
func Events(build, inv string, n, stderrSize int) []*buildpb.OrderedBuildEvent {
	id := &buildpb.StreamId{BuildId: build, InvocationId: inv, Component: buildpb.StreamId_TOOL}
	out := make([]*buildpb.OrderedBuildEvent, 0, n+1)
	stderr := []byte(strings.Repeat("x", stderrSize))
	for i := range n {
		out = append(out, &buildpb.OrderedBuildEvent{
			StreamId: id, SequenceNumber: int64(i + 1),
			Event: &buildpb.BuildEvent{EventTime: timestamppb.New(time.Unix(1.7e9, int64(i))), Event: &buildpb.BuildEvent_BazelEvent{
				BazelEvent: &anypb.Any{TypeUrl: bepfile.BazelEventTypeURL, Value: Progress(uint64(i+1), stderr)}}},
		})
	}
	out = append(out, &buildpb.OrderedBuildEvent{
		StreamId: id, SequenceNumber: int64(n + 1),
		Event: &buildpb.BuildEvent{Event: &buildpb.BuildEvent_ComponentStreamFinished{
			ComponentStreamFinished: &buildpb.BuildEvent_BuildComponentStreamFinished{Type: buildpb.BuildEvent_BuildComponentStreamFinished_FINISHED}}},
	})
	return out
}

// Publish sends evs in one call, reading acks as they come, and returns
// the number acknowledged and the call's status (nil when the server
// acknowledged every event and ended the call well).
func (c *Client) Publish(ctx context.Context, evs []*buildpb.OrderedBuildEvent) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	call, err := c.pub().PublishBuildToolEventStream(ctx)
	if err != nil {
		return 0, err
	}
	go func() {
		for _, ev := range evs {
			if call.Send(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: ev}) != nil {
				return
			}
		}
		call.CloseSend()
	}()
	acks := 0
	for {
		_, err := call.Recv()
		if err == io.EOF {
			if acks != len(evs) {
				return acks, fmt.Errorf("the call ended after %d acks of %d events", acks, len(evs))
			}
			return acks, nil
		}
		if err != nil {
			return acks, err
		}
		acks++
	}
}

// parallel runs f(0..n-1) on at most par goroutines and returns the errors
// by index.
func parallel(n, par int, f func(i int) error) []error {
	errs := make([]error, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(par, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				errs[i] = f(i)
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	return errs
}

// HugeEvents publishes streams streams at once (par at a time), each of
// one event whose stderr is size bytes. It returns each stream's status.
func (c *Client) HugeEvents(ctx context.Context, streams, par, size int) []error {
	return parallel(streams, par, func(i int) error {
		_, err := c.Publish(ctx, Events(fmt.Sprintf("%s-huge-event-%d", c.Prefix, i), "inv", 1, size))
		return err
	})
}

// HugeID publishes a stream whose build id is size bytes, on both
// methods, and returns their statuses.
func (c *Client) HugeID(ctx context.Context, size int) (tool, lifecycle error) {
	evs := Events(c.Prefix+"-"+strings.Repeat("b", size), "inv", 1, 10)
	_, tool = c.Publish(ctx, evs)
	_, lifecycle = c.pub().PublishLifecycleEvent(ctx, &buildpb.PublishLifecycleEventRequest{BuildEvent: evs[0]})
	return tool, lifecycle
}

// Abandon opens n streams (par at a time), publishes k events on each,
// waits for their acks and vanishes: the call is cut, the stream never
// finished. It returns each stream's status (nil when its k events were
// acknowledged).
func (c *Client) Abandon(ctx context.Context, n, par, k int) []error {
	return parallel(n, par, func(i int) error {
		evs := Events(fmt.Sprintf("%s-abandoned-%d", c.Prefix, i), "inv", k, 64)[:k]
		cctx, cancel := context.WithCancel(ctx)
		defer cancel() // vanish
		call, err := c.pub().PublishBuildToolEventStream(cctx)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := call.Send(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: ev}); err != nil {
				break
			}
		}
		for range evs {
			if _, err := call.Recv(); err != nil {
				return err
			}
		}
		return nil
	})
}

// Return completes the streams Abandon(n, ..., k) left, as clients that
// come back and re-send their streams whole; it returns each one's status.
func (c *Client) Return(ctx context.Context, n, par, k int) []error {
	return parallel(n, par, func(i int) error {
		_, err := c.Publish(ctx, Events(fmt.Sprintf("%s-abandoned-%d", c.Prefix, i), "inv", k, 64))
		return err
	})
}

// Slow publishes a stream of n events, one every interval, as a client on
// a slow connection, and returns its status.
func (c *Client) Slow(ctx context.Context, n int, interval time.Duration) error {
	evs := Events(c.Prefix+"-slow", "inv", n, 100)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	call, err := c.pub().PublishBuildToolEventStream(ctx)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if err := call.Send(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: ev}); err != nil {
			break
		}
		if _, err := call.Recv(); err != nil {
			return err
		}
		time.Sleep(interval)
	}
	call.CloseSend()
	if _, err := call.Recv(); err != io.EOF {
		return fmt.Errorf("after the last ack: %v", err)
	}
	return nil
}

// Malformed is the Bazel payloads that are not well-formed protobuf, by
// name, each of which a server must refuse.
func Malformed() map[string][]byte {
	good := Progress(1, []byte("ok\n"))
	return map[string][]byte{
		"nested message cut short": good[:len(good)-2],
		"top level cut short":      {0x0a, 0x7f, 0x01},
		"wrong wire type":          protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 7),
		"not protobuf":             []byte("\xff\xff\xff\xff"),
	}
}

// MalformedPayloads publishes one stream per Malformed payload, and one
// whose Progress stderr is not UTF-8 (which a server must accept). It
// returns the statuses by name, "invalid UTF-8" for the last.
func (c *Client) MalformedPayloads(ctx context.Context) map[string]error {
	out := map[string]error{}
	for name, p := range Malformed() {
		evs := Events(c.Prefix+"-malformed-"+strings.ReplaceAll(name, " ", "-"), "inv", 2, 10)
		evs[1].Event.GetBazelEvent().Value = p
		_, out[name] = c.Publish(ctx, evs)
	}
	evs := Events(c.Prefix+"-utf8", "inv", 2, 10)
	evs[1].Event.GetBazelEvent().Value = Progress(2, []byte("gcc: \xff\xfe caf\xe9\n"))
	_, out["invalid UTF-8"] = c.Publish(ctx, evs)
	return out
}

// Queries runs n QueryEventStreams(pattern), par at a time, and returns
// how many ended with each code, and the first error of each code.
func (c *Client) Queries(ctx context.Context, n, par int, pattern string) (map[codes.Code]int, map[codes.Code]error) {
	q := buildgridpb.NewQueryBuildEventsClient(c.Conn)
	errs := parallel(n, par, func(int) error {
		_, err := q.QueryEventStreams(ctx, &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: pattern})
		return err
	})
	count, first := map[codes.Code]int{}, map[codes.Code]error{}
	for _, err := range errs {
		code := status.Code(err)
		count[code]++
		if first[code] == nil {
			first[code] = err
		}
	}
	return count, first
}

// StreamQuery runs bes's streaming query, StreamEventStreams(pattern), and
// puts its answer back together as QueryEventStreams gives it: the streams
// in order, each with its events (an event sent in parts decoded from
// them). It returns the streams and the number of messages received.
func (c *Client) StreamQuery(ctx context.Context, pattern string) ([]*buildgridpb.QueryEventStreamsResponse_BuildEventStream, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	call, err := bespb.NewStreamQueryClient(c.Conn).StreamEventStreams(ctx, &bespb.StreamEventStreamsRequest{BuildIdPattern: pattern})
	if err != nil {
		return nil, 0, err
	}
	var out []*buildgridpb.QueryEventStreamsResponse_BuildEventStream
	var part []byte // of an event sent in parts
	n := 0
	for {
		m, err := call.Recv()
		if err == io.EOF {
			if part != nil {
				return out, n, fmt.Errorf("the answer ended inside an event sent in parts")
			}
			return out, n, nil
		}
		if err != nil {
			return out, n, err
		}
		n++
		if m.GetFirst() {
			if part != nil {
				return out, n, fmt.Errorf("message %d: a stream starts inside an event sent in parts", n)
			}
			out = append(out, &buildgridpb.QueryEventStreamsResponse_BuildEventStream{StreamId: m.GetStreamId()})
		}
		if len(out) == 0 || !proto.Equal(out[len(out)-1].GetStreamId(), m.GetStreamId()) {
			return out, n, fmt.Errorf("message %d: stream id %v, not that of the stream it continues", n, m.GetStreamId())
		}
		s := out[len(out)-1]
		if len(m.GetEventPart()) > 0 || m.GetEventPartLast() {
			part = append(part, m.GetEventPart()...)
			if m.GetEventPartLast() {
				obe := &buildpb.OrderedBuildEvent{}
				if err := proto.Unmarshal(part, obe); err != nil {
					return out, n, fmt.Errorf("message %d: an event sent in parts: %v", n, err)
				}
				s.Events = append(s.Events, obe)
				part = nil
			}
			continue
		}
		s.Events = append(s.Events, m.GetEvents()...)
	}
}
