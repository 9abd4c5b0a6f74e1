// Package besclient is the client half of the Build Event Service protocol
// (google.devtools.build.v1.PublishBuildEvent), what `bes replay` uses: it
// sends build event streams to a Build Event Service the way Bazel's BES
// client does: the lifecycle events through PublishLifecycleEvent, each tool
// stream through one PublishBuildToolEventStream call with every event
// acknowledged, and after a broken connection a new call that re-sends
// everything not yet acknowledged.
package besclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bes-cli/bes/bepfile"
)

// Defaults of Options, Bazel's where Bazel has one.
const (
	DefaultWindow     = 1000        // un-acknowledged events in flight
	DefaultRetries    = 4           // Bazel's BAZEL_BES_NUM_RETRIES_ON_RPC_FAILURE
	DefaultBackoff    = time.Second // Bazel's first retry delay; then ×1.6 per retry
	DefaultMaxBackoff = 30 * time.Second
)

// Stream is one stream to publish: its identity and its events in order
// (as a bepfile.Reader reads them).
type Stream struct {
	Info   *bepfile.Stream
	Events []bepfile.Event
}

// Options configure a Publisher.
type Options struct {
	// BuildID and InvocationID, when set, replace the ids of every stream
	// (Bazel's --build_request_id and --invocation_id). A build-level
	// lifecycle stream keeps its empty invocation id. InvocationID may be
	// set only when the streams hold one invocation.
	BuildID, InvocationID string
	// ProjectID is sent with every request; "" keeps the project id of
	// recorded publish requests (if any).
	ProjectID string
	// Keywords are added to the notification_keywords of a tool stream's
	// first request, after Bazel's own "command_name=CMD" and
	// "protocol_name=BEP" (or after the recorded ones).
	Keywords []string
	// Lifecycle makes the lifecycle events Bazel sends with
	// --bes_lifecycle_events (build_enqueued, invocation_attempt_started,
	// then the tool stream, invocation_attempt_finished, build_finished)
	// for tool streams whose lifecycle streams are not among the streams
	// given. Lifecycle streams that are given are always published.
	Lifecycle bool
	// Metadata is sent with every call (e.g. authorization).
	Metadata metadata.MD
	// Window bounds the events sent and not yet acknowledged; 0 means
	// DefaultWindow.
	Window int
	// Retries bounds the failed calls in a row that made no progress
	// (acknowledged nothing) before a stream is given up; a call that
	// made progress resets the count, as in Bazel. 0 means
	// DefaultRetries; negative means none.
	Retries int
	// Backoff is the delay before the first retry, growing 1.6× per
	// retry up to MaxBackoff; 0 means DefaultBackoff and
	// DefaultMaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Now gives the time of synthesized lifecycle events of streams whose
	// events carry none; nil means time.Now.
	Now func() time.Time
	// Log gets one line per retry; nil logs nothing.
	Log io.Writer
}

// Result is what happened to one stream.
type Result struct {
	Key  string // the stream key as published
	Kind string // "tool" or "lifecycle"
	// Synthesized is set for lifecycle streams made by the Publisher.
	Synthesized bool
	Events      int // events to publish
	Sent        int // events sent at least once
	Resent      int // requests that repeated an event, after a reconnect
	Acked       int // events acknowledged
	Attempts    int // calls made
	Err         error
}

// OK reports whether every event of the stream was acknowledged.
func (r *Result) OK() bool { return r.Err == nil && r.Acked == r.Events }

// Publisher publishes streams through a PublishBuildEvent client.
type Publisher struct {
	client buildpb.PublishBuildEventClient
	opts   Options
}

// New returns a Publisher using client.
func New(client buildpb.PublishBuildEventClient, opts Options) *Publisher {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.Retries == 0 {
		opts.Retries = DefaultRetries
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.Backoff {
		opts.MaxBackoff = opts.Backoff
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Publisher{client: client, opts: opts}
}

// ErrInvocationOverride is returned (wrapped) by Publish when
// Options.InvocationID is set for streams of several invocations.
var ErrInvocationOverride = errors.New("an invocation id override needs the streams of a single invocation")

// Publish publishes streams in Bazel's order: for each build, its
// build-level lifecycle events but the last, then for each invocation its
// invocation_attempt_started, its tool stream and its
// invocation_attempt_finished, then build_finished. Streams of other
// components are published as tool streams. It returns one Result per
// stream published, in that order; a stream that fails does not stop the
// others. The error is for what prevents publishing at all (bad options,
// or ctx done).
func (p *Publisher) Publish(ctx context.Context, streams []*Stream) ([]Result, error) {
	streams, err := p.override(streams)
	if err != nil {
		return nil, err
	}
	steps, err := p.plan(streams)
	if err != nil {
		return nil, err
	}
	if len(p.opts.Metadata) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, metadata.Join(p.opts.Metadata))
	}
	results := map[string]*Result{}
	var order []*Result
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return flatten(order), err
		}
		r := results[s.stream.Info.Key]
		if r == nil {
			r = &Result{Key: s.stream.Info.Key, Kind: s.kind, Synthesized: s.synthesized, Events: len(s.stream.Events)}
			results[s.stream.Info.Key] = r
			order = append(order, r)
		}
		if s.kind == kindTool {
			p.sendTool(ctx, s.stream, r)
		} else {
			p.sendLifecycle(ctx, s.stream, s.events, r)
		}
	}
	return flatten(order), ctx.Err()
}

func flatten(rs []*Result) []Result {
	out := make([]Result, len(rs))
	for i, r := range rs {
		out[i] = *r
	}
	return out
}

// retryable reports whether a call that failed with err is tried again:
// every status but InvalidArgument and FailedPrecondition, as in Bazel, and
// also those that another try cannot change.
func retryable(err error) bool {
	if plaintextServer(err) {
		return false // another try meets the same server
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists,
		codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented, codes.OK:
		return false
	}
	return true
}

// plaintextServer reports whether err is a TLS client's handshake with a
// server that does not speak TLS (crypto/tls's "first record does not look
// like a TLS handshake"): an address without a scheme is grpcs://, as for
// Bazel's --bes_backend, and a plaintext bes serve is grpc://HOST:PORT.
func plaintextServer(err error) bool {
	return err != nil && strings.Contains(err.Error(), "first record does not look like a TLS handshake")
}

// explain returns err, with what to do about it when that is known (a TLS
// client meeting a plaintext server).
func explain(err error) error {
	if plaintextServer(err) {
		return fmt.Errorf("%w (the server does not speak TLS: for a plaintext server give grpc://HOST:PORT; an address without a scheme is grpcs://, as for Bazel's --bes_backend)", err)
	}
	return err
}

// backoff returns the delay before retry number n (from 0).
func (p *Publisher) backoff(n int) time.Duration {
	d := float64(p.opts.Backoff) * math.Pow(1.6, float64(n))
	if d > float64(p.opts.MaxBackoff) {
		return p.opts.MaxBackoff
	}
	return time.Duration(d)
}

func (p *Publisher) logf(format string, args ...any) {
	if p.opts.Log != nil {
		fmt.Fprintf(p.opts.Log, "bes: "+format+"\n", args...)
	}
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
