package commands

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/store/bespb"
	"github.com/bes-cli/bes/store/buildgridpb"
)

func dialPlain(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestServeHealthReflection (issue 14): grpc.health.v1.Health answers
// SERVING without a token even when --auth-token-file is on; reflection's
// ListServices lists the build event, query and health services with the
// token and is refused without; once the server is stopping, a health
// watcher is told NOT_SERVING.
func TestServeHealthReflection(t *testing.T) {
	tokenFile := writeFile(t, "token", "s3cret-token\n")
	srv := startServeWith(t, serveOptions{Store: t.TempDir(), TokenFile: tokenFile})
	cc := dialPlain(t, srv.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	hc := healthpb.NewHealthClient(cc)
	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Health.Check: %v, %v; want SERVING", resp, err)
	}

	list := func(ctx context.Context) ([]string, error) {
		rc, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		// A Send that fails (io.EOF) leaves the call's status to Recv.
		_ = rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		r, err := rc.Recv()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range r.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		slices.Sort(names)
		return names, rc.CloseSend()
	}
	if _, err := list(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListServices without the token: %v, want Unauthenticated", err)
	}
	names, err := list(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret-token"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bes.v1.StreamQuery", "buildgrid.v2.QueryBuildEvents", "google.devtools.build.v1.PublishBuildEvent", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("ListServices: %q, want %s among them", names, want)
		}
	}

	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch: %v, %v; want SERVING", r, err)
	}
	srv.cancel() // as SIGTERM does
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch while stopping: %v, %v; want NOT_SERVING", r, err)
	}
	cc.Close() // ends the watch, so the server stops at once
}

// scrape reads the Prometheus text at url into "name{labels}" → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	line := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$`)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", url, sc.Text(), err)
		}
		out[m[1]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestServeMetricsBearerGzip (issue 14): a client that sends its requests
// gzip-compressed with exactly the metadata Bazel 6+ sends for
// --bes_header=authorization=Bearer TOKEN publishes a real stream of
// Bazel 4.2.3 events; /metrics on --metrics-listen then counts every event
// received and acknowledged, their bytes, the store's syncs and no open
// stream; a call without the token and an event with sequence number 0
// are counted as refused, by reason.
func TestServeMetricsBearerGzip(t *testing.T) {
	tokenFile := writeFile(t, "token", "s3cret-token\n")
	metricsc := make(chan string, 1)
	srv := startServeWith(t, serveOptions{Store: t.TempDir(), TokenFile: tokenFile, MetricsListen: "127.0.0.1:0", OnMetricsListen: func(a string) { metricsc <- a }})
	url := "http://" + <-metricsc + "/metrics"
	before := scrape(t, url)
	for _, name := range []string{"bes_serve_events_received_total", "bes_serve_events_acknowledged_total", "bes_serve_received_bytes_total", "bes_serve_streams_open", "bes_serve_store_sync_seconds_count"} {
		if v, ok := before[name]; !ok || v != 0 {
			t.Errorf("before any call: %s = %v (listed %v), want 0", name, v, ok)
		}
	}

	evs := readToolOBEs(t)
	cc := dialPlain(t, srv.addr, grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name)))
	client := buildpb.NewPublishBuildEventClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Bazel's --bes_header=authorization=Bearer TOKEN: one metadata entry,
	// key "authorization", value "Bearer TOKEN".
	authed := metadata.NewOutgoingContext(ctx, metadata.Pairs("authorization", "Bearer s3cret-token"))
	call, err := client.PublishBuildToolEventStream(authed)
	if err != nil {
		t.Fatal(err)
	}
	var bytes int
	for _, ev := range evs {
		req := &buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: ev}
		bytes += proto.Size(req)
		if err := call.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	if err := call.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		r, err := call.Recv()
		if err != nil || r.GetSequenceNumber() != int64(i+1) {
			t.Fatalf("ack %d: %v, %v", i+1, r, err)
		}
	}

	// Refused: no token; then a sequence number 0.
	noTok, err := client.PublishBuildToolEventStream(ctx)
	if err == nil {
		_, err = noTok.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("call without the token: %v, want Unauthenticated", err)
	}
	bad := proto.Clone(evs[0]).(*buildpb.OrderedBuildEvent)
	bad.SequenceNumber = 0
	badCall, err := client.PublishBuildToolEventStream(authed)
	if err != nil {
		t.Fatal(err)
	}
	if err := badCall.Send(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: bad}); err != nil {
		t.Fatal(err)
	}
	if _, err := badCall.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("sequence number 0: %v, want InvalidArgument", err)
	}

	// The last call's interceptor may finish just after its status
	// reached the client.
	var after map[string]float64
	for range 50 {
		after = scrape(t, url)
		if after["bes_serve_streams_open"] == 0 && after[`bes_serve_refused_total{reason="InvalidArgument"}`] == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	n := float64(len(evs))
	for name, want := range map[string]float64{
		"bes_serve_events_received_total":                   n + 1, // and the bad one
		"bes_serve_events_acknowledged_total":               n,
		"bes_serve_received_bytes_total":                    float64(bytes + proto.Size(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: bad})),
		"bes_serve_streams_open":                            0,
		`bes_serve_refused_total{reason="Unauthenticated"}`: 1,
		`bes_serve_refused_total{reason="InvalidArgument"}`: 1,
	} {
		if got, ok := after[name]; !ok || got != want {
			t.Errorf("after %d events: %s = %v (listed %v), want %v", len(evs), name, got, ok, want)
		}
	}
	if c := after["bes_serve_store_sync_seconds_count"]; c < 1 || c > n {
		t.Errorf("bes_serve_store_sync_seconds_count = %v, want 1 to %v syncs", c, n)
	}
	if s := after["bes_serve_store_sync_seconds_sum"]; s <= 0 {
		t.Errorf("bes_serve_store_sync_seconds_sum = %v, want > 0", s)
	}
}

// TestServeLogJSON (issue 14): with --log-format json every line of the
// log is one JSON record with a time, a level and the message of the
// plain log; refusals, of a publish call and of a query, are WARN records
// with their reason.
func TestServeLogJSON(t *testing.T) {
	srv := startServeWith(t, serveOptions{Store: t.TempDir(), LogFormat: "json"})
	evs := readToolOBEs(t)
	cancel, cc := sendAcked(t, srv.addr, evs[:3], 3)
	cancel()
	defer cc.Close()
	ctx, done := context.WithTimeout(context.Background(), 20*time.Second)
	defer done()
	bad := proto.Clone(evs[0]).(*buildpb.OrderedBuildEvent)
	bad.SequenceNumber = 0
	call, err := buildpb.NewPublishBuildEventClient(cc).PublishBuildToolEventStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := call.Send(&buildpb.PublishBuildToolEventStreamRequest{OrderedBuildEvent: bad}); err != nil {
		t.Fatal(err)
	}
	if _, err := call.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("sequence number 0: %v", err)
	}
	if _, err := buildgridpb.NewQueryBuildEventsClient(cc).QueryEventStreams(ctx, &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: "("}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("query of an invalid pattern: %v", err)
	}
	srv.cancel()
	srv.cancel = nil
	if err := <-srv.done; err != nil {
		t.Fatal(err)
	}

	type record struct {
		Time   time.Time
		Level  string
		Msg    string
		Reason string
	}
	var recs []record
	for i, line := range strings.Split(strings.TrimSuffix(srv.log.String(), "\n"), "\n") {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Time.IsZero() || r.Level == "" || r.Msg == "" {
			t.Fatalf("log line %d %q: %v (time %v, level %q, msg %q)", i+1, line, err, r.Time, r.Level, r.Msg)
		}
		if since := time.Since(r.Time); since < 0 || since > time.Minute {
			t.Errorf("log line %d: time %v is %v ago", i+1, r.Time, since)
		}
		recs = append(recs, r)
	}
	if !strings.HasPrefix(recs[0].Msg, "serving on "+srv.addr+" (store ") || recs[0].Level != "INFO" {
		t.Errorf("first record %+v, want INFO serving on %s", recs[0], srv.addr)
	}
	if last := recs[len(recs)-1]; last.Msg != "stopped" {
		t.Errorf("last record %+v, want stopped", last)
	}
	want := []string{"sequence number 0: sequence numbers start at 1", "/buildgrid.v2.QueryBuildEvents/QueryEventStreams from 127.0.0.1:"}
	for _, w := range want {
		found := false
		for _, r := range recs {
			if strings.Contains(r.Msg, w) {
				found = true
				if r.Level != "WARN" || r.Reason != "InvalidArgument" || !strings.HasPrefix(r.Msg, "refused (InvalidArgument): ") {
					t.Errorf("record %+v: want WARN, reason InvalidArgument", r)
				}
			}
		}
		if !found {
			t.Errorf("no record of %q in\n%s", w, srv.log.String())
		}
	}
}

// TestServeLogDefault (issue 14): bes serve logs log/slog text records
// with a time by default; --log-format plain, on the command line or in
// the --config file, keeps the "bes: MESSAGE" lines.
func TestServeLogDefault(t *testing.T) {
	dir := t.TempDir()
	c := startChildLog(t, "--listen 127.0.0.1:0 --store "+dir)
	first := strings.SplitN(c.log(), "\n", 2)[0]
	m := regexp.MustCompile(`^time=(\S+) level=INFO msg="serving on (\S+) \(store `).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("first line %q: want a slog text record time=… level=INFO msg=\"serving on …\"", first)
	}
	if m[2] != c.addr {
		t.Errorf("first line %q: address %s, want %s", first, m[2], c.addr)
	}
	if at, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
		t.Errorf("time %q: %v", m[1], err)
	} else if since := time.Since(at); since < 0 || since > time.Minute {
		t.Errorf("time %v is %v ago", at, since)
	}

	for _, args := range []string{"--log-format plain", "--config " + writeFile(t, "bes.yaml", "log-format: plain\n")} {
		c := startChildLog(t, "--listen 127.0.0.1:0 --store "+dir+" "+args)
		if first := strings.SplitN(c.log(), "\n", 2)[0]; !strings.HasPrefix(first, "bes: serving on "+c.addr+" (store ") {
			t.Errorf("%s: first line %q, want bes: serving on %s", args, first, c.addr)
		}
	}
}

// TestServeBusyPort: a listen address whose port is taken fails bes serve
// with one line naming its flag (--listen, --http, --metrics-listen), and
// before anything is said to be served.
func TestServeBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	for _, flag := range []string{"--listen", "--http", "--metrics-listen"} {
		args := []string{"serve", "--store", t.TempDir(), "--listen", "127.0.0.1:0"}
		args = append(args, flag, addr)
		stdout, stderr, code := runCLI(t, args...)
		want := "bes: " + flag + " " + addr + ": address already in use\n"
		if code != ExitError || stdout != "" || stderr != want {
			t.Errorf("%s busy: exit %d, stdout %q, stderr %q, want %q", flag, code, stdout, stderr, want)
		}
	}
}

// TestServeMetricsQueries: /metrics counts the query calls by method and
// gRPC code, and the bytes of the answers sent: BuildGrid's unary
// QueryEventStreams (an answer, an invalid pattern) and bes.v1.StreamQuery's
// StreamEventStreams (an answer streamed).
func TestServeMetricsQueries(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, code := runCLI(t, "ingest", "--store", dir, tdPath("test_mixed.bep")); code != ExitOK {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	metricsc := make(chan string, 1)
	srv := startServeWith(t, serveOptions{Store: dir, MetricsListen: "127.0.0.1:0", OnMetricsListen: func(a string) { metricsc <- a }})
	url := "http://" + <-metricsc + "/metrics"
	cc := dialPlain(t, srv.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	resp, err := buildgridpb.NewQueryBuildEventsClient(cc).QueryEventStreams(ctx, &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: "657fb236"})
	if err != nil || len(resp.GetStreams()) != 1 {
		t.Fatalf("QueryEventStreams: %d streams, %v", len(resp.GetStreams()), err)
	}
	if _, err := buildgridpb.NewQueryBuildEventsClient(cc).QueryEventStreams(ctx, &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: "("}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("an invalid pattern: %v, want InvalidArgument", err)
	}
	call, err := bespb.NewStreamQueryClient(cc).StreamEventStreams(ctx, &bespb.StreamEventStreamsRequest{BuildIdPattern: "657fb236"})
	if err != nil {
		t.Fatal(err)
	}
	var streamed float64
	for {
		m, err := call.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("StreamEventStreams: %v", err)
		}
		streamed += float64(proto.Size(m))
	}

	// The interceptor counts a call just after its status reached the client.
	var got map[string]float64
	for range 50 {
		got = scrape(t, url)
		if got[`bes_serve_queries_total{code="OK",method="StreamEventStreams"}`] == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, want := range map[string]float64{
		`bes_serve_queries_total{code="OK",method="QueryEventStreams"}`:              1,
		`bes_serve_queries_total{code="InvalidArgument",method="QueryEventStreams"}`: 1,
		`bes_serve_queries_total{code="OK",method="StreamEventStreams"}`:             1,
		`bes_serve_query_sent_bytes_total{method="QueryEventStreams"}`:               float64(proto.Size(resp)),
		`bes_serve_query_sent_bytes_total{method="StreamEventStreams"}`:              streamed,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (listed %v), want %v", name, v, ok, want)
		}
	}
	if streamed == 0 {
		t.Error("StreamEventStreams sent nothing")
	}
}
