package besclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrBadTarget is returned (wrapped) by Dial for an address it cannot use.
var ErrBadTarget = errors.New("bad BES backend address")

// DialOptions configure Dial.
type DialOptions struct {
	// CACert is a PEM file of the certificate authorities to trust for
	// grpcs://, instead of the system's.
	CACert string
	// MaxMessageSize bounds the messages received (acks are small; this is
	// for other clients of the connection); 0 keeps gRPC's default.
	MaxMessageSize int
}

// Dial connects to a Build Event Service named as Bazel's --bes_backend
// names it: grpc://HOST:PORT without TLS, grpcs://HOST:PORT (or HOST:PORT
// without a scheme, as in Bazel) with TLS, verified against the system's
// certificate authorities or those of DialOptions.CACert. The connection is
// made lazily, by the first call.
func Dial(target string, opts DialOptions) (*grpc.ClientConn, error) {
	scheme, addr, ok := strings.Cut(target, "://")
	if !ok {
		scheme, addr = "grpcs", target
	}
	if _, _, err := net.SplitHostPort(addr); err != nil || strings.ContainsAny(addr, "/?#") {
		return nil, fmt.Errorf("%w %q: want grpc://HOST:PORT or grpcs://HOST:PORT", ErrBadTarget, target)
	}
	var creds credentials.TransportCredentials
	switch scheme {
	case "grpc":
		if opts.CACert != "" {
			return nil, fmt.Errorf("%w %q: --ca-cert needs grpcs://", ErrBadTarget, target)
		}
		creds = insecure.NewCredentials()
	case "grpcs":
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if opts.CACert != "" {
			pem, err := os.ReadFile(opts.CACert)
			if err != nil {
				return nil, fmt.Errorf("CA certificates: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA certificates: %s holds no PEM certificate", opts.CACert)
			}
			cfg.RootCAs = pool
		}
		creds = credentials.NewTLS(cfg)
	default:
		return nil, fmt.Errorf("%w %q: scheme %q: want grpc:// or grpcs://", ErrBadTarget, target, scheme)
	}
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if opts.MaxMessageSize > 0 {
		dopts = append(dopts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(opts.MaxMessageSize), grpc.MaxCallSendMsgSize(opts.MaxMessageSize)))
	}
	cc, err := grpc.NewClient("dns:///"+addr, dopts...)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrBadTarget, target, err)
	}
	return cc, nil
}
