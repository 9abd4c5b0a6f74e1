package commands

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bespb"
	"github.com/bes-cli/bes/store/buildgridpb"
	"github.com/bes-cli/bes/store/server"
)

const defaultListen = "127.0.0.1:8980"

// serveMemoryLimit is the Go runtime's soft memory limit in bes serve
// (runtime/debug.SetMemoryLimit) unless GOMEMLIMIT sets another: the heap
// is collected harder as it nears it. What the server holds live is
// bounded by its limits (server.Options, server.QueryOptions), far below.
const serveMemoryLimit = 200 << 20

type serveOptions struct {
	Store        string
	Listen       string
	Insecure     bool
	TLSCert      string // PEM files of the server's certificate and key
	TLSKey       string
	TokenFile    string // file of the bearer token every call must carry
	MaxEventSize int
	Grace        time.Duration
	// Limits on the streams held open (server.Options).
	IdleTimeout          time.Duration
	MaxOpenStreams       int
	MaxOpenStreamsClient int
	MaxConnsPerClient    int
	// MetricsListen is where /metrics is served over HTTP; "" serves none
	// (issue 14, serve_ops.go).
	MetricsListen string
	// OnMetricsListen, if set, is called with the metrics address.
	OnMetricsListen func(addr string)
	// LogFormat is --log-format: plain, text or json (serve_log.go). The
	// command's default is text; "" here is plain, the "bes: MESSAGE"
	// lines the in-process tests read.
	LogFormat string
	// OnListen, if set, is called with the address served once the
	// server listens (tests use it instead of parsing the log).
	OnListen func(addr string)
	// HTTP is --http: where the pages are served (serve_http.go); "" none.
	HTTP         string
	OnHTTPListen func(addr string) // as OnListen, for HTTP
}

func newServeCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "receive Bazel's build events over gRPC (a Build Event Service) into the store",
		Description: commandHelp(`Runs a Build Event Service (google.devtools.build.v1.PublishBuildEvent)
and BuildGrid's query API (buildgrid.v2.QueryBuildEvents/QueryEventStreams)
on --listen. Point Bazel at it:

   bazel build --bes_backend=grpc://127.0.0.1:8980 --bes_lifecycle_events //...

Every stream received — Bazel's tool event stream and the lifecycle streams
— is written to the store as its events arrive: an event is acknowledged
only once it is on disk, so what Bazel saw acknowledged survives the server
being stopped or killed. bes streams and bes dump see the streams while the
server runs (the event count in bes streams may lag by a second while a
stream is open). An event re-sent after a reconnect is acknowledged again
and stored once; a gap or out-of-order sequence number is refused.

The store is the one truth: the server keeps in memory only what the
streams it holds open need, drops a stream once it finishes, and answers a
client that returns from the store (a stream replaced meanwhile with
bes ingest --replace is continued from what the store holds). A stream
whose call ends before its last event (the client closed its side, the
connection broke or was cancelled, as when Bazel is killed) is let go at
once (its file closed, its lock released, one line logged), unless a newer
call of its client took it; one whose call stays open but receives no
event for --idle-timeout is let go then. A client that returns continues
it. At most --max-open-streams streams are
open at once, --max-open-streams-per-client from one IP address; a new
stream over either is refused with ResourceExhausted. A client may hold
--max-connections-per-client connections at once; one more is closed. A Bazel payload that
is not well-formed protobuf is refused with InvalidArgument (a string that
is not UTF-8, as Bazel sends them, is stored byte for byte).

QueryEventStreams reads the store. Its answer is one message, at most
4 MiB and 10,000 streams (what a gRPC client receives by default); a larger
one is refused with ResourceExhausted: narrow the pattern, e.g. to one
invocation ("INVOCATION_ID$"), read the store with bes dump, or ask
bes.v1.StreamQuery/StreamEventStreams (store/proto/bes/v1/query.proto, listed
by server reflection): the same streams in the same order, as a server stream
of messages of at most 1 MiB of events each naming its StreamId (an event
over 1 MiB comes in parts), so a client with gRPC's default 4 MiB limit
receives an answer of any size. Both take the same token and pattern rules.

One line per stream opened, finished and let go, and per request refused
(refused authentications: at most one line per 10 seconds), goes to
standard error. The first line is "serving on HOST:PORT (store DIR)",
with "; TLS, bearer token" when they are on; with port 0 it names the port
chosen. SIGINT or SIGTERM stops accepting
calls, waits up to --grace for open ones, then ends them.

The log is log/slog's text records by default (--log-format text):
time=2026-11-29T19:03:11.123Z level=INFO msg="serving on …", with level
WARN for warnings and refusals, which carry reason=gRPC code; a refused
query is logged too. --log-format json writes the same records as one
JSON object a line; --log-format plain writes "bes: MESSAGE" lines
without time, as the other commands do. The gRPC health service
(grpc.health.v1.Health, no token needed) answers SERVING, NOT_SERVING once
stopping; server reflection lists the services (grpcurl). --metrics-listen
serves Prometheus metrics at /metrics over HTTP: bes_serve_streams_open,
bes_serve_events_received_total, bes_serve_events_acknowledged_total,
bes_serve_refused_total{reason}, bes_serve_received_bytes_total,
bes_serve_store_sync_seconds, bes_serve_queries_total{method,code},
bes_serve_query_sent_bytes_total{method}. gzip-compressed requests are
accepted.

It listens on 127.0.0.1 by default. An address other machines can reach
needs TLS (--tls-cert and --tls-key, PEM files) or, to serve in plain text
anyway, --insecure. --auth-token-file makes every call, publishing or
querying, carry the file's token as "authorization: Bearer TOKEN" gRPC
metadata (Bazel: --bes_header=authorization="Bearer TOKEN"; bes replay:
--auth-token-file); others are refused with Unauthenticated. A token file
other users may read gets a warning.

EXAMPLES:
   bes serve
   bes serve --listen 127.0.0.1:0 --store ./bes-store
   bes serve --listen 0.0.0.0:8980 --tls-cert cert.pem --tls-key key.pem --auth-token-file token
   bes serve --listen 0.0.0.0:8980 --insecure
   bes serve --config bes.yaml            # "listen: 0.0.0.0:8980" … one flag a line`),
		Flags: []cli.Flag{
			configFlag(),
			storeFlag(),
			&cli.StringFlag{Name: "listen", Value: defaultListen, Usage: "`HOST:PORT` to listen on; port 0 picks a free port"},
			&cli.BoolFlag{Name: "insecure", Usage: "allow a --listen address that is not loopback without TLS"},
			&cli.StringFlag{Name: "tls-cert", Usage: "PEM `FILE` of the server's TLS certificate (chain); with --tls-key, serve TLS"},
			&cli.StringFlag{Name: "tls-key", Usage: "PEM `FILE` of the TLS certificate's private key"},
			&cli.StringFlag{Name: "http", Usage: httpFlagUsage},
			&cli.StringFlag{Name: "auth-token-file", Usage: "`FILE` holding a token every call must carry as \"authorization: Bearer TOKEN\""},
			&cli.IntFlag{Name: "max-event-size", Value: bepfile.DefaultMaxEventSize, Usage: "largest event accepted, in bytes; a larger one is refused (ResourceExhausted)"},
			&cli.DurationFlag{Name: "grace", Value: 10 * time.Second, Usage: "on SIGINT/SIGTERM, how long to wait for open calls before ending them"},
			&cli.DurationFlag{Name: "idle-timeout", Value: server.DefaultIdleTimeout, Usage: "close a stream that received no event for this long, releasing its file and lock (its client may continue it later); 0: never"},
			&cli.IntFlag{Name: "max-open-streams", Value: server.DefaultMaxOpenStreams, Usage: "most streams open at once; a new stream over it is refused (ResourceExhausted) until one finishes or goes idle"},
			&cli.IntFlag{Name: "max-open-streams-per-client", Value: server.DefaultMaxOpenStreamsPerClient, Usage: "most streams one client (IP address) may hold open at once"},
			&cli.StringFlag{Name: "log-format", Value: logFormatText, Usage: "`FORMAT` of the log on standard error: text or json (log/slog records with time, level, msg; refusals with their reason), or plain (\"bes: MESSAGE\" lines, no time)"},
			&cli.StringFlag{Name: "metrics-listen", Usage: "`HOST:PORT` to serve Prometheus metrics on, over HTTP at /metrics; port 0 picks a free port"},
			&cli.IntFlag{Name: "max-connections-per-client", Value: server.DefaultMaxConnsPerClient, Usage: "most connections one client (IP address) may hold open at once; one more is closed at once"},
		},
		OnUsageError: usageErrorHandler,
		Before:       applyConfigFile, // --config (serve_config.go)
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return &usageError{msg: fmt.Sprintf("serve takes no arguments, got %q", c.Args().First())}
			}
			opts := serveOptions{
				Store:        c.String("store"),
				Listen:       c.String("listen"),
				Insecure:     c.Bool("insecure"),
				TLSCert:      c.String("tls-cert"),
				TLSKey:       c.String("tls-key"),
				TokenFile:    c.String("auth-token-file"),
				HTTP:         c.String("http"),
				MaxEventSize: c.Int("max-event-size"),
				Grace:        c.Duration("grace"),

				IdleTimeout:          c.Duration("idle-timeout"),
				MaxOpenStreams:       c.Int("max-open-streams"),
				MaxOpenStreamsClient: c.Int("max-open-streams-per-client"),
				MaxConnsPerClient:    c.Int("max-connections-per-client"),
				MetricsListen:        c.String("metrics-listen"),
				LogFormat:            c.String("log-format"),
			}
			return runServe(c.Context, opts, c.App.ErrWriter)
		},
	}
}

// syncWriter serialises writes from the server's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// listenError is a listen address that could not be bound, named by its
// flag: "--listen 127.0.0.1:8980: address already in use".
type listenError struct {
	flag, addr string
	err        error // of net.Listen
}

func (e *listenError) Error() string {
	reason := e.err
	var se *os.SyscallError
	var oe *net.OpError
	if errors.As(e.err, &se) {
		reason = se.Err
	} else if errors.As(e.err, &oe) {
		reason = oe.Err
	}
	return fmt.Sprintf("%s %s: %v", e.flag, e.addr, reason)
}

func (e *listenError) Unwrap() error { return e.err }

// listenOn binds addr for flag; its error is a *listenError.
func listenOn(flag, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &listenError{flag: flag, addr: addr, err: err}
	}
	return lis, nil
}

// bindServe binds --listen, and --http and --metrics-listen when given
// (nil listeners when not), closing those it bound if one fails.
func bindServe(opts serveOptions) (lis, httpLis, metricsLis net.Listener, err error) {
	if lis, err = listenOn("--listen", opts.Listen); err != nil {
		return nil, nil, nil, err
	}
	if opts.HTTP != "" {
		if httpLis, err = listenOn("--http", opts.HTTP); err != nil {
			closeListeners(lis)
			return nil, nil, nil, err
		}
	}
	if opts.MetricsListen != "" {
		if metricsLis, err = listenOn("--metrics-listen", opts.MetricsListen); err != nil {
			closeListeners(lis, httpLis)
			return nil, nil, nil, err
		}
	}
	return lis, httpLis, metricsLis, nil
}

// closeListeners closes the listeners that are not nil.
func closeListeners(ls ...net.Listener) {
	for _, l := range ls {
		if l != nil {
			l.Close()
		}
	}
}

// isLoopback reports whether a listen address serves this machine only.
func isLoopback(listen string) (bool, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false, err
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// checkExposure checks that a server reachable from other machines is
// protected, or explicitly not: a --listen address that is not loopback
// needs TLS or --insecure.
func checkExposure(opts serveOptions) (loopback bool, err error) {
	loop, err := isLoopback(opts.Listen)
	if err != nil {
		return false, &usageError{msg: fmt.Sprintf("--listen %q: %v", opts.Listen, err), cause: err}
	}
	if (opts.TLSCert == "") != (opts.TLSKey == "") {
		return loop, &usageError{msg: "--tls-cert and --tls-key go together"}
	}
	if !loop && opts.TLSCert == "" && !opts.Insecure {
		return loop, &usageError{msg: fmt.Sprintf("--listen %s is not a loopback address: serve TLS on it (--tls-cert, --tls-key), or add --insecure to serve it in plain text anyway", opts.Listen)}
	}
	return loop, nil
}

// serverSecurity returns the gRPC options for TLS and the bearer token, and
// a description of them for the log; refused calls are logged to log
// (rate-limited, server.TokenAuth), and a token file other users may read
// gets a warning there (issue 13), as ssh warns of a private key.
func serverSecurity(opts serveOptions, log io.Writer) ([]grpc.ServerOption, string, error) {
	var gopts []grpc.ServerOption
	var what []string
	if opts.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return nil, "", fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
		what = append(what, "TLS")
	}
	if opts.TokenFile != "" {
		tok, err := readTokenFile(opts.TokenFile)
		if err != nil {
			return nil, "", fmt.Errorf("--auth-token-file: %w", err)
		}
		auth, err := server.NewTokenAuth(tok)
		if err != nil {
			return nil, "", fmt.Errorf("--auth-token-file: %w", err)
		}
		auth.Log = log
		if fi, err := os.Stat(opts.TokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(log, "bes: warning: --auth-token-file %s is accessible by other users (mode %04o): anyone who reads it can write to the store; chmod 600 %s\n", opts.TokenFile, fi.Mode().Perm(), opts.TokenFile)
		}
		gopts = append(gopts, auth.ServerOptions()...)
		what = append(what, "bearer token")
	}
	return gopts, strings.Join(what, ", "), nil
}

func runServe(ctx context.Context, opts serveOptions, errw io.Writer) error {
	loop, err := checkExposure(opts)
	if err != nil {
		return err
	}
	if _, err := checkHTTPExposure(opts); err != nil {
		return err
	}
	if opts.MaxEventSize <= 0 {
		return &usageError{msg: "--max-event-size must be positive"}
	}
	if opts.IdleTimeout < 0 || opts.MaxOpenStreams < 0 || opts.MaxOpenStreamsClient < 0 || opts.MaxConnsPerClient < 0 {
		return &usageError{msg: "--idle-timeout, --max-open-streams, --max-open-streams-per-client and --max-connections-per-client must not be negative"}
	}
	log, err := newServeLog(opts.LogFormat, errw)
	if err != nil {
		return err
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// Collect garbage before the heap passes the documented bound
		// (issue 13; BENCHMARKS.md), rather than at twice the live heap.
		debug.SetMemoryLimit(serveMemoryLimit)
	}
	security, desc, err := serverSecurity(opts, log)
	if err != nil {
		return err
	}
	st, err := createStore(opts.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	// Streams a server left open when it was killed: bring their index
	// entries up to date with their files.
	if rec, ok := st.(store.Reconciler); ok {
		fixed, err := rec.Reconcile(ctx)
		if err != nil {
			fmt.Fprint(log, Diagnostic(err))
		}
		for _, k := range fixed {
			fmt.Fprintf(log, "bes: stream %s: index entry updated from its file (left open by an earlier server)\n", safeCell(k))
		}
	}

	// Every listener is bound before anything says it serves: a busy
	// port of any flag fails the command with nothing served.
	lis, httpLis, metricsLis, err := bindServe(opts)
	if err != nil {
		return err
	}
	ops, err := startServeOps(metricsLis, opts.OnMetricsListen, log)
	if err != nil {
		closeListeners(lis, httpLis, metricsLis)
		return err
	}
	defer ops.close()
	lis = server.LimitConnsPerClient(lis, opts.MaxConnsPerClient, log)
	// The store is the one truth: the server holds in memory only what
	// its open streams need, and queries read the store (issue 13).
	pub := server.NewPublishBuildEventServer(ops.backend(st), server.Options{
		MaxEventSize:            opts.MaxEventSize,
		Log:                     log,
		IdleTimeout:             cmp.Or(opts.IdleTimeout, -1), // 0: never
		MaxOpenStreams:          opts.MaxOpenStreams,
		MaxOpenStreamsPerClient: opts.MaxOpenStreamsClient,
	})
	gopts := append(append(ops.grpcOptions(), security...), refusalLog(log)...)
	gs := grpc.NewServer(append(gopts, server.GRPCOptions(opts.MaxEventSize)...)...)
	buildpb.RegisterPublishBuildEventServer(gs, pub)
	bgQuery, besQuery := server.NewQueryServers(st, server.QueryOptions{})
	buildgridpb.RegisterQueryBuildEventsServer(gs, bgQuery)
	bespb.RegisterStreamQueryServer(gs, besQuery)
	ops.register(gs)

	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	addr := lis.Addr().String()
	if desc != "" {
		fmt.Fprintf(log, "bes: serving on %s (store %s; %s)\n", addr, st.Location(), desc)
	} else {
		fmt.Fprintf(log, "bes: serving on %s (store %s)\n", addr, st.Location())
	}
	if !loop && opts.TokenFile == "" {
		fmt.Fprintf(log, "bes: warning: %s is reachable from other machines and calls need no token (--auth-token-file): anyone who reaches it can write to the store\n", addr)
	}
	if opts.OnListen != nil {
		opts.OnListen(addr)
	}
	stopHTTP, err := startHTTP(ctx, opts, httpLis, st, log)
	if err != nil {
		gs.Stop()
		pub.Close(context.Background())
		return err
	}
	defer stopHTTP()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var serveErr error
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case serveErr = <-served:
			break wait
		case <-tick.C:
			if err := pub.Flush(context.WithoutCancel(ctx)); err != nil {
				fmt.Fprint(log, Diagnostic(err))
			}
		}
	}

	if serveErr == nil {
		fmt.Fprintf(log, "bes: stopping: waiting up to %v for open calls\n", opts.Grace)
		ops.stopping()
		stopped := make(chan struct{})
		go func() {
			gs.GracefulStop()
			close(stopped)
		}()
		timer := time.NewTimer(opts.Grace)
		select {
		case <-stopped:
		case <-timer.C:
			fmt.Fprintf(log, "bes: ending the calls still open\n")
			gs.Stop()
			<-stopped
		}
		timer.Stop()
	} else {
		gs.Stop()
	}
	// Every acknowledged event is on disk already; this writes the final
	// index entries of the streams still open.
	closeErr := pub.Close(context.Background())
	if serveErr != nil && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	if closeErr != nil {
		return closeErr
	}
	fmt.Fprintf(log, "bes: stopped\n")
	return nil
}
