package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TokenAuth checks a bearer token on every call: the gRPC metadata
// "authorization" must be "Bearer TOKEN" (the scheme in any case, as Bazel's
// --bes_header=authorization=... or bes replay --auth-token-file send it).
// A call without it, or with another token, fails with Unauthenticated
// before it reaches a service.
//
// Refusals are logged to Log, when set: the first at once, then at most one
// line per LogEvery (default DefaultAuthLogEvery), which counts the
// refusals since the line before, so that a client hammering the server
// with bad tokens cannot flood the log (issue 13). The line names the
// peer and the reason, never a token.
type TokenAuth struct {
	sum [sha256.Size]byte // of the token: comparing digests takes the same time whatever the length

	// Log gets the lines of refused calls; nil logs nothing. Set it
	// before the server starts.
	Log io.Writer
	// LogEvery is the least time between two lines; 0 means
	// DefaultAuthLogEvery.
	LogEvery time.Duration

	now       func() time.Time
	mu        sync.Mutex
	logged    time.Time // when the last line was written
	unlogged  int       // refusals since
	lastPeer  string
	lastCause string
}

// DefaultAuthLogEvery is the least time between two log lines of refused
// authentications.
const DefaultAuthLogEvery = 10 * time.Second

// refused notes a refused call, and logs it when the rate allows.
func (a *TokenAuth) refused(ctx context.Context, err error) {
	if a.Log == nil {
		return
	}
	now := time.Now
	if a.now != nil {
		now = a.now
	}
	every := a.LogEvery
	if every <= 0 {
		every = DefaultAuthLogEvery
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unlogged++
	a.lastPeer, a.lastCause = peerAddr(ctx), status.Convert(err).Message()
	t := now()
	if !a.logged.IsZero() && t.Sub(a.logged) < every {
		return
	}
	var line string
	if a.unlogged == 1 {
		line = fmt.Sprintf("refused (Unauthenticated): a call from %s: %s", a.lastPeer, a.lastCause)
	} else {
		line = fmt.Sprintf("refused (Unauthenticated): %d calls since %s, the last from %s: %s", a.unlogged, a.logged.UTC().Format(time.RFC3339), a.lastPeer, a.lastCause)
	}
	fmt.Fprintf(a.Log, "bes: %s\n", logSafe(line))
	a.logged, a.unlogged = t, 0
}

// NewTokenAuth returns the check for token, which must not be empty.
func NewTokenAuth(token string) (*TokenAuth, error) {
	if token == "" {
		return nil, errors.New("empty token")
	}
	return &TokenAuth{sum: sha256.Sum256([]byte(token))}, nil
}

// check verifies the token of the call in ctx.
func (a *TokenAuth) check(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return status.Error(codes.Unauthenticated, "missing authorization: want the metadata authorization: Bearer TOKEN")
	}
	ok := 0
	for _, v := range vals {
		scheme, tok, found := strings.Cut(strings.TrimSpace(v), " ")
		if !found || !strings.EqualFold(scheme, "Bearer") {
			continue
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		ok |= subtle.ConstantTimeCompare(sum[:], a.sum[:])
	}
	if ok != 1 {
		return status.Error(codes.Unauthenticated, "invalid bearer token")
	}
	return nil
}

// healthService is the prefix of grpc.health.v1.Health's methods, which
// need no token: a load balancer's or Kubernetes' probe carries none, and
// the answer (SERVING or not) tells nothing of the store (issue 14).
const healthService = "/grpc.health.v1.Health/"

// ServerOptions returns the interceptors that check the token on every
// unary and streaming call but health checks (healthService).
func (a *TokenAuth) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if strings.HasPrefix(info.FullMethod, healthService) {
				return h(ctx, req)
			}
			if err := a.check(ctx); err != nil {
				a.refused(ctx, err)
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if strings.HasPrefix(info.FullMethod, healthService) {
				return h(srv, ss)
			}
			if err := a.check(ss.Context()); err != nil {
				a.refused(ss.Context(), err)
				return err
			}
			return h(srv, ss)
		}),
	}
}
