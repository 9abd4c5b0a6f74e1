package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store/local"
)

// TestRepairBesideServe runs `bes store check --repair`, each in a process
// of its own, in a loop while `bes serve` receives 500 streams from 8
// clients at once (issue 13: repair beside a live server moved 9 of 500 new
// stream files aside as corrupt, the server acknowledged every event written
// into them, and the 9 streams were lost). Every event the server
// acknowledged is readable from the store afterwards, in every stream;
// nothing is moved aside or quarantined; no repair reports an action on a
// stream being written; the store checks consistent.
func TestRepairBesideServe(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bes store check --repair in processes of its own")
	}
	const streams, clients = 500, 8
	dir := filepath.Join(t.TempDir(), "store")
	srv := startServe(t, dir)
	// Each stream: the first events of a real tool stream and its last
	// (ComponentStreamFinished), renumbered, under ids of its own.
	tool := readToolOBEs(t)
	base := append(append([]*buildpb.OrderedBuildEvent{}, tool[:5]...), tool[len(tool)-1])
	streamEvents := func(i int) []*buildpb.OrderedBuildEvent {
		id := &buildpb.StreamId{BuildId: fmt.Sprintf("repair-build-%03d", i), InvocationId: fmt.Sprintf("repair-inv-%03d", i), Component: buildpb.StreamId_TOOL}
		out := make([]*buildpb.OrderedBuildEvent, len(base))
		for j, ev := range base {
			c := proto.Clone(ev).(*buildpb.OrderedBuildEvent)
			c.StreamId, c.SequenceNumber = id, int64(j+1)
			out[j] = c
		}
		return out
	}

	cc, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := buildpb.NewPublishBuildEventClient(cc)
	publish := func(evs []*buildpb.OrderedBuildEvent) (acked int, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		call, err := client.PublishBuildToolEventStream(ctx)
		if err != nil {
			return 0, err
		}
		for j, ev := range evs {
			if j == len(evs)/2 {
				time.Sleep(10 * time.Millisecond) // the stream open a while, its file live
			}
			if err := call.Send(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: ev}); err != nil {
				return acked, err
			}
		}
		if err := call.CloseSend(); err != nil {
			return acked, err
		}
		for {
			resp, err := call.Recv()
			if err == io.EOF {
				return acked, nil
			}
			if err != nil {
				return acked, err
			}
			if resp.GetSequenceNumber() != int64(acked+1) {
				return acked, fmt.Errorf("ack %d for sequence number %d", acked+1, resp.GetSequenceNumber())
			}
			acked++
		}
	}

	acked := make([]int, streams)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var pubErrs []string
	next := make(chan int)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				n, err := publish(streamEvents(i))
				acked[i] = n
				if err != nil {
					mu.Lock()
					pubErrs = append(pubErrs, fmt.Sprintf("stream %d: %v", i, err))
					mu.Unlock()
				}
			}
		}()
	}
	// The repairs, one process each, until the clients are done; every
	// 50 streams the clients wait for a repair to end, so that repairs
	// run all along.
	done := make(chan struct{})
	roundDone := make(chan struct{}, 1)
	repairs := make(chan []string, 1)
	go func() {
		var out []string
		for round := 0; ; round++ {
			select {
			case <-done:
				if round > 0 {
					repairs <- out
					return
				}
			default:
			}
			stdout, stderr, code := runBes(t, "store", "check", "--repair", "--store", dir, "--format", "json")
			var rows []checkRow
			json.Unmarshal([]byte(stdout), &rows)
			if code != 0 || len(rows) != 0 || strings.Contains(stderr, "bes: repair: ") {
				out = append(out, fmt.Sprintf("round %d: exit %d, %+v\n%s", round, code, rows, stderr))
			}
			out = append(out, "") // one per round
			select {
			case roundDone <- struct{}{}:
			default:
			}
		}
	}()
	for i := range streams {
		if i%50 == 25 {
			<-roundDone
		}
		next <- i
	}
	close(next)
	wg.Wait()
	close(done)
	rounds := <-repairs
	var bad []string
	for _, r := range rounds {
		if r != "" {
			bad = append(bad, r)
		}
	}
	t.Logf("%d repairs beside %d streams", len(rounds), streams)
	if len(bad) > 0 {
		t.Errorf("repairs that found or did something beside the live server:\n%s", strings.Join(bad, "\n"))
	}
	if len(pubErrs) > 0 {
		t.Errorf("%d streams failed: %s", len(pubErrs), strings.Join(pubErrs[:min(len(pubErrs), 5)], "; "))
	}
	srv.stop(t)

	st, _, err := local.OpenExisting(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lost := 0
	for i := range streams {
		key := fmt.Sprintf("repair-build-%03d.3.repair-inv-%03d", i, i)
		es, err := st.Lookup(context.Background(), key)
		n := 0
		if err == nil && len(es) == 1 {
			err = st.Events(context.Background(), es[0], func(*bepfile.Stream, *bepfile.Event) error { n++; return nil })
		}
		if err != nil || n < acked[i] || acked[i] != len(base) {
			lost++
			if lost <= 5 {
				t.Errorf("stream %d: %d events readable, %d acknowledged of %d: %v", i, n, acked[i], len(base), err)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d streams lost acknowledged events", lost, streams)
	}
	if aside, _ := filepath.Glob(filepath.Join(dir, "*.bess.*")); len(aside) != 0 {
		t.Errorf("files moved aside: %q", aside)
	}
	if code, rows := checkStore(t, dir); code != 0 {
		t.Errorf("store check afterwards: %+v", rows)
	}
}
