package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/buildgridpb"
	"github.com/bes-cli/bes/store/server"
)

const defaultListen = "127.0.0.1:8980"

type serveOptions struct {
	Store        string
	Listen       string
	Insecure     bool
	MaxEventSize int
	Grace        time.Duration
	// OnListen, if set, is called with the address served once the
	// server listens (tests use it instead of parsing the log).
	OnListen func(addr string)
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

One line per stream opened and finished, and per request refused, goes to
standard error. The first line is "bes: serving on HOST:PORT (store DIR)";
with port 0 it names the port chosen. SIGINT or SIGTERM stops accepting
calls, waits up to --grace for open ones, then ends them.

The server has no TLS and no authentication yet: it listens on 127.0.0.1 by
default, and any other address needs --insecure.

EXAMPLES:
   bes serve
   bes serve --listen 127.0.0.1:0 --store ./bes-store
   bes serve --listen 0.0.0.0:8980 --insecure`),
		Flags: []cli.Flag{
			storeFlag(),
			&cli.StringFlag{Name: "listen", Value: defaultListen, Usage: "`HOST:PORT` to listen on; port 0 picks a free port"},
			&cli.BoolFlag{Name: "insecure", Usage: "allow a --listen address that is not loopback (the server has no TLS or authentication)"},
			&cli.IntFlag{Name: "max-event-size", Value: bepfile.DefaultMaxEventSize, Usage: "largest event accepted, in bytes; a larger one is refused (ResourceExhausted)"},
			&cli.DurationFlag{Name: "grace", Value: 10 * time.Second, Usage: "on SIGINT/SIGTERM, how long to wait for open calls before ending them"},
		},
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return &usageError{fmt.Sprintf("serve takes no arguments, got %q", c.Args().First())}
			}
			opts := serveOptions{
				Store:        c.String("store"),
				Listen:       c.String("listen"),
				Insecure:     c.Bool("insecure"),
				MaxEventSize: c.Int("max-event-size"),
				Grace:        c.Duration("grace"),
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

func runServe(ctx context.Context, opts serveOptions, errw io.Writer) error {
	loop, err := isLoopback(opts.Listen)
	if err != nil {
		return &usageError{fmt.Sprintf("--listen %q: %v", opts.Listen, err)}
	}
	if !loop && !opts.Insecure {
		return &usageError{fmt.Sprintf("--listen %s is not a loopback address, and bes serve has no TLS or authentication yet: add --insecure to serve on it anyway", opts.Listen)}
	}
	if opts.MaxEventSize <= 0 {
		return &usageError{"--max-event-size must be positive"}
	}
	log := &syncWriter{w: errw}
	st, err := openStore(opts.Store)
	if err != nil {
		return err
	}
	// Streams a server left open when it was killed: bring their index
	// entries up to date with their files.
	fixed, err := st.Reconcile(ctx)
	if err != nil {
		fmt.Fprintf(log, "bes: %v\n", err)
	}
	for _, k := range fixed {
		fmt.Fprintf(log, "bes: stream %s: index entry updated from its file (left open by an earlier server)\n", k)
	}

	lis, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return err
	}
	mem := store.New()
	pub := server.NewPublishBuildEventServer(mem, server.Options{
		MaxEventSize: opts.MaxEventSize,
		Persister:    server.NewLocalPersister(st, "grpc", 0),
		Log:          log,
	})
	gs := grpc.NewServer(
		// Room for the request around the largest event; the service
		// refuses a larger event itself, naming it.
		grpc.MaxRecvMsgSize(opts.MaxEventSize+64<<10),
		grpc.WaitForHandlers(true),
	)
	buildpb.RegisterPublishBuildEventServer(gs, pub)
	buildgridpb.RegisterQueryBuildEventsServer(gs, server.NewQueryBuildEventsServer(server.StoreSource(mem, st)))

	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	addr := lis.Addr().String()
	fmt.Fprintf(log, "bes: serving on %s (store %s)\n", addr, st.Dir())
	if opts.OnListen != nil {
		opts.OnListen(addr)
	}

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
				fmt.Fprintf(log, "bes: %v\n", err)
			}
		}
	}

	if serveErr == nil {
		fmt.Fprintf(log, "bes: stopping: waiting up to %v for open calls\n", opts.Grace)
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
