package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/besclient"
)

type replayOptions struct {
	To      string
	Read    bepfile.Options
	Format  string
	CACert  string
	Headers []string // KEY=VALUE
	// TokenFile holds a bearer token sent as "authorization: Bearer TOKEN".
	TokenFile string
	Publish   besclient.Options
}

// replayRow is one stream published, as printed.
type replayRow struct {
	Key         string `json:"key"`
	Kind        string `json:"kind"` // tool, lifecycle
	Synthesized bool   `json:"synthesized,omitempty"`
	Events      int    `json:"events"`
	Sent        int    `json:"sent"`
	Acked       int    `json:"acked"`
	Resent      int    `json:"resent"`
	Attempts    int    `json:"attempts"`
	Status      string `json:"status"` // ok, or what went wrong
}

var replayColumns = []column[replayRow]{
	{"STREAM", func(r replayRow) string { return r.Key }},
	{"KIND", func(r replayRow) string {
		if r.Synthesized {
			return r.Kind + " (made)"
		}
		return r.Kind
	}},
	{"EVENTS", func(r replayRow) string { return fmt.Sprint(r.Events) }},
	{"SENT", func(r replayRow) string { return fmt.Sprint(r.Sent) }},
	{"ACKED", func(r replayRow) string { return fmt.Sprint(r.Acked) }},
	{"RESENT", func(r replayRow) string { return fmt.Sprint(r.Resent) }},
	{"ATTEMPTS", func(r replayRow) string { return fmt.Sprint(r.Attempts) }},
	{"STATUS", func(r replayRow) string { return r.Status }},
}

func newReplayCommand() *cli.Command {
	var flags []cli.Flag
	for _, f := range inputFlags() {
		if f.Names()[0] != "build-id" { // replay's own --build-id overrides every stream
			flags = append(flags, f)
		}
	}
	return &cli.Command{
		Name:      "replay",
		Usage:     "publish the streams of BEP files to a Build Event Service, as Bazel does",
		ArgsUsage: "FILE... --to grpc://HOST:PORT",
		Description: commandHelp(`Publishes every stream of the FILEs (any input form: Bazel's binary or JSON
file, a BES capture, recorded publish requests; gzip or zstd) to the Build
Event Service at --to, the way Bazel's BES client does: each tool stream in
one PublishBuildToolEventStream call, every event acknowledged; lifecycle
streams through PublishLifecycleEvent, in Bazel's order (build_enqueued,
invocation_attempt_started, the tool stream, invocation_attempt_finished,
build_finished). With --lifecycle, those lifecycle events are made for tool
streams whose files hold none, with the times and result of the stream.

When the connection breaks, bes reconnects and re-sends every event not yet
acknowledged, with Bazel's backoff (1 s, then ×1.6), giving up after
--retries failed attempts in a row that acknowledged nothing.

One row per stream: events, events sent, events acknowledged, requests
re-sent after a reconnect, calls made, and the status. bes exits 1 when an
event of any stream was not acknowledged.

--to takes grpc://HOST:PORT (no TLS) or grpcs://HOST:PORT (TLS, verified
against the system's certificate authorities, or --ca-cert's); a bare
HOST:PORT is grpcs, as in Bazel. --header adds gRPC metadata to every call,
e.g. --header "authorization=Bearer $TOKEN"; --auth-token-file FILE sends
the token in FILE that way (bes serve --auth-token-file checks it) without
putting it on the command line.

EXAMPLES:
   bes replay build.bep --to grpc://127.0.0.1:8980 --lifecycle
   bes replay capture.obe capture.lifecycle.obe --to grpcs://bes.example.com:443 --header "x-api-key=$KEY"
   bes replay build.json --to grpc://localhost:1985 --build-id "$(uuidgen)" --keyword ci=nightly`),
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "the Build Event Service: `grpc://HOST:PORT` or grpcs://HOST:PORT (required)"},
			formatFlag(formatTable, formatJSON, formatNDJSON),
			&cli.BoolFlag{Name: "lifecycle", Usage: "also publish lifecycle events (Bazel's --bes_lifecycle_events), made for tool streams whose files hold none"},
			&cli.StringFlag{Name: "build-id", Usage: "build id of every stream published (Bazel's --build_request_id); default: the file's (for Bazel's own files: the invocation id)"},
			&cli.StringFlag{Name: "invocation-id", Usage: "invocation id of every stream published (Bazel's --invocation_id); the files must hold one invocation"},
			&cli.StringFlag{Name: "project-id", Usage: "project_id of every request (Bazel's --project_id)"},
			&cli.StringSliceFlag{Name: "keyword", Usage: "add a notification keyword to each tool stream (Bazel's --bes_keywords); repeatable"},
			&cli.StringSliceFlag{Name: "header", Usage: "add gRPC metadata `KEY=VALUE` to every call (Bazel's --bes_header); repeatable"},
			&cli.StringFlag{Name: "ca-cert", Usage: "PEM `FILE` of the certificate authorities to trust for grpcs:// instead of the system's"},
			&cli.StringFlag{Name: "auth-token-file", Usage: "send the token in `FILE` with every call, as \"authorization: Bearer TOKEN\""},
			&cli.IntFlag{Name: "retries", Value: besclient.DefaultRetries, Usage: "failed calls in a row, acknowledging nothing, before a stream is given up"},
		}, flags...),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			if c.String("to") == "" {
				return &usageError{msg: "replay: --to is required: the Build Event Service, grpc://HOST:PORT or grpcs://HOST:PORT"}
			}
			if c.NArg() == 0 {
				return &usageError{msg: "replay: name at least one FILE (- for standard input)"}
			}
			retries := c.Int("retries")
			if retries == 0 {
				retries = -1 // besclient.Options: 0 is the default, negative none
			}
			opts := replayOptions{
				To:        c.String("to"),
				Read:      readOptions(c),
				Format:    c.String("format"),
				CACert:    c.String("ca-cert"),
				Headers:   c.StringSlice("header"),
				TokenFile: c.String("auth-token-file"),
				Publish: besclient.Options{
					BuildID:      c.String("build-id"),
					InvocationID: c.String("invocation-id"),
					ProjectID:    c.String("project-id"),
					Keywords:     c.StringSlice("keyword"),
					Lifecycle:    c.Bool("lifecycle"),
					Retries:      retries,
				},
			}
			return runReplay(c.Context, opts, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

// parseHeaders turns KEY=VALUE arguments into gRPC metadata.
func parseHeaders(hs []string) (metadata.MD, error) {
	md := metadata.MD{}
	for _, h := range hs {
		k, v, ok := strings.Cut(h, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, &usageError{msg: fmt.Sprintf("--header %q: want KEY=VALUE", h)}
		}
		md.Append(strings.ToLower(k), v)
	}
	return md, nil
}

func runReplay(ctx context.Context, opts replayOptions, files []string, w, errw io.Writer) error {
	md, err := parseHeaders(opts.Headers)
	if err != nil {
		return err
	}
	if opts.TokenFile != "" {
		tok, err := readTokenFile(opts.TokenFile)
		if err != nil {
			return fmt.Errorf("--auth-token-file: %w", err)
		}
		md.Append("authorization", "Bearer "+tok)
		if addr, ok := strings.CutPrefix(opts.To, "grpc://"); ok {
			if loop, err := isLoopback(addr); err == nil && !loop {
				fmt.Fprintf(errw, "bes: warning: the token goes to %s in plain text (grpc://); use grpcs://\n", addr)
			}
		}
	}
	opts.Publish.Metadata = md
	opts.Publish.Log = errw
	conn, err := besclient.Dial(opts.To, besclient.DialOptions{CACert: opts.CACert})
	if errors.Is(err, besclient.ErrBadTarget) {
		return &usageError{msg: fmt.Sprintf("--to: %v", err), cause: err}
	}
	if err != nil {
		return err
	}
	defer conn.Close()

	mem, res, err := readFiles(ctx, files, opts.Read, errw)
	if err != nil {
		return err
	}
	var streams []*besclient.Stream
	for _, st := range mem.Streams() {
		ps := &besclient.Stream{Info: st.Info()}
		for ev, err := range st.Query(ctx, nil) {
			if err != nil {
				return err
			}
			ps.Events = append(ps.Events, *ev)
		}
		streams = append(streams, ps)
	}
	if err := checkReplayIDs(streams, opts.Publish.InvocationID, errw); err != nil {
		return err
	}
	results, err := besclient.New(buildpb.NewPublishBuildEventClient(conn), opts.Publish).Publish(ctx, streams)
	if errors.Is(err, besclient.ErrInvocationOverride) {
		return &usageError{msg: err.Error(), cause: err}
	}
	if err != nil && ctx.Err() == nil {
		return err
	}
	rows := make([]replayRow, 0, len(results))
	for _, r := range results {
		row := replayRow{
			Key: r.Key, Kind: r.Kind, Synthesized: r.Synthesized,
			Events: r.Events, Sent: r.Sent, Acked: r.Acked, Resent: r.Resent, Attempts: r.Attempts,
			Status: "ok",
		}
		if !r.OK() {
			msg := fmt.Sprintf("%d of %d events not acknowledged", r.Events-r.Acked, r.Events)
			if r.Err != nil {
				s := status.Convert(r.Err)
				msg = fmt.Sprintf("%s: %s", s.Code(), s.Message())
			}
			row.Status = "failed: " + msg
			fmt.Fprintf(errw, "bes: replay to %s: stream %s: %s\n", opts.To, safeCell(r.Key), safeCell(msg))
			res.add(ExitError)
		}
		rows = append(rows, row)
	}
	if err := render(w, opts.Format, rows, replayColumns); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return res.err()
}
