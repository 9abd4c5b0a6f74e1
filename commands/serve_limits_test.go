package commands

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/bes-cli/bes/store/buildgridpb"
)

// TestServeIngestReplace: `bes ingest --replace` of a stream that `bes
// serve` received whole, with a copy cut after 62 events, while the server
// runs. The server answers the 62 events the store holds, and when the
// client sends the whole stream again the server stores the 44 the store
// lacks: every event acknowledged is stored (issue 13: the server answered
// 106 events from its memory while the store held 62, and acknowledged
// re-sent events without storing them).
func TestServeIngestReplace(t *testing.T) {
	dir := t.TempDir()
	ts := startServe(t, dir)
	evs := readToolOBEs(t)
	cancel, cc := sendAcked(t, ts.addr, evs, len(evs))
	cancel()
	cc.Close()

	cut := filepath.Join(t.TempDir(), "cut.obe")
	frames := obeFrames(t, readFile(t, td("bes_test_mixed.obe")))
	var b []byte
	for _, f := range frames[:62] {
		b = appendFrame(b, f)
	}
	if err := os.WriteFile(cut, b, 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, "ingest", "--store", dir, "--replace", "--format", "json", cut)
	if code != 0 || !strings.Contains(stdout, `"status": "replaced"`) {
		t.Fatalf("ingest --replace: exit %d\n%s\n%s", code, stdout, stderr)
	}
	qc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer qc.Close()
	resp, err := buildgridpb.NewQueryBuildEventsClient(qc).QueryEventStreams(context.Background(), &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: "8b58a6b7-1857-43e5-b701-ebbabc33fc5c$"})
	if err != nil || len(resp.GetStreams()) != 1 || len(resp.GetStreams()[0].GetEvents()) != 62 {
		t.Fatalf("the server's answer after the replace: %v, %v; want the 62 events stored", resp, err)
	}
	cancel, cc = sendAcked(t, ts.addr, evs, len(evs))
	cancel()
	cc.Close()
	keys, events := streamKeys(t, "--store", dir)
	if len(keys) != 1 || keys[0] != besToolKey || events[0] != int64(len(evs)) {
		t.Errorf("after the resend: streams %v with %v events, want %s with %d", keys, events, besToolKey, len(evs))
	}
	got, _, code := runCLI(t, "dump", "--store", dir, "--format", "obe", besToolKey)
	if want := readFile(t, td("bes_test_mixed.obe")); code != 0 || got != want {
		t.Errorf("the stored stream (exit %d, %d bytes) is not the %d bytes sent", code, len(got), len(want))
	}
}

// TestServeReplayCutThenIngest: `bes replay` of a file cut short (Bazel
// killed while streaming) to `bes serve` ends its call with the stream
// unfinished; the server lets the stream go at once, so that `bes ingest
// --replace` of the whole file succeeds right after, not after
// --idle-timeout (here never). It failed with "is being received by a bes
// serve", status busy, exit 4.
func TestServeReplayCutThenIngest(t *testing.T) {
	dir := t.TempDir()
	ts := startServe(t, dir)
	_, stderr, code := runCLI(t, "replay", td("truncated-test_mixed.bep"), "--to", "grpc://"+ts.addr)
	t.Logf("replay of the cut file: exit %d\n%s", code, stderr)
	start := time.Now()
	var stdout string
	for {
		stdout, stderr, code = runCLI(t, "ingest", "--store", dir, "--replace", "--format", "json", td("test_mixed.bep"))
		if code == 0 || time.Since(start) > 10*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code != 0 || !strings.Contains(stdout, `"status": "replaced"`) {
		t.Fatalf("ingest --replace after the replay: exit %d after %v\n%s\n%s\nserver log:\n%s", code, time.Since(start), stdout, stderr, ts.log.String())
	}
	t.Logf("ingest --replace succeeded %v after the replay ended", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(ts.log.String(), "let go after the call from") || !strings.Contains(ts.log.String(), "62 events stored") {
		t.Errorf("the stream let go is not logged:\n%s", ts.log.String())
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func appendFrame(b, frame []byte) []byte {
	n := uint64(len(frame))
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(append(b, byte(n)), frame...)
}

// TestServeTokenFileMode: a --auth-token-file other users may read gets a
// warning naming it and its mode; one only its owner reads gets none. A
// refused call is logged (issue 13).
func TestServeTokenFileMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o600} {
		tok := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tok, []byte("s3cret\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(tok, mode) // whatever the umask
		ctx, cancel := context.WithCancel(context.Background())
		log := &syncBuffer{}
		addrc := make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- runServe(ctx, serveOptions{Store: t.TempDir(), Listen: "127.0.0.1:0", MaxEventSize: 1 << 20, Grace: time.Second, TokenFile: tok, OnListen: func(a string) { addrc <- a }}, log)
		}()
		var addr string
		select {
		case addr = <-addrc:
		case err := <-done:
			t.Fatalf("serve: %v\n%s", err, log.String())
		}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		qctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer wrong")
		buildgridpb.NewQueryBuildEventsClient(cc).QueryEventStreams(qctx, &buildgridpb.QueryEventStreamsRequest{})
		cc.Close()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(log.String(), "bes: warning: --auth-token-file "+tok+" is accessible by other users (mode 0644)")
		if warned != (mode == 0o644) {
			t.Errorf("token file of mode %04o: warned %v:\n%s", mode, warned, log.String())
		}
		if !strings.Contains(log.String(), "bes: refused (Unauthenticated): a call from 127.0.0.1:") || strings.Contains(log.String(), "wrong") {
			t.Errorf("the refused call is not logged, or its token is:\n%s", log.String())
		}
	}
}
