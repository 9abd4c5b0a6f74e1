package commands

import (
	"bufio"
	"context"
	"net/http"
	"regexp"
	"slices"
	"strconv"
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
		if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			return nil, err
		}
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
	for _, want := range []string{"buildgrid.v2.QueryBuildEvents", "google.devtools.build.v1.PublishBuildEvent", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
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
