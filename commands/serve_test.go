package commands

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/store/buildgridpb"
	"github.com/bes-cli/bes/store/server"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is a `bes serve` running in the test process.
type testServer struct {
	addr   string
	log    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startServe runs `bes serve` on 127.0.0.1:0 with the store in dir.
func startServe(t *testing.T, dir string) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{log: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	addrc := make(chan string, 1)
	opts := serveOptions{Store: dir, Listen: "127.0.0.1:0", MaxEventSize: 64 << 20, Grace: 5 * time.Second, OnListen: func(a string) { addrc <- a }}
	go func() { ts.done <- runServe(ctx, opts, ts.log) }()
	select {
	case ts.addr = <-addrc:
	case err := <-ts.done:
		t.Fatalf("serve: %v\n%s", err, ts.log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop stops the server as SIGINT would, and checks it ended well.
func (ts *testServer) stop(t *testing.T) {
	t.Helper()
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.cancel = nil
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("serve ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.HasSuffix(ts.log.String(), "bes: stopped\n") {
		t.Errorf("serve log does not end with its stop:\n%s", ts.log.String())
	}
}

func td(name string) string { return filepath.Join("..", "testdata", name) }

// obeFrames splits varint-delimited output into its frames.
func obeFrames(t *testing.T, s string) [][]byte {
	t.Helper()
	var frames [][]byte
	b := []byte(s)
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			t.Fatalf("bad frame after %d frames", len(frames))
		}
		frames = append(frames, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return frames
}

// streamKeys lists the keys `bes streams` prints for args.
func streamKeys(t *testing.T, args ...string) (keys []string, events []int64) {
	t.Helper()
	out, stderr, code := runCLI(t, append([]string{"streams", "--format", "json"}, args...)...)
	if code != 0 && code != ExitPartial {
		t.Fatalf("streams %v: exit %d: %s", args, code, stderr)
	}
	var rows []streamRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		keys = append(keys, r.Key)
		events = append(events, r.Events)
	}
	return keys, events
}

// roundTripCase is one file replayed into `bes serve`.
type roundTripCase struct {
	file    string
	buildID string // --build-id for Bazel's own files
	code    int
}

func roundTripCases() []roundTripCase {
	var cs []roundTripCase
	for _, f := range []string{
		"build_ok.bep", "build_ok.json", "build_keep_going_fail.bep", "build_keep_going_fail.json",
		"test_mixed.bep", "test_mixed.json", "test_mixed.json.zst", "test_cached.bep", "test_cached.json",
		"query.bep", "query.json", "bes_test_mixed.bep", "large_test.bep.gz",
	} {
		cs = append(cs, roundTripCase{file: f, buildID: "rt-" + f})
	}
	return append(cs,
		roundTripCase{file: "truncated-test_mixed.bep", buildID: "rt-truncated", code: ExitPartial},
		roundTripCase{file: "bes_test_mixed.obe"},
		roundTripCase{file: "bes_test_mixed.lifecycle.obe"},
	)
}

// TestServeReplayRoundTrip replays every testdata file into a running
// `bes serve`; `bes dump --format obe` of the streams stored is byte for
// byte `bes dump --format obe` of the file, while the server runs and after
// it stopped. QueryEventStreams through the generated client then returns
// the streams `bes streams --match` lists, with the same events.
func TestServeReplayRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("replays 32030 events of large_test")
	}
	dir := t.TempDir()
	srv := startServe(t, dir)
	to := "grpc://" + srv.addr
	type expect struct {
		keys []string
		obe  string
	}
	want := map[string]expect{}
	for _, c := range roundTripCases() {
		var idArgs []string
		if c.buildID != "" {
			idArgs = []string{"--build-id", c.buildID}
		}
		stdout, stderr, code := runCLI(t, append([]string{"replay", td(c.file), "--to", to, "--format", "json"}, idArgs...)...)
		if code != c.code {
			t.Fatalf("replay %s: exit %d, want %d\n%s%s", c.file, code, c.code, stdout, stderr)
		}
		var rows []replayRow
		if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
			t.Fatal(err)
		}
		keys, events := streamKeys(t, append([]string{td(c.file)}, idArgs...)...)
		if len(rows) != len(keys) {
			t.Fatalf("replay %s: %d rows for %d streams", c.file, len(rows), len(keys))
		}
		for i, r := range rows {
			if r.Status != "ok" || r.Acked != r.Events || r.Sent != r.Events || int64(r.Events) != events[i] || r.Attempts == 0 {
				t.Errorf("replay %s: row %+v, want %d events sent and acknowledged", c.file, r, events[i])
			}
		}
		fileOBE, _, _ := runCLI(t, append([]string{"dump", "--format", "obe", td(c.file)}, idArgs...)...)
		want[c.file] = expect{keys, fileOBE}
		// Seen while the server runs.
		got, stderr, code := runCLI(t, append([]string{"dump", "--store", dir, "--format", "obe"}, keys...)...)
		if code != 0 || got != fileOBE {
			t.Errorf("%s: dump of the running server's store (exit %d, %d bytes) differs from the file's (%d bytes) %s", c.file, code, len(got), len(fileOBE), stderr)
		}
	}

	// QueryEventStreams answers as `bes streams --match`.
	cc, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	q := buildgridpb.NewQueryBuildEventsClient(cc)
	// Everything is over the answer's limit (large_test alone is): refused,
	// naming the limit, whatever the client could receive (issue 13).
	_, err = q.QueryEventStreams(context.Background(), &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: ""})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), fmt.Sprint(server.DefaultMaxQueryResponse)) {
		t.Errorf(`QueryEventStreams(""): %v, want ResourceExhausted naming the limit`, err)
	}
	for _, pattern := range []string{`^(?:0|rt-[^l])`, `\.1\.`, "^rt-test_", "8b58a6b7", `json(\.zst)?\.3\.`, "no-such-stream"} {
		resp, err := q.QueryEventStreams(context.Background(), &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: pattern})
		if err != nil {
			t.Fatalf("%q: %v", pattern, err)
		}
		// The index entry of a stream still open (the truncated file's
		// never finishes) is refreshed at most once a second while the
		// server runs: give it that long to catch up.
		keys, events := streamKeys(t, "--store", dir, "--match", pattern)
		for deadline := time.Now().Add(5 * time.Second); !sameCounts(resp.GetStreams(), events) && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			keys, events = streamKeys(t, "--store", dir, "--match", pattern)
		}
		var gotKeys []string
		for i, s := range resp.GetStreams() {
			key := fmt.Sprintf("%s.%d.%s", s.GetStreamId().GetBuildId(), s.GetStreamId().GetComponent(), s.GetStreamId().GetInvocationId())
			gotKeys = append(gotKeys, key)
			if i < len(events) && int64(len(s.GetEvents())) != events[i] {
				t.Errorf("%q: stream %s has %d events, bes streams says %d", pattern, key, len(s.GetEvents()), events[i])
			}
			if len(s.GetEvents()) > 5000 && pattern != "" {
				continue
			}
			dump, _, _ := runCLI(t, "dump", "--store", dir, "--format", "obe", key)
			frames := obeFrames(t, dump)
			for j, ev := range s.GetEvents() {
				b, err := proto.Marshal(ev)
				if err != nil || j >= len(frames) || !bytes.Equal(b, frames[j]) {
					t.Errorf("%q: stream %s: event %d differs from bes dump's", pattern, key, j)
					break
				}
			}
		}
		if !slices.Equal(gotKeys, keys) {
			t.Errorf("%q: QueryEventStreams returned %v, bes streams --match %v", pattern, gotKeys, keys)
		}
	}

	srv.stop(t)
	log := srv.log.String()
	if n := strings.Count(log, " opened: "); n != 17 {
		t.Errorf("%d streams opened, want 17:\n%s", n, log)
	}
	if n := strings.Count(log, " finished: "); n != 16 { // all but the truncated one
		t.Errorf("%d streams finished, want 16:\n%s", n, log)
	}
	// The truncated one is let go as its call ends, not held until the
	// server stops.
	if !strings.Contains(log, "bes: stream rt-truncated.3.") || !strings.Contains(log, "ended (the client closed its side) after sequence number 62: 62 events stored") || strings.Contains(log, "closed unfinished") {
		t.Errorf("the truncated stream's let go is not logged:\n%s", log)
	}
	// And after the server stopped.
	for _, c := range roundTripCases() {
		got, _, code := runCLI(t, append([]string{"dump", "--store", dir, "--format", "obe"}, want[c.file].keys...)...)
		if code != 0 || got != want[c.file].obe {
			t.Errorf("%s: dump of the stopped server's store differs from the file's", c.file)
		}
	}
}

// With --lifecycle, replay makes the lifecycle streams Bazel would have
// sent, and bes serve stores them.
func TestReplayLifecycle(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, dir)
	stdout, stderr, code := runCLI(t, "replay", td("test_mixed.bep"), "--to", "grpc://"+srv.addr, "--lifecycle", "--build-id", "B", "--project-id", "p", "--keyword", "k=v")
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout, stderr)
	}
	for _, want := range []string{"B.1.  ", "lifecycle (made)", "tool  ", "106     106   106    0       1         ok"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("replay output lacks %q:\n%s", want, stdout)
		}
	}
	srv.stop(t)
	out, _, _ := runCLI(t, "streams", "--store", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("streams:\n%s", out)
	}
	for _, l := range lines[1:3] {
		if !strings.Contains(l, "CONTROLLER  2 ") || !strings.Contains(l, "COMMAND_FAILED") {
			t.Errorf("lifecycle stream: %s", l)
		}
	}
	if !strings.Contains(lines[3], "TOOL        106") {
		t.Errorf("tool stream: %s", lines[3])
	}
}

func TestServeReplayErrors(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"serve", "--listen", "0.0.0.0:0"}, ExitUsage, "--listen 0.0.0.0:0 is not a loopback address"},
		{[]string{"serve", "--listen", "[::]:8980"}, ExitUsage, "add --insecure"},
		{[]string{"serve", "--listen", "nohost"}, ExitUsage, "--listen \"nohost\""},
		{[]string{"serve", "extra"}, ExitUsage, "serve takes no arguments"},
		{[]string{"replay", td("build_ok.bep")}, ExitUsage, "replay: --to is required"},
		{[]string{"replay", "--to", "grpc://127.0.0.1:1"}, ExitUsage, "name at least one FILE"},
		{[]string{"replay", td("build_ok.bep"), "--to", "http://127.0.0.1:1"}, ExitUsage, `scheme "http"`},
		{[]string{"replay", td("build_ok.bep"), "--to", "grpc://127.0.0.1"}, ExitUsage, "want grpc://HOST:PORT"},
		{[]string{"replay", td("build_ok.bep"), "--to", "grpc://127.0.0.1:1", "--header", "novalue"}, ExitUsage, `--header "novalue": want KEY=VALUE`},
		{[]string{"replay", td("build_ok.bep"), td("test_mixed.bep"), "--to", "grpc://127.0.0.1:1", "--invocation-id", "x"}, ExitUsage, "the streams hold 2 invocations"},
		// Nothing listens on port 1: the call fails, nothing is retried.
		{[]string{"replay", td("build_ok.bep"), "--to", "grpc://127.0.0.1:1", "--retries", "0"}, ExitError, "stream 716bc5f2-0416-4984-bf6d-e57bb3dc67a7.3.716bc5f2-0416-4984-bf6d-e57bb3dc67a7: Unavailable"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, stderr, code := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.stderr)
			}
		})
	}
}

// TestServeHelperProcess is `bes serve` in a child process, for the tests
// that signal or kill it. It runs only when BES_SERVE_HELPER names the
// arguments.
func TestServeHelperProcess(t *testing.T) {
	args := os.Getenv("BES_SERVE_HELPER")
	if args == "" {
		t.Skip("helper process for TestServeKilled")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := NewApp("test")
	app.Writer, app.ErrWriter = os.Stdout, os.Stderr
	if err := Run(ctx, app, append([]string{"bes", "serve"}, strings.Fields(args)...)); err != nil {
		fmt.Fprintf(os.Stderr, "bes: %v\n", err)
		os.Exit(ExitCode(err))
	}
}

// child is `bes serve` in a child process.
type child struct {
	cmd   *exec.Cmd
	addr  string
	mu    sync.Mutex
	lines []string
	eof   chan struct{}
}

// startChild starts it with --log-format plain: the tests read its "bes:
// MESSAGE" lines.
func startChild(t *testing.T, args string) *child {
	t.Helper()
	return startChildLog(t, "--log-format plain "+args)
}

// startChildLog starts `bes serve ARGS` in a child process, whatever its
// log format, and waits for the line that names the address served.
func startChildLog(t *testing.T, args string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeHelperProcess$")
	cmd.Env = append(os.Environ(), "BES_SERVE_HELPER="+args)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, eof: make(chan struct{})}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addrc := make(chan string, 1)
	re := regexp.MustCompile(`^(?:bes: |time=.* msg="|\{.*"msg":")serving on (\S+) `)
	go func() {
		defer close(c.eof)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			c.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	select {
	case c.addr = <-addrc:
	case <-c.eof:
		t.Fatalf("bes serve exited: %v", c.log())
	case <-time.After(60 * time.Second):
		t.Fatal("bes serve did not start")
	}
	return c
}

func (c *child) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// sendAcked opens a tool stream call, sends events and waits for n acks;
// it returns the call, still open, and its cancel function.
func sendAcked(t *testing.T, addr string, evs []*buildpb.OrderedBuildEvent, n int) (context.CancelFunc, *grpc.ClientConn) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	call, err := buildpb.NewPublishBuildEventClient(cc).PublishBuildToolEventStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if err := call.Send(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: ev}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= n; i++ {
		resp, err := call.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetSequenceNumber() != int64(i) {
			t.Fatalf("ack %d: sequence number %d", i, resp.GetSequenceNumber())
		}
	}
	return cancel, cc
}

func readToolOBEs(t *testing.T) []*buildpb.OrderedBuildEvent {
	t.Helper()
	f, err := os.Open(td("bes_test_mixed.obe"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var out []*buildpb.OrderedBuildEvent
	for {
		m := &buildpb.OrderedBuildEvent{}
		if err := protodelim.UnmarshalFrom(br, m); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

const besToolKey = "0fff9624-6330-4348-b7e6-0d35256338b9.3.8b58a6b7-1857-43e5-b701-ebbabc33fc5c"

// TestServeKilled kills `bes serve` (SIGKILL) in the middle of a stream:
// every event it acknowledged is in the store; the next server brings the
// index up to date, and a client that re-sends the whole stream completes
// it with every event stored once.
func TestServeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bes serve in a child process")
	}
	dir := t.TempDir()
	c := startChild(t, "--listen 127.0.0.1:0 --store "+dir)
	evs := readToolOBEs(t)
	cancel, cc := sendAcked(t, c.addr, evs[:70], 50)
	defer cc.Close()
	defer cancel()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	c.cmd.Wait()

	fileOBE, _, _ := runCLI(t, "dump", "--format", "obe", td("bes_test_mixed.obe"))
	want := obeFrames(t, fileOBE)
	got, stderr, code := runCLI(t, "dump", "--store", dir, "--format", "obe", besToolKey)
	if code != 0 {
		t.Fatalf("dump after SIGKILL: exit %d: %s", code, stderr)
	}
	frames := obeFrames(t, got)
	if len(frames) < 50 || len(frames) > 70 {
		t.Fatalf("%d events stored after SIGKILL; 50 were acknowledged, 70 sent", len(frames))
	}
	for i, f := range frames {
		if !bytes.Equal(f, want[i]) {
			t.Fatalf("stored event %d differs from the one sent", i)
		}
	}

	srv := startServe(t, dir)
	if !strings.Contains(srv.log.String(), "bes: stream "+besToolKey+": index entry updated from its file") {
		t.Errorf("the stale index entry was not reconciled:\n%s", srv.log.String())
	}
	_, events := streamKeys(t, "--store", dir, "--match", `\.3\.`)
	if len(events) != 1 || events[0] != int64(len(frames)) {
		t.Errorf("bes streams counts %v events, the file holds %d", events, len(frames))
	}
	if _, stderr, code := runCLI(t, "replay", td("bes_test_mixed.obe"), "--to", "grpc://"+srv.addr); code != 0 {
		t.Fatalf("replay after the restart: exit %d: %s", code, stderr)
	}
	srv.stop(t)
	got, _, _ = runCLI(t, "dump", "--store", dir, "--format", "obe", besToolKey)
	if got != fileOBE {
		t.Errorf("the stream completed after the restart differs from the file")
	}
}

// TestServeSIGTERM stops `bes serve` with SIGTERM while a call is open: it
// waits --grace for the call, then ends it, writes the final index entries
// and exits 0.
func TestServeSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bes serve in a child process")
	}
	dir := t.TempDir()
	c := startChild(t, "--listen 127.0.0.1:0 --grace 500ms --store "+dir)
	cancel, cc := sendAcked(t, c.addr, readToolOBEs(t)[:40], 40)
	defer cc.Close()
	defer cancel()
	start := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-c.eof
	err := c.cmd.Wait()
	if err != nil {
		t.Fatalf("bes serve exited with %v:\n%s", err, c.log())
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 20*time.Second {
		t.Errorf("stopped after %v; --grace is 500ms", d)
	}
	log := c.log()
	// The call ended by the stop lets its stream go.
	for _, want := range []string{"bes: stopping: waiting up to 500ms for open calls", "bes: ending the calls still open", "after sequence number 40: 40 events stored", "bes: stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if _, events := streamKeys(t, "--store", dir); len(events) != 1 || events[0] != 40 {
		t.Errorf("bes streams counts %v events, want [40]", events)
	}
}

// sameCounts reports whether the streams have the given numbers of events.
func sameCounts(streams []*buildgridpb.QueryEventStreamsResponse_BuildEventStream, events []int64) bool {
	if len(streams) != len(events) {
		return false
	}
	for i, s := range streams {
		if int64(len(s.GetEvents())) != events[i] {
			return false
		}
	}
	return true
}

// TestServeCallsPerConnection opens server.MaxCallsPerConn streams on one
// connection and keeps them open: one more call waits (here until its
// deadline) instead of being served, and goes through once another ends.
func TestServeCallsPerConnection(t *testing.T) {
	ts := startServe(t, t.TempDir())
	cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := buildpb.NewPublishBuildEventClient(cc)
	first := readToolOBEs(t)[0]
	// open starts a call of a stream of its own and waits for the ack of
	// its first event.
	open := func(ctx context.Context, n int) error {
		ev := proto.Clone(first).(*buildpb.OrderedBuildEvent)
		ev.StreamId.BuildId = fmt.Sprintf("calls-%d", n)
		call, err := client.PublishBuildToolEventStream(ctx)
		if err != nil {
			return err
		}
		if err := call.Send(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: ev}); err != nil {
			return err
		}
		_, err = call.Recv()
		return err
	}
	cancels := make([]context.CancelFunc, server.MaxCallsPerConn)
	for i := range cancels {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		if err := open(ctx, i); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err = open(ctx, server.MaxCallsPerConn)
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call %d on a full connection: %v, want it to wait (DeadlineExceeded)", server.MaxCallsPerConn, err)
	}
	cancels[0]()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := open(ctx, server.MaxCallsPerConn+1); err != nil {
		t.Fatalf("a call once another ended: %v", err)
	}
}

// TestIngestLeavesLiveStreamAlone: `bes ingest` of a stream that `bes
// serve` is receiving on the same store changes nothing, says so, and
// exits 4, with --replace too; the server then completes the stream.
func TestIngestLeavesLiveStreamAlone(t *testing.T) {
	dir := t.TempDir()
	ts := startServe(t, dir)
	evs := readToolOBEs(t)
	cancel, cc := sendAcked(t, ts.addr, evs[:10], 10)
	for _, args := range [][]string{{}, {"--replace"}} {
		stdout, stderr, code := runCLI(t, append([]string{"ingest", "--store", dir, "--format", "json", td("bes_test_mixed.obe")}, args...)...)
		if code != ExitDuplicate || !strings.Contains(stderr, "is being received by a bes serve; nothing changed") || !strings.Contains(stdout, `"status": "busy"`) {
			t.Fatalf("ingest %v of a live stream: exit %d\n%s\n%s", args, code, stdout, stderr)
		}
	}
	cancel()
	cc.Close()
	// The client sends the whole stream again; the server completes it.
	cancel, cc = sendAcked(t, ts.addr, evs, len(evs))
	cancel()
	cc.Close()
	keys, events := streamKeys(t, "--store", dir)
	if !slices.Contains(keys, besToolKey) || events[slices.Index(keys, besToolKey)] != int64(len(evs)) {
		t.Errorf("after the ingest and the resend: streams %v, events %v; want %s with %d", keys, events, besToolKey, len(evs))
	}
}
