package commands

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/server"
)

// selfSigned makes a certificate for 127.0.0.1 and writes it, PEM, to a
// file.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bes test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, path
}

// TestReplayTLS replays over grpcs:// to a server that wants a bearer
// token: --ca-cert makes its certificate trusted, --header carries the
// token.
func TestReplayTLS(t *testing.T) {
	cert, caFile := selfSigned(t)
	const token = "Bearer s3cret"
	auth := func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get("authorization"); len(v) != 1 || v[0] != token {
			return status.Error(codes.Unauthenticated, "no valid token")
		}
		return nil
	}
	gs := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := auth(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := auth(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	mem := store.New()
	buildpb.RegisterPublishBuildEventServer(gs, server.NewPublishBuildEventServer(store.NewMemory(mem, nil), server.Options{}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	defer gs.Stop()
	to := "grpcs://" + lis.Addr().String()

	stdout, stderr, code := runCLI(t, "replay", td("bes_test_mixed.obe"), td("bes_test_mixed.lifecycle.obe"), "--to", to, "--ca-cert", caFile, "--header", "Authorization="+token)
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, stdout, stderr)
	}
	if mem.Len() != 3 {
		t.Errorf("%d streams received, want 3", mem.Len())
	}
	if st, err := mem.Lookup(besToolKey); err != nil || st.Len() != 106 {
		t.Errorf("tool stream: %v", err)
	}

	_, stderr, code = runCLI(t, "replay", td("build_ok.bep"), "--to", to, "--ca-cert", caFile)
	if code != ExitError || !strings.Contains(stderr, "Unauthenticated: no valid token") {
		t.Errorf("without the token: exit %d, %s", code, stderr)
	}
	_, stderr, code = runCLI(t, "replay", td("build_ok.bep"), "--to", to, "--header", "authorization="+token, "--retries", "0")
	if code != ExitError || !strings.Contains(stderr, "certificate") {
		t.Errorf("without the CA: exit %d, %s", code, stderr)
	}
}
