package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// Metrics are the Prometheus metrics of `bes serve` (issue 14), counted
// by gRPC interceptors around the publish service and by a wrapper of the
// store (Backend). Its methods are safe for concurrent use.
//
//   - bes_serve_streams_open (gauge): PublishBuildToolEventStream calls
//     open now.
//   - bes_serve_events_received_total (counter): requests of
//     google.devtools.build.v1.PublishBuildEvent received: each
//     PublishBuildToolEventStreamRequest and PublishLifecycleEventRequest.
//   - bes_serve_events_acknowledged_total (counter): of them, those
//     acknowledged (a stream's response; a lifecycle call that succeeded),
//     i.e. durable in the store.
//   - bes_serve_refused_total{reason} (counter): publish calls refused,
//     by gRPC status code name (Unauthenticated, InvalidArgument,
//     FailedPrecondition, ResourceExhausted, …): one per call, since a
//     refusal ends the call.
//   - bes_serve_received_bytes_total (counter): bytes of the requests
//     received, as protobuf-encoded (gRPC's message size before
//     compression).
//   - bes_serve_store_sync_seconds (histogram): how long the store took to
//     make a stream's appended events durable (store.Appender.Sync), the
//     wait before they are acknowledged.
//   - bes_serve_queries_total{method,code} (counter): query calls ended,
//     by method (QueryEventStreams: BuildGrid's unary
//     buildgrid.v2.QueryBuildEvents method; StreamEventStreams:
//     bes.v1.StreamQuery's) and gRPC status code name (OK,
//     ResourceExhausted, InvalidArgument, Unauthenticated, …; a call the
//     client cancelled is Canceled).
//   - bes_serve_query_sent_bytes_total{method} (counter): bytes of the
//     query answers sent (protobuf encoding, before gRPC compression).
type Metrics struct {
	open      prometheus.Gauge
	received  prometheus.Counter
	acked     prometheus.Counter
	refused   *prometheus.CounterVec
	bytes     prometheus.Counter
	storeSync prometheus.Histogram
	queries   *prometheus.CounterVec
	queryOut  *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg; registering
// twice in one registry is an error.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "bes_serve_streams_open",
			Help: "PublishBuildToolEventStream calls open now."}),
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: "bes_serve_events_received_total",
			Help: "Build events received (PublishBuildToolEventStream and PublishLifecycleEvent requests)."}),
		acked: prometheus.NewCounter(prometheus.CounterOpts{Name: "bes_serve_events_acknowledged_total",
			Help: "Build events acknowledged, once durable in the store."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bes_serve_refused_total",
			Help: "Publish calls refused, by gRPC status code."}, []string{"reason"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "bes_serve_received_bytes_total",
			Help: "Bytes of build event requests received (protobuf encoding, before gRPC compression)."}),
		storeSync: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bes_serve_store_sync_seconds",
			Help:    "Time the store took to make appended events durable (before they are acknowledged).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}), // 100µs … 26s
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bes_serve_queries_total",
			Help: "Query calls ended (QueryEventStreams, StreamEventStreams), by method and gRPC status code."}, []string{"method", "code"}),
		queryOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bes_serve_query_sent_bytes_total",
			Help: "Bytes of query answers sent (protobuf encoding, before gRPC compression), by method."}, []string{"method"}),
	}
	for _, c := range []prometheus.Collector{m.open, m.received, m.acked, m.refused, m.bytes, m.storeSync, m.queries, m.queryOut} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// publishService is the full name of the service whose calls are counted.
const publishService = "/google.devtools.build.v1.PublishBuildEvent/"

// queryMethod returns the name of a query method (its last element) for
// bes_serve_queries_total, "" for another method.
func queryMethod(fullMethod string) string {
	for _, svc := range []string{"/buildgrid.v2.QueryBuildEvents/", "/bes.v1.StreamQuery/"} {
		if name, ok := strings.CutPrefix(fullMethod, svc); ok {
			return name
		}
	}
	return ""
}

// query counts a query call of method that ended with err.
func (m *Metrics) query(method string, err error) {
	code := status.Code(err)
	if errors.Is(err, context.Canceled) {
		code = codes.Canceled
	}
	m.queries.WithLabelValues(method, code.String()).Inc()
}

// sent counts the bytes of a query answer's message.
func (m *Metrics) sent(method string, msg any) {
	if pm, ok := msg.(proto.Message); ok {
		m.queryOut.WithLabelValues(method).Add(float64(proto.Size(pm)))
	}
}

// ServerOptions returns the interceptors that count the calls of the
// publish service. They must come before those that may refuse a call
// (TokenAuth.ServerOptions) to count their refusals.
func (m *Metrics) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if q := queryMethod(info.FullMethod); q != "" {
				resp, err := h(ctx, req)
				m.query(q, err)
				if err == nil {
					m.sent(q, resp)
				}
				return resp, err
			}
			if !strings.HasPrefix(info.FullMethod, publishService) {
				return h(ctx, req)
			}
			m.receive(req)
			resp, err := h(ctx, req)
			if err != nil {
				m.refuse(err)
			} else {
				m.acked.Inc()
			}
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if q := queryMethod(info.FullMethod); q != "" {
				err := h(srv, &queryStream{ServerStream: ss, m: m, method: q})
				m.query(q, err)
				return err
			}
			if !strings.HasPrefix(info.FullMethod, publishService) {
				return h(srv, ss)
			}
			m.open.Inc()
			defer m.open.Dec()
			err := h(srv, &countingStream{ServerStream: ss, m: m})
			if err != nil {
				m.refuse(err)
			}
			return err
		}),
	}
}

func (m *Metrics) receive(req any) {
	m.received.Inc()
	if pm, ok := req.(proto.Message); ok {
		m.bytes.Add(float64(proto.Size(pm)))
	}
}

func (m *Metrics) refuse(err error) {
	if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return // the client went away: nothing was refused
	}
	m.refused.WithLabelValues(status.Code(err).String()).Inc()
}

// countingStream counts the requests received and responses sent on one
// streaming call.
type countingStream struct {
	grpc.ServerStream
	m *Metrics
}

func (s *countingStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil {
		s.m.receive(msg)
	}
	return err
}

func (s *countingStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if _, ok := msg.(*buildpb.PublishBuildToolEventStreamResponse); ok && err == nil {
		s.m.acked.Inc()
	}
	return err
}

// queryStream counts the bytes of a streamed query answer.
type queryStream struct {
	grpc.ServerStream
	m      *Metrics
	method string
}

func (s *queryStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err == nil {
		s.m.sent(s.method, msg)
	}
	return err
}

// Backend returns b with the time of every Appender.Sync observed in
// bes_serve_store_sync_seconds; everything else is b's own.
func (m *Metrics) Backend(b store.Backend) store.Backend {
	return &timedBackend{Backend: b, m: m}
}

type timedBackend struct {
	store.Backend
	m *Metrics
}

func (b *timedBackend) OpenAppend(ctx context.Context, st *bepfile.Stream, opts store.AppendOptions) (store.Appender, *store.Stream, error) {
	a, s, err := b.Backend.OpenAppend(ctx, st, opts)
	if err != nil {
		return a, s, err
	}
	return &timedAppender{Appender: a, m: b.m}, s, nil
}

type timedAppender struct {
	store.Appender
	m *Metrics
}

func (a *timedAppender) Sync(ctx context.Context) error {
	t := time.Now()
	err := a.Appender.Sync(ctx)
	a.m.storeSync.Observe(time.Since(t).Seconds())
	return err
}
