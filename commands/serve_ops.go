package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	// gzip-compressed requests (grpc-encoding: gzip) are accepted, as
	// Bazel's --experimental_remote_... and other clients may send them.
	_ "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/server"
)

// serveOps is what an operator watches bes serve with (issue 14): gRPC
// health checking (grpc.health.v1.Health, SERVING while the server
// accepts calls, NOT_SERVING once it is stopping), server reflection
// (grpc.reflection.v1 and v1alpha, for grpcurl and the like), and the
// Prometheus metrics of server.Metrics served at /metrics on
// --metrics-listen, with the Go runtime's and the process's.
type serveOps struct {
	metrics *server.Metrics
	health  *health.Server
	http    *http.Server
	served  chan error
}

// startServeOps creates the metrics and, when lis (bound for
// --metrics-listen) is not nil, serves them over HTTP at /metrics on it;
// onListen, if set, gets the address served.
func startServeOps(lis net.Listener, onListen func(string), log io.Writer) (*serveOps, error) {
	reg := prometheus.NewRegistry()
	m, err := server.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o := &serveOps{metrics: m, health: health.NewServer()}
	if lis == nil {
		return o, nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	o.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	o.served = make(chan error, 1)
	go func() { o.served <- o.http.Serve(lis) }()
	addr := lis.Addr().String()
	fmt.Fprintf(log, "bes: metrics on http://%s/metrics\n", addr)
	if onListen != nil {
		onListen(addr)
	}
	return o, nil
}

// grpcOptions returns the interceptors that count calls; they go before
// any that may refuse a call.
func (o *serveOps) grpcOptions() []grpc.ServerOption { return o.metrics.ServerOptions() }

// backend returns st timed for the metrics.
func (o *serveOps) backend(st store.Backend) store.Backend { return o.metrics.Backend(st) }

// register adds the health and reflection services to gs, after the
// server's own services (reflection lists those registered before).
func (o *serveOps) register(gs *grpc.Server) {
	healthpb.RegisterHealthServer(gs, o.health)
	reflection.Register(gs)
}

// stopping makes health checks answer NOT_SERVING, so that a load
// balancer sends no new build there while open calls finish.
func (o *serveOps) stopping() { o.health.Shutdown() }

// close stops serving the metrics.
func (o *serveOps) close() error {
	if o.http == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := o.http.Shutdown(ctx)
	if serr := <-o.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
