package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strings"

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
type TokenAuth struct {
	sum [sha256.Size]byte // of the token: comparing digests takes the same time whatever the length
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

// ServerOptions returns the interceptors that check the token on every
// unary and streaming call.
func (a *TokenAuth) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := a.check(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := a.check(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}
