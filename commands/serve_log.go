package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Log formats of bes serve (--log-format; issue 14). The command's
// default is logFormatText.
const (
	logFormatPlain = "plain" // "bes: MESSAGE" lines, as every bes command writes
	logFormatText  = "text"  // log/slog's TextHandler: time=… level=… msg=… key=value
	logFormatJSON  = "json"  // log/slog's JSONHandler: one JSON object a line
)

// newServeLog returns the writer bes serve logs to, safe for concurrent
// use. The server's parts write whole "bes: MESSAGE\n" lines to it; with
// format text or json each line becomes one log/slog record on w with a
// timestamp, msg MESSAGE unchanged, level WARN for "warning: …" and
// refusals ("refused (CODE): …", which also get reason=CODE) and INFO
// otherwise. format plain (or "", for in-process callers) writes the
// lines as they are. Another format is a usage error.
func newServeLog(format string, w io.Writer) (io.Writer, error) {
	switch format {
	case "", logFormatPlain:
		return &syncWriter{w: w}, nil
	case logFormatText:
		return &slogLines{log: slog.New(slog.NewTextHandler(w, nil))}, nil
	case logFormatJSON:
		return &slogLines{log: slog.New(slog.NewJSONHandler(w, nil))}, nil
	}
	return nil, &usageError{msg: fmt.Sprintf("--log-format %q: want plain, text or json", format)}
}

// slogLines turns the lines written to it into slog records.
type slogLines struct {
	log  *slog.Logger
	mu   sync.Mutex
	part []byte // a line not ended yet
}

var refusedLine = regexp.MustCompile(`^refused (?:\d+ connection|\(([A-Za-z]+)\))`)

func (s *slogLines) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.part = append(s.part, p...)
	for {
		i := bytes.IndexByte(s.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(s.part[:i])
		s.part = s.part[i+1:]
		s.record(line)
	}
}

func (s *slogLines) record(line string) {
	msg := strings.TrimPrefix(line, "bes: ")
	if msg == "" {
		return
	}
	if rest, ok := strings.CutPrefix(msg, "warning: "); ok {
		s.log.Warn(rest)
		return
	}
	if m := refusedLine.FindStringSubmatch(msg); m != nil {
		reason := m[1]
		if reason == "" {
			reason = "too many connections"
		}
		s.log.Warn(msg, "reason", reason)
		return
	}
	s.log.Info(msg)
}

// refusalLog returns interceptors that log, one line each, the calls of
// services other than the publish service (which logs its own) that end
// in an error: "refused (CODE): METHOD from PEER: MESSAGE". They go after
// the token check, which logs its refusals itself.
func refusalLog(log io.Writer) []grpc.ServerOption {
	logf := func(ctx context.Context, method string, err error) {
		if err == nil || strings.HasPrefix(method, "/google.devtools.build.v1.PublishBuildEvent/") {
			return
		}
		from := "?"
		if p, ok := peer.FromContext(ctx); ok {
			from = p.Addr.String()
		}
		st := status.Convert(err)
		if st.Code() == codes.Canceled || errors.Is(err, context.Canceled) {
			return // the client went away (a health watch, reflection): no refusal
		}
		fmt.Fprintf(log, "bes: %s\n", safeCell(fmt.Sprintf("refused (%s): %s from %s: %s", st.Code(), method, from, st.Message())))
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			logf(ctx, info.FullMethod, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			err := h(srv, ss)
			logf(ss.Context(), info.FullMethod, err)
			return err
		}),
	}
}
