package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store/local"
)

// Several writers on one store at once, in processes of their own, and
// writers killed with SIGKILL at random points: nothing already stored is
// lost, the store stays readable, no stream is listed as more than its file
// holds, bes store check --repair makes it consistent, and running the
// writer again completes its work.

// longTests reports whether BES_LONG_TESTS asks for the long versions.
func longTests() bool {
	v, _ := strconv.ParseBool(os.Getenv("BES_LONG_TESTS"))
	return v
}

// TestBesHelperProcess is bes in a process of its own: it runs the
// arguments in BES_HELPER_ARGS (a JSON array) as main does and exits with
// bes's exit status.
func TestBesHelperProcess(t *testing.T) {
	raw := os.Getenv("BES_HELPER_ARGS")
	if raw == "" {
		t.Skip("helper process of the tests that run bes in processes of its own")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintf(os.Stderr, "bes helper: %v\n", err)
		os.Exit(ExitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	app := NewApp("test")
	app.Writer, app.ErrWriter = os.Stdout, os.Stderr
	err := Run(ctx, app, append([]string{"bes"}, args...))
	stop()
	if err != nil && !IsReported(err) {
		fmt.Fprint(os.Stderr, Diagnostic(err))
	}
	os.Exit(ExitCode(err))
}

// besProc is bes running in a process of its own.
type besProc struct {
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
}

// startBes starts bes with args; the test's cleanup kills it.
func startBes(t *testing.T, args ...string) *besProc {
	t.Helper()
	raw, _ := json.Marshal(args)
	p := &besProc{cmd: exec.Command(os.Args[0], "-test.run=^TestBesHelperProcess$", "-test.count=1")}
	// A binary built with -race sleeps a second at exit, waiting for
	// reports; there is no need here.
	p.cmd.Env = append(os.Environ(), "BES_HELPER_ARGS="+string(raw), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

// wait waits for the process and returns its exit status (-1 if killed).
func (p *besProc) wait() int {
	p.cmd.Wait()
	return p.cmd.ProcessState.ExitCode()
}

// kill kills the process with SIGKILL and waits for it.
func (p *besProc) kill() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

// runBes runs bes in a process of its own to the end.
func runBes(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	p := startBes(t, args...)
	code = p.wait()
	return p.stdout.String(), p.stderr.String(), code
}

// entries lists the store's index through the store package.
func entries(t *testing.T, dir string) map[string]*local.Entry {
	t.Helper()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*local.Entry{}
	if err := st.List(context.Background(), func(e *local.Entry) error {
		if out[e.Key] != nil {
			t.Errorf("stream %q listed twice", e.Key)
		}
		out[e.Key] = e
		return nil
	}); err != nil {
		t.Fatalf("the store's index cannot be read: %v", err)
	}
	return out
}

// checkStore runs bes store check and returns its exit status and the
// problems found.
func checkStore(t *testing.T, dir string) (int, []checkRow) {
	t.Helper()
	out, stderr, code := runCLI(t, "store", "check", "--store", dir, "--format", "json")
	var rows []checkRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("store check: %v\n%s%s", err, out, stderr)
	}
	if (code == 0) != (len(rows) == 0) || (code != 0 && code != ExitError) {
		t.Fatalf("store check: exit %d with %d problems: %s", code, len(rows), stderr)
	}
	return code, rows
}

// repairStore runs bes store check --repair, which must leave the store
// consistent, and returns the problems it found.
func repairStore(t *testing.T, dir string) []checkRow {
	t.Helper()
	out, stderr, code := runCLI(t, "store", "check", "--repair", "--store", dir, "--format", "json")
	var rows []checkRow
	json.Unmarshal([]byte(out), &rows)
	if code != 0 {
		t.Fatalf("store check --repair: exit %d\n%s%s", code, out, stderr)
	}
	for _, r := range rows {
		if r.Status != "repaired" {
			t.Errorf("after repair: %+v", r)
		}
	}
	if code, rows := checkStore(t, dir); code != 0 {
		t.Fatalf("store check after the repair: exit %d: %+v", code, rows)
	}
	return rows
}

// onlyKinds fails unless every problem is of one of the kinds.
func onlyKinds(t *testing.T, when string, rows []checkRow, kinds ...local.ProblemKind) {
	t.Helper()
	for _, r := range rows {
		if !slices.Contains(kinds, local.ProblemKind(r.Problem)) {
			t.Errorf("%s: problem %+v; only %v may happen", when, r, kinds)
		}
	}
}

// referenceEntries ingests args into a new store in this process and
// returns its entries: what every store must hold once args are ingested.
func referenceEntries(t *testing.T, args ...string) map[string]*local.Entry {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "reference")
	if _, stderr, code := runCLI(t, append([]string{"ingest", "--store", dir}, args...)...); code != 0 {
		t.Fatalf("reference ingest %v: exit %d: %s", args, code, stderr)
	}
	return entries(t, dir)
}

// sameStream reports whether an entry describes the same stream file as
// the reference's: same digest (so the same bytes, which store check
// verifies against the file), events and completeness.
func sameStream(e, ref *local.Entry) bool {
	return ref != nil && e.Digest == ref.Digest && e.Size == ref.Size && e.Events == ref.Events && e.Complete == ref.Complete
}

// TestConcurrentWriters runs eight `bes ingest` processes on one store at
// once, some ingesting the same streams, others their own, while a `bes
// serve` process receives streams into the same store, and `bes store
// check` runs again and again. Every process succeeds, every check finds
// the store consistent, every stream is stored once with its whole
// content, and the store is consistent in the end.
func TestConcurrentWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bes in processes of its own")
	}
	dir := filepath.Join(t.TempDir(), "store")
	shared := []string{td("bes_test_mixed.obe"), td("bes_test_mixed.lifecycle.obe"), td("build_ok.json")}
	own := []string{td("test_mixed.bep"), td("build_keep_going_fail.bep"), td("query.bep")}
	if longTests() {
		own = append(own, td("large_test.bep.gz"))
	}
	want := referenceEntries(t, shared...)
	const procs = 8
	for i := range procs {
		for k, e := range referenceEntries(t, append([]string{"--build-id", fmt.Sprintf("proc-%d", i)}, own...)...) {
			want[k] = e
		}
	}

	srv := startChild(t, "--listen 127.0.0.1:0 --store "+dir)
	var ps []*besProc
	for i := range procs {
		args := append([]string{"ingest", "--store", dir}, shared...)
		ps = append(ps, startBes(t, args...))
		args = append([]string{"ingest", "--store", dir, "--build-id", fmt.Sprintf("proc-%d", i)}, own...)
		ps = append(ps, startBes(t, args...))
	}
	// Meanwhile the server receives streams of its own.
	served := []string{td("test_cached.bep"), td("test_mixed.json")}
	replayed := make(chan error, 1)
	go func() {
		for _, f := range served {
			if _, stderr, code := runCLI(t, "replay", f, "--to", "grpc://"+srv.addr, "--build-id", "served"); code != 0 {
				replayed <- fmt.Errorf("replay %s: exit %d: %s", f, code, stderr)
				return
			}
		}
		replayed <- nil
	}()
	// And bes store check, again and again: writers caught in the middle
	// of a commit are no problem.
	stopChecks := make(chan struct{})
	checks := make(chan int, 1)
	go func() {
		n := 0
		defer func() { checks <- n }()
		for {
			select {
			case <-stopChecks:
				return
			default:
			}
			// In a process of its own: urfave/cli is not safe for two
			// command lines at once in one process.
			out, stderr, code := runBes(t, "store", "check", "--store", dir, "--format", "json")
			if code != 0 {
				t.Errorf("store check while writers write: exit %d\n%s%s", code, out, stderr)
				return
			}
			n++
		}
	}()
	for i, p := range ps {
		if code := p.wait(); code != 0 {
			t.Errorf("process %d: exit %d\n%s%s", i, code, p.stdout.String(), p.stderr.String())
		}
	}
	if err := <-replayed; err != nil {
		t.Error(err)
	}
	close(stopChecks)
	t.Logf("%d checks while the writers wrote", <-checks)
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-srv.eof
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("bes serve: %v\n%s", err, srv.log())
	}

	got := entries(t, dir)
	for _, f := range served {
		// The server's streams: complete, as many events as the file's.
		out, _, _ := runCLI(t, "streams", f, "--build-id", "served", "--format", "json")
		var rows []streamRow
		json.Unmarshal([]byte(out), &rows)
		for _, r := range rows {
			e := got[r.Key]
			if e == nil || e.Events != r.Events || !e.Complete || e.Format != "grpc" {
				t.Errorf("served stream %s: entry %+v, want %d events, complete", r.Key, e, r.Events)
			}
			delete(got, r.Key)
		}
	}
	for k, ref := range want {
		if e := got[k]; e == nil || !sameStream(e, ref) {
			t.Errorf("stream %s: entry %+v, want %+v", k, e, ref)
		}
		delete(got, k)
	}
	for k := range got {
		t.Errorf("unexpected stream %s", k)
	}
	if code, rows := checkStore(t, dir); code != 0 {
		t.Errorf("store check: exit %d: %+v", code, rows)
	}
}

// ingestCrashArgs are the files the crash test ingests.
func ingestCrashArgs() []string {
	args := []string{td("test_mixed.bep"), td("test_cached.bep"), td("bes_test_mixed.obe"), td("bes_test_mixed.lifecycle.obe"), td("build_ok.json"), td("build_keep_going_fail.bep")}
	if longTests() {
		args = append(args, td("large_test.bep.gz"))
	}
	return args
}

// TestIngestKilled kills `bes ingest` with SIGKILL at random points, 20
// times (BES_LONG_TESTS=1: 100, with a large input too). After each kill
// the store is readable and every stream it lists is whole, exactly as a
// complete ingest stores it; bes store check finds at most what a killed
// writer leaves (temporary files, a stream file not indexed yet), --repair
// clears it, and the ingest run again completes the store.
func TestIngestKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bes in processes of its own")
	}
	files := ingestCrashArgs()
	want := referenceEntries(t, files...)
	iterations := 20
	if longTests() {
		iterations = 100
	}
	// How long a whole ingest takes here, to kill within it.
	start := time.Now()
	if _, stderr, code := runBes(t, append([]string{"ingest", "--store", filepath.Join(t.TempDir(), "timing")}, files...)...); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	full := time.Since(start)
	rng := rand.New(rand.NewPCG(6, uint64(time.Now().UnixNano())))
	interrupted, repaired := 0, map[string]int{}
	for i := range iterations {
		dir := filepath.Join(t.TempDir(), "store")
		delay := time.Duration(rng.Int64N(int64(full)))
		p := startBes(t, append([]string{"ingest", "--store", dir}, files...)...)
		time.Sleep(delay)
		p.kill()
		if p.cmd.ProcessState.ExitCode() != 0 {
			interrupted++
		}
		when := fmt.Sprintf("kill %d after %v", i, delay)

		// Readable, and nothing listed but whole streams.
		if _, stderr, code := runCLI(t, "streams", "--store", dir); code != 0 && code != ExitNoData {
			t.Fatalf("%s: bes streams: exit %d: %s", when, code, stderr)
		}
		for k, e := range entries(t, dir) {
			if !sameStream(e, want[k]) {
				t.Errorf("%s: stream %s listed as %+v, a complete ingest stores %+v", when, k, e, want[k])
			}
		}
		_, problems := checkStore(t, dir)
		onlyKinds(t, when, problems, local.ProblemTemp, local.ProblemUnindexed)
		for _, p := range problems {
			repaired[p.Problem]++
		}
		if len(problems) > 0 {
			repairStore(t, dir)
			for k, e := range entries(t, dir) {
				if !sameStream(e, want[k]) {
					t.Errorf("%s: after the repair, stream %s is %+v, want %+v", when, k, e, want[k])
				}
			}
		}

		// Run again, it completes the store.
		if _, stderr, code := runBes(t, append([]string{"ingest", "--store", dir}, files...)...); code != 0 {
			t.Fatalf("%s: ingest again: exit %d: %s", when, code, stderr)
		}
		got := entries(t, dir)
		if len(got) != len(want) {
			t.Errorf("%s: %d streams after the second ingest, want %d", when, len(got), len(want))
		}
		for k, ref := range want {
			if !sameStream(got[k], ref) {
				t.Errorf("%s: after the second ingest, stream %s is %+v, want %+v", when, k, got[k], ref)
			}
		}
		if code, rows := checkStore(t, dir); code != 0 {
			t.Errorf("%s: store check after the second ingest: %+v", when, rows)
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("%d kills, %d during the ingest (a whole ingest takes %v); problems repaired: %v", iterations, interrupted, full, repaired)
}

// serveCrashFiles are the files the crash test replays into bes serve.
func serveCrashFiles() []string {
	return []string{td("bes_test_mixed.obe"), td("bes_test_mixed.lifecycle.obe"), td("test_mixed.json"), td("build_keep_going_fail.bep")}
}

// expectedFrames returns, per stream key, the OrderedBuildEvents of the
// files as bes dump --format obe writes them.
func expectedFrames(t *testing.T, files []string) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	for _, f := range files {
		dump, stderr, code := runCLI(t, "dump", "--format", "obe", f)
		if code != 0 {
			t.Fatalf("dump %s: exit %d: %s", f, code, stderr)
		}
		for _, fr := range obeFrames(t, dump) {
			obe := &buildpb.OrderedBuildEvent{}
			if err := proto.Unmarshal(fr, obe); err != nil {
				t.Fatal(err)
			}
			k := bepfile.Key(obe.GetStreamId())
			out[k] = append(out[k], fr)
		}
	}
	return out
}

// storedFrames returns the events of a stored stream, as bes dump
// --format obe writes them.
func storedFrames(t *testing.T, dir, key string) [][]byte {
	t.Helper()
	dump, stderr, code := runCLI(t, "dump", "--store", dir, "--format", "obe", key)
	if code != 0 {
		t.Fatalf("dump of stored stream %s: exit %d: %s", key, code, stderr)
	}
	return obeFrames(t, dump)
}

// checkPrefixes checks that every stored stream holds the first events of
// its expected stream, byte for byte, and is listed as complete only when
// it holds them all, and with no more events than its file holds.
func checkPrefixes(t *testing.T, when, dir string, want map[string][][]byte) {
	t.Helper()
	for k, e := range entries(t, dir) {
		exp, ok := want[k]
		if !ok {
			t.Errorf("%s: unexpected stream %s", when, k)
			continue
		}
		got := storedFrames(t, dir, k)
		if len(got) > len(exp) || !slices.EqualFunc(got, exp[:len(got)], func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Errorf("%s: stream %s: its %d events are not the first of the %d sent", when, k, len(got), len(exp))
		}
		if e.Events > int64(len(got)) {
			t.Errorf("%s: stream %s: listed with %d events, its file holds %d", when, k, e.Events, len(got))
		}
		if e.Complete && len(got) != len(exp) {
			t.Errorf("%s: stream %s: listed complete with %d of %d events", when, k, len(got), len(exp))
		}
	}
}

// TestServeKilledAtRandom kills `bes serve` with SIGKILL at random points while
// streams are replayed into it, 20 times (BES_LONG_TESTS=1: 100). After
// each kill the store is readable, every stored stream holds the first
// events sent, byte for byte, and is complete only when it holds them all;
// bes store check finds at most entries behind their files (and what a
// killed writer leaves), --repair clears it, and a new server completes
// the streams when they are replayed again.
func TestServeKilledAtRandom(t *testing.T) {
	if testing.Short() {
		t.Skip("runs bes serve in a process of its own")
	}
	files := serveCrashFiles()
	want := expectedFrames(t, files)
	iterations := 20
	if longTests() {
		iterations = 100
	}
	replay := func(addr string) (string, int) {
		_, stderr, code := runCLI(t, append(append([]string{"replay"}, files...), "--to", "grpc://"+addr, "--retries", "0")...)
		return stderr, code
	}
	// How long a whole replay takes here, to kill within it.
	timing := startChild(t, "--listen 127.0.0.1:0 --store "+filepath.Join(t.TempDir(), "timing"))
	start := time.Now()
	if stderr, code := replay(timing.addr); code != 0 {
		t.Fatalf("replay: exit %d: %s", code, stderr)
	}
	full := time.Since(start)
	timing.cmd.Process.Kill()
	timing.cmd.Wait()

	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	repaired, partial := map[string]int{}, 0
	for i := range iterations {
		dir := filepath.Join(t.TempDir(), "store")
		c := startChild(t, "--listen 127.0.0.1:0 --store "+dir)
		done := make(chan struct{})
		go func() {
			defer close(done)
			replay(c.addr) // fails when the server dies
		}()
		delay := time.Duration(rng.Int64N(int64(full)))
		time.Sleep(delay)
		c.cmd.Process.Kill()
		c.cmd.Wait()
		<-done
		when := fmt.Sprintf("kill %d after %v", i, delay)

		if _, stderr, code := runCLI(t, "streams", "--store", dir); code != 0 && code != ExitNoData {
			t.Fatalf("%s: bes streams: exit %d: %s", when, code, stderr)
		}
		checkPrefixes(t, when, dir, want)
		for _, e := range entries(t, dir) {
			if !e.Complete {
				partial++
			}
		}
		_, problems := checkStore(t, dir)
		onlyKinds(t, when, problems, local.ProblemBehind, local.ProblemUnindexed, local.ProblemTemp)
		for _, p := range problems {
			repaired[p.Problem]++
		}
		if len(problems) > 0 {
			repairStore(t, dir)
			checkPrefixes(t, when+", repaired", dir, want)
			for k, e := range entries(t, dir) {
				if n := len(storedFrames(t, dir, k)); e.Events != int64(n) {
					t.Errorf("%s: after the repair, stream %s is listed with %d events, its file holds %d", when, k, e.Events, n)
				}
			}
		}

		// A new server, the streams replayed again: all complete.
		srv := startServe(t, dir)
		if stderr, code := replay(srv.addr); code != 0 {
			t.Fatalf("%s: replay to a new server: exit %d: %s", when, code, stderr)
		}
		srv.stop(t)
		got := entries(t, dir)
		if len(got) != len(want) {
			t.Errorf("%s: %d streams after the second replay, want %d", when, len(got), len(want))
		}
		for k, exp := range want {
			frames := storedFrames(t, dir, k)
			if e := got[k]; e == nil || !e.Complete || e.Events != int64(len(exp)) || !slices.EqualFunc(frames, exp, func(a, b []byte) bool { return string(a) == string(b) }) {
				t.Errorf("%s: after the second replay, stream %s: entry %+v, %d events stored, want %d", when, k, e, len(frames), len(exp))
			}
		}
		if code, rows := checkStore(t, dir); code != 0 {
			t.Errorf("%s: store check after the second replay: %+v", when, rows)
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("%d kills (a whole replay takes %v): %d partial streams left; problems repaired: %v", iterations, full, partial, repaired)
}
