package commands

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store/local"
)

// findBazel returns Debian's bazel-4, or a bazel, from PATH.
func findBazel() string {
	for _, name := range []string{"/usr/bin/bazel-4", "bazel-4", "bazel"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestBazelStreamsIntoServe runs a real Bazel (Debian's bazel-bootstrap
// 4.2.3) on the genrule workspace testdata/bazel/ws with
// --bes_backend=grpc://<bes serve> --bes_lifecycle_events and
// --build_event_binary_file, and checks that `bes serve` stored what Bazel
// sent: the tool stream under Bazel's stream id with sequence numbers
// 1..N+1, its payloads byte-identical to the N messages of Bazel's own
// binary file (as a multiset: the two transports may order a few events
// differently), ending with component_stream_finished; and the two
// lifecycle streams.
func TestBazelStreamsIntoServe(t *testing.T) {
	bazel := findBazel()
	if bazel == "" {
		if os.Getenv("CI") != "" {
			// .ci/run installs bazel-bootstrap: in CI a missing Bazel is a
			// broken setup, not a reason to pass.
			t.Fatal("CI is set but no Bazel was found (bazel-4 or bazel in PATH)")
		}
		t.Skip("no Bazel (bazel-4 or bazel in PATH): install Debian's bazel-bootstrap (apt-get install bazel-bootstrap) to run this test")
	}
	if testing.Short() {
		t.Skip("runs Bazel")
	}
	script, err := filepath.Abs(filepath.Join("..", "testdata", "bazel", "run_bazel.sh"))
	if err != nil {
		t.Fatal(err)
	}
	scratch := t.TempDir()
	// Bazel leaves read-only directories in its output base: make them
	// writable so that TempDir's cleanup (which runs after this one) can
	// remove them.
	t.Cleanup(func() {
		filepath.WalkDir(scratch, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	storeDir := t.TempDir()
	srv := startServe(t, storeDir)
	bep := filepath.Join(scratch, "build.bep")

	run := func(timeout time.Duration, args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), "BAZEL="+bazel)
		cmd.WaitDelay = 10 * time.Second
		return cmd.CombinedOutput()
	}
	// Always stop the Bazel server, whatever happened.
	t.Cleanup(func() {
		if out, err := run(2*time.Minute, "shutdown", scratch); err != nil {
			t.Logf("bazel shutdown: %v\n%s", err, out)
		}
	})
	start := time.Now()
	out, err := run(5*time.Minute, "build", "grpc://"+srv.addr, bep, scratch)
	t.Logf("bazel build (server start included) took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("bazel build: %v\n%s\nbes serve log:\n%s", err, out, srv.log.String())
	}
	srv.stop(t)

	// Bazel's own file.
	r, err := bepfile.Open(bep, bepfile.Options{Format: bepfile.FormatBEP})
	if err != nil {
		t.Fatal(err)
	}
	var filePayloads []string
	var inv string
	for {
		s, ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		inv = s.ID.GetInvocationId()
		if ev.Raw == nil {
			filePayloads = append(filePayloads, string(ev.Payload))
		}
	}
	r.Close()
	n := len(filePayloads)
	if n < 20 || inv == "" {
		t.Fatalf("Bazel's file has %d events, invocation %q", n, inv)
	}

	// What bes serve stored.
	st, err := local.Open(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	var entries []*local.Entry
	st.List(context.Background(), func(e *local.Entry) error {
		entries = append(entries, e)
		return nil
	})
	if len(entries) != 3 {
		t.Fatalf("%d streams stored, want 3 (two lifecycle streams and the tool stream): %v", len(entries), entries)
	}
	build := entries[0].BuildID
	wantKeys := []string{build + ".1.", build + ".1." + inv, build + ".3." + inv}
	var keys []string
	for _, e := range entries {
		keys = append(keys, e.Key)
		if e.BuildID != build || !e.Complete || e.Source == "" || e.Format != "grpc" {
			t.Errorf("entry %+v", e)
		}
	}
	if !slices.Equal(keys, wantKeys) || build == "" || build == inv {
		t.Fatalf("stored streams %v, want %v (Bazel's build request id and invocation id)", keys, wantKeys)
	}

	var seqs []int64
	var storedPayloads []string
	var last *bepfile.Event
	var info *bepfile.Stream
	err = st.Events(context.Background(), entries[2], func(s *bepfile.Stream, ev *bepfile.Event) error {
		info = s
		seqs = append(seqs, ev.Seq)
		if ev.Raw == nil {
			storedPayloads = append(storedPayloads, string(ev.Payload))
			if !ev.HasTime {
				t.Errorf("event %d has no event time", ev.Seq)
			}
		}
		last = ev
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if info.TypeURL != bepfile.BazelEventTypeURL || info.ID.GetComponent() != buildpb.StreamId_TOOL {
		t.Errorf("tool stream %+v", info)
	}
	want := make([]int64, n+1)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if !slices.Equal(seqs, want) {
		t.Errorf("sequence numbers %v, want 1..%d", seqs, n+1)
	}
	fin, err := last.OrderedBuildEvent(info)
	if err != nil || fin.GetEvent().GetComponentStreamFinished().GetType() != buildpb.BuildEvent_BuildComponentStreamFinished_FINISHED {
		t.Errorf("last event %v, want component_stream_finished FINISHED (%v)", fin, err)
	}
	slices.Sort(filePayloads)
	slices.Sort(storedPayloads)
	if !slices.Equal(filePayloads, storedPayloads) {
		t.Errorf("the %d payloads stored are not the %d messages of Bazel's binary file", len(storedPayloads), n)
	}

	// The lifecycle streams: build_enqueued and build_finished on B.1.,
	// invocation_attempt_started (attempt 1) and _finished on B.1.I.
	for i, wantKinds := range [][2]string{{"build_enqueued", "build_finished"}, {"invocation_attempt_started", "invocation_attempt_finished"}} {
		var got []string
		err := st.Events(context.Background(), entries[i], func(s *bepfile.Stream, ev *bepfile.Event) error {
			obe, err := ev.OrderedBuildEvent(s)
			if err != nil {
				return err
			}
			if obe.GetStreamId().GetComponent() != buildpb.StreamId_CONTROLLER || obe.GetSequenceNumber() != int64(len(got)+1) {
				t.Errorf("%s: event %v", entries[i].Key, obe)
			}
			e := obe.GetEvent()
			switch {
			case e.GetBuildEnqueued() != nil:
				got = append(got, "build_enqueued")
			case e.GetBuildFinished() != nil:
				got = append(got, "build_finished")
				if r := e.GetBuildFinished().GetStatus().GetResult(); r != buildpb.BuildStatus_COMMAND_SUCCEEDED {
					t.Errorf("build_finished result %v", r)
				}
			case e.GetInvocationAttemptStarted() != nil:
				got = append(got, "invocation_attempt_started")
				if a := e.GetInvocationAttemptStarted().GetAttemptNumber(); a != 1 {
					t.Errorf("attempt %d", a)
				}
			case e.GetInvocationAttemptFinished() != nil:
				got = append(got, "invocation_attempt_finished")
			default:
				b, _ := proto.Marshal(obe)
				got = append(got, string(b))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, wantKinds[:]) {
			t.Errorf("%s: %v, want %v", entries[i].Key, got, wantKinds)
		}
	}

	log := srv.log.String()
	for _, k := range wantKeys {
		if !strings.Contains(log, "bes: stream "+k+" opened: ") || !strings.Contains(log, "bes: stream "+k+" finished: ") {
			t.Errorf("the log does not show %s opened and finished:\n%s", k, log)
		}
	}
	if !bytes.Contains(out, []byte("Build completed successfully")) {
		t.Errorf("bazel output:\n%s", out)
	}
}
