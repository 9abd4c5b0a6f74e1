package commands

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestServeConfigFile (issue 14): bes serve --config FILE takes its flags
// from the YAML file, and a flag on the command line wins over the file;
// a key that is no flag, or a value a flag refuses, is a usage error
// naming the file, the line and the key.
func TestServeConfigFile(t *testing.T) {
	fileStore := filepath.Join(t.TempDir(), "file-store")
	flagStore := filepath.Join(t.TempDir(), "flag-store")
	token := writeFile(t, "token", "s3cret-token\n")
	cfg := writeFile(t, "bes.yaml", "# bes serve\nstore: "+fileStore+"\nlisten: 127.0.0.1:0\nauth-token-file: "+token+"\nidle-timeout: 2m\nmax-open-streams: 7\n")
	c := startChild(t, "--config "+cfg)
	if first := strings.SplitN(c.log(), "\n", 2)[0]; !strings.Contains(first, "(store "+fileStore+"; bearer token)") {
		t.Errorf("first line %q: want the store and the token of the file", first)
	}
	cc := dialPlain(t, c.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call, err := buildpb.NewPublishBuildEventClient(cc).PublishBuildToolEventStream(ctx)
	if err == nil {
		_, err = call.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("a call without the token of the file's auth-token-file: %v, want Unauthenticated", err)
	}

	c2 := startChild(t, "--config "+cfg+" --store "+flagStore)
	if first := strings.SplitN(c2.log(), "\n", 2)[0]; !strings.Contains(first, "(store "+flagStore+";") {
		t.Errorf("first line %q: want --store %s over the file's", first, flagStore)
	}

	for _, tc := range []struct{ yaml, stderr string }{
		{"listen: 127.0.0.1:0\nlisten-address: x\n", "bes.yaml: line 2: listen-address: not a flag of bes serve"},
		{"max-open-streams: many\n", "bes.yaml: line 1: max-open-streams: \"many\":"},
		{"- listen\n", "bes.yaml: line 1: want flag-name: value lines"},
	} {
		bad := writeFile(t, "bes.yaml", tc.yaml)
		_, stderr, code := runCLI(t, "serve", "--config", bad)
		if code != ExitUsage || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("config %q: exit %d, stderr %q; want %d and %q", tc.yaml, code, stderr, ExitUsage, tc.stderr)
		}
	}
	_, stderr, code := runCLI(t, "serve", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != ExitError || !strings.Contains(stderr, "--config: open ") {
		t.Errorf("a missing config file: exit %d, stderr %q", code, stderr)
	}
}
