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

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/bes-cli/bes/store/buildgridpb"
)

// tlsFiles makes a self-signed certificate for 127.0.0.1 and writes it and
// its key, PEM, to files: cert.pem (also the CA to trust) and key.pem.
func tlsFiles(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "bes serve test"},
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
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startServeWith runs `bes serve` in this process with opts (Listen and
// OnListen are filled in).
func startServeWith(t *testing.T, opts serveOptions) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{log: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	addrc := make(chan string, 1)
	opts.Listen, opts.OnListen = "127.0.0.1:0", func(a string) { addrc <- a }
	if opts.MaxEventSize == 0 {
		opts.MaxEventSize = 64 << 20
	}
	if opts.Grace == 0 {
		opts.Grace = 5 * time.Second
	}
	go func() { ts.done <- runServe(ctx, opts, ts.log) }()
	select {
	case ts.addr = <-addrc:
	case err := <-ts.done:
		t.Fatalf("serve: %v\n%s", err, ts.log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// TestServeTLSAndToken: bes serve with TLS and a bearer token; bes replay
// with the CA and --auth-token-file gets through; without the token, with
// another one, or in plain text, nothing does, and nothing is stored. The
// query API wants the token too.
func TestServeTLSAndToken(t *testing.T) {
	certFile, keyFile := tlsFiles(t)
	tokenFile := writeFile(t, "token", "s3cret-token\n")
	wrongFile := writeFile(t, "wrong", "s3cret-tokem\n")
	dir := filepath.Join(t.TempDir(), "store")
	srv := startServeWith(t, serveOptions{Store: dir, TLSCert: certFile, TLSKey: keyFile, TokenFile: tokenFile})
	if first := strings.SplitN(srv.log.String(), "\n", 2)[0]; !strings.HasSuffix(first, "; TLS, bearer token)") {
		t.Errorf("first log line %q does not name TLS and the token", first)
	}
	to := "grpcs://" + srv.addr

	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no token", []string{"--to", to, "--ca-cert", certFile}, "Unauthenticated"},
		{"wrong token", []string{"--to", to, "--ca-cert", certFile, "--auth-token-file", wrongFile}, "Unauthenticated: invalid bearer token"},
		{"token in a header, wrong scheme", []string{"--to", to, "--ca-cert", certFile, "--header", "authorization=Basic s3cret-token"}, "Unauthenticated"},
		{"plain text", []string{"--to", "grpc://" + srv.addr, "--auth-token-file", tokenFile}, "Unavailable"},
		{"untrusted certificate", []string{"--to", to, "--auth-token-file", tokenFile}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, append([]string{"replay", td("build_ok.bep"), "--retries", "0"}, tc.args...)...)
			if code != ExitError || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want exit 1 and %q", code, stderr, tc.stderr)
			}
		})
	}
	if keys, _ := streamKeys(t, "--store", dir); len(keys) != 0 {
		t.Errorf("refused calls stored %q", keys)
	}

	stdout, stderr, code := runCLI(t, "replay", td("bes_test_mixed.obe"), td("bes_test_mixed.lifecycle.obe"), "--to", to, "--ca-cert", certFile, "--auth-token-file", tokenFile)
	if code != 0 {
		t.Fatalf("replay with the token: exit %d\n%s%s", code, stdout, stderr)
	}
	if keys, _ := streamKeys(t, "--store", dir); len(keys) != 3 {
		t.Errorf("stored %q, want the 3 streams", keys)
	}

	// The query API.
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(pem)
	cc, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	q := buildgridpb.NewQueryBuildEventsClient(cc)
	ctx := context.Background()
	if _, err := q.QueryEventStreams(ctx, &buildgridpb.QueryEventStreamsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("query without the token: %v", err)
	}
	resp, err := q.QueryEventStreams(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret-token"), &buildgridpb.QueryEventStreamsRequest{})
	if err != nil || len(resp.GetStreams()) != 3 {
		t.Errorf("query with the token: %d streams, %v", len(resp.GetStreams()), err)
	}
	if strings.Contains(srv.log.String(), "s3cret") {
		t.Error("the token appears in the log")
	}
}

// TestServeExposure: bes serve listens on loopback unless told otherwise,
// and another address needs TLS or --insecure.
func TestServeExposure(t *testing.T) {
	for _, tc := range []struct {
		opts serveOptions
		err  string // "" for none
	}{
		{serveOptions{Listen: defaultListen}, ""},
		{serveOptions{Listen: "localhost:0"}, ""},
		{serveOptions{Listen: "[::1]:8980"}, ""},
		{serveOptions{Listen: "0.0.0.0:8980"}, "is not a loopback address: serve TLS on it (--tls-cert, --tls-key), or add --insecure"},
		{serveOptions{Listen: ":8980"}, "is not a loopback address"},
		{serveOptions{Listen: "[::]:8980"}, "is not a loopback address"},
		{serveOptions{Listen: "192.0.2.1:8980"}, "is not a loopback address"},
		{serveOptions{Listen: "0.0.0.0:8980", Insecure: true}, ""},
		{serveOptions{Listen: "0.0.0.0:8980", TLSCert: "c", TLSKey: "k"}, ""},
		{serveOptions{Listen: "0.0.0.0:8980", TLSCert: "c"}, "--tls-cert and --tls-key go together"},
		{serveOptions{Listen: defaultListen, TLSKey: "k"}, "--tls-cert and --tls-key go together"},
		{serveOptions{Listen: "nohost"}, `--listen "nohost"`},
	} {
		_, err := checkExposure(tc.opts)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v: %v", tc.opts, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || ExitCode(err) != ExitUsage):
			t.Errorf("%+v: %v, want a usage error with %q", tc.opts, err, tc.err)
		}
	}
	for _, f := range newServeCommand().Flags {
		if f.Names()[0] == "listen" && f.(*cli.StringFlag).Value != "127.0.0.1:8980" {
			t.Errorf("--listen defaults to %q", f.(*cli.StringFlag).Value)
		}
	}
	// Bad TLS or token files end bes serve before it listens.
	certFile, keyFile := tlsFiles(t)
	empty := writeFile(t, "empty", "\n")
	spaced := writeFile(t, "spaced", "two words\n")
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"--tls-cert", certFile, "--tls-key", certFile}, "--tls-cert/--tls-key"},
		{[]string{"--tls-cert", keyFile, "--tls-key", keyFile}, "--tls-cert/--tls-key"},
		{[]string{"--auth-token-file", filepath.Join(t.TempDir(), "missing")}, "--auth-token-file"},
		{[]string{"--auth-token-file", empty}, "holds no token"},
		{[]string{"--auth-token-file", spaced}, "one word of printable ASCII"},
	} {
		_, stderr, code := runCLI(t, append([]string{"serve", "--store", t.TempDir(), "--listen", "127.0.0.1:0"}, tc.args...)...)
		if code != ExitError || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("serve %v: exit %d, %q; want exit 1 and %q", tc.args, code, stderr, tc.stderr)
		}
	}
}
