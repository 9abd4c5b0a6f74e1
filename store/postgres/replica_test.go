package postgres

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// Several processes on one team store (issue 14): the test binary runs
// itself as the other processes (TestHelperProcess), which a test kills
// with SIGKILL as a machine's crash would.

// readInput reads testdata/name whole, as bes ingest does.
func readInput(t testing.TB, name, buildID string) (*bepfile.Stream, []bepfile.Event) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := bepfile.NewReader(f, name, bepfile.Options{BuildID: buildID})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var st *bepfile.Stream
	var evs []bepfile.Event
	for {
		s, ev, err := r.Next()
		if err == io.EOF {
			return st, evs
		}
		if err != nil {
			t.Fatal(err)
		}
		st = s
		evs = append(evs, *ev)
	}
}

// helper starts the test binary as a helper process doing what, with env.
func helper(t *testing.T, what string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), append(env, "BES_PG_HELPER="+what)...)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestHelperProcess is the other processes of the tests below; it does
// nothing when run as a test.
func TestHelperProcess(t *testing.T) {
	what := os.Getenv("BES_PG_HELPER")
	if what == "" {
		return
	}
	ctx := context.Background()
	s, err := Open(ctx, os.Getenv("BES_PG_CATALOG"), os.Getenv("BES_PG_BLOBS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	switch what {
	case "append":
		// Appends test_mixed.bep in syncs of 5 events, printing the
		// count acknowledged after each, slowly, until killed.
		st, evs := readInput(t, "test_mixed.bep", "replica")
		a, _, err := s.OpenAppend(ctx, st, store.AppendOptions{Source: "replica-1", Format: "grpc"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for i := range evs {
			a.Append(&evs[i])
			if (i+1)%5 == 0 {
				if err := a.Sync(ctx); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				fmt.Printf("acked %d\n", a.Events())
				time.Sleep(20 * time.Millisecond)
			}
		}
		select {} // never closes: killed
	case "ingest":
		// Commits every file of BES_PG_FILES, one stream each, as
		// bes ingest does, and prints each outcome.
		for _, name := range strings.Fields(os.Getenv("BES_PG_FILES")) {
			st, evs := readInput(t, name, "")
			w, err := s.Create(ctx, st)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			for i := range evs {
				w.Append(&evs[i])
			}
			e, res, err := w.Commit(ctx, name, "bep", false)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			fmt.Printf("%s %s %d\n", e.Key, res, e.Events)
		}
	}
	s.Close()
	os.Exit(0)
}

// TestReplicaKilledMidStream: a process appending a live stream is
// SIGKILLed between syncs, or in the middle of one; another process's
// Appender opens the stream as soon as PostgreSQL has seen the first one's
// connection end, finds every acknowledged event, and continues after
// what is stored (the events a client re-sends skipped by sequence
// number, as bes serve does), so that the stream ends whole, byte for
// byte, each event once.
func TestReplicaKilledMidStream(t *testing.T) {
	for _, tc := range []struct {
		name  string
		blobs func(t *testing.T) string
	}{
		{"file", func(t *testing.T) string { return "file://" + t.TempDir() }},
		{"s3", func(t *testing.T) string { return newS3Blobs(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			catalog, blobs := newCatalog(t), tc.blobs(t)
			for _, killAt := range []int64{5, 45, 100} {
				killedMidStream(t, catalog, blobs, killAt)
			}
		})
	}
}

func killedMidStream(t *testing.T, catalog, blobs string, killAt int64) {
	ctx := context.Background()
	s, err := Open(ctx, catalog, blobs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, evs := readInput(t, "test_mixed.bep", "replica")
	if err := s.Delete(ctx, st.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}

	cmd := helper(t, "append", "BES_PG_CATALOG="+catalog, "BES_PG_BLOBS="+blobs)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked int64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		n, err := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "acked "), 10, 64)
		if err != nil {
			t.Fatalf("helper said %q", sc.Text())
		}
		acked = n
		if acked >= killAt {
			break
		}
	}
	// Killed while it sleeps after its ack, or during its next sync.
	time.Sleep(time.Duration(killAt%3) * 10 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if acked < killAt {
		t.Fatalf("the helper acknowledged %d events before it ended, want %d", acked, killAt)
	}

	// Meanwhile the stream is readable, up to what was acknowledged at
	// least, and listed with that count or the next chunk's.
	e := entryOfKey(t, s, st.Key)
	if e.Events < acked || e.Events > acked+5 || e.Source != "replica-1" {
		t.Fatalf("after the kill: entry %+v, acknowledged %d", e, acked)
	}

	// Another replica continues it: its lock is free once PostgreSQL has
	// closed the dead connection.
	var a store.Appender
	var loaded *store.Stream
	for deadline := time.Now().Add(10 * time.Second); ; {
		a, loaded, err = s.OpenAppend(ctx, st, store.AppendOptions{Source: "replica-2"})
		if !errors.Is(err, store.ErrStreamBusy) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("the second replica: %v", err)
	}
	n := int64(loaded.Len())
	if n < acked || n != e.Events || a.Events() != n {
		t.Fatalf("the second replica found %d events (Events() %d); %d acknowledged, %d listed", n, a.Events(), acked, e.Events)
	}
	// The client re-sends from its last acknowledged event: the server
	// stores what follows the stored sequence numbers.
	last := evs[n-1].Seq
	for i := acked; i < int64(len(evs)); i++ {
		if evs[i].Seq <= last {
			continue
		}
		if err := a.Append(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	final, err := a.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if final.Events != int64(len(evs)) || !final.Complete || final.Source != "replica-1" {
		t.Fatalf("final entry %+v, want %d events, complete", final, len(evs))
	}
	var got, want []byte
	err = s.Events(ctx, final, func(st *bepfile.Stream, ev *bepfile.Event) error {
		got = ev.AppendEncoding(got, st)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		want = evs[i].AppendEncoding(want, st)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("killed at %d: the stream read back (%d bytes) is not the input (%d bytes)", killAt, len(got), len(want))
	}
	// The same stream committed whole has the same entry.
	whole := mustCommitWhole(t, s, st, evs)
	if whole.Digest != final.Digest || whole.Size != final.Size {
		t.Errorf("killed at %d: appended %s (%d bytes), whole %s (%d bytes)", killAt, final.Digest, final.Size, whole.Digest, whole.Size)
	}
}

func entryOfKey(t *testing.T, s *Store, key string) *store.Entry {
	t.Helper()
	es, err := s.Lookup(context.Background(), key)
	if err != nil || len(es) != 1 {
		t.Fatalf("Lookup(%q) = %v, %v", key, es, err)
	}
	return es[0]
}

// mustCommitWhole commits st whole, in place of what is stored, and
// returns the entry it would have: an Unchanged commit returns the stored
// one, else the replacement's.
func mustCommitWhole(t *testing.T, s *Store, st *bepfile.Stream, evs []bepfile.Event) *store.Entry {
	t.Helper()
	w, err := s.Create(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		w.Append(&evs[i])
	}
	e, res, err := w.Commit(context.Background(), "whole", "bep", true)
	if err != nil {
		t.Fatal(err)
	}
	if res != store.Unchanged {
		t.Errorf("the stream committed whole over the appended one: %v, want unchanged", res)
	}
	return e
}

// TestConcurrentIngestProcesses: processes commit streams into one store
// at once, some of the same files: every stream is listed once, created by
// one process and unchanged for the others, and reads back whole.
func TestConcurrentIngestProcesses(t *testing.T) {
	catalog, blobs := newCatalog(t), newS3Blobs(t)
	files := []string{"test_mixed.bep", "build_ok.bep", "test_cached.bep", "build_keep_going_fail.bep", "build_genrules.bep", "query.bep"}
	const procs = 6
	var mu sync.Mutex
	outcomes := map[string][]string{} // key: the results
	var wg sync.WaitGroup
	for p := range procs {
		// Each process: two files of its own, and test_mixed.bep.
		mine := []string{files[p%len(files)], files[(p+1)%len(files)], "test_mixed.bep"}
		cmd := helper(t, "ingest", "BES_PG_CATALOG="+catalog, "BES_PG_BLOBS="+blobs, "BES_PG_FILES="+strings.Join(mine, " "))
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := cmd.Output()
			if err != nil {
				t.Errorf("process %d: %v", p, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(line)
				outcomes[f[0]] = append(outcomes[f[0]], f[1])
			}
		}()
	}
	wg.Wait()
	ctx := context.Background()
	s, err := Open(ctx, catalog, blobs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var listed []*store.Entry
	if err := s.List(ctx, func(e *store.Entry) error { listed = append(listed, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != len(files) || len(outcomes) != len(files) {
		t.Fatalf("%d streams listed, %d keys committed; want %d", len(listed), len(outcomes), len(files))
	}
	for _, e := range listed {
		res := outcomes[e.Key]
		created := 0
		for _, r := range res {
			switch r {
			case "created":
				created++
			case "unchanged":
			default:
				t.Errorf("%s: %s", e.Key, r)
			}
		}
		if created != 1 {
			t.Errorf("%s: outcomes %q, want one created", e.Key, res)
		}
		st, evs := readInput(t, e.Source, "")
		var got, want []byte
		if err := s.Events(ctx, e, func(st *bepfile.Stream, ev *bepfile.Event) error {
			got = ev.AppendEncoding(got, st)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for i := range evs {
			want = evs[i].AppendEncoding(want, st)
		}
		if !bytes.Equal(got, want) || e.Events != int64(len(evs)) {
			t.Errorf("%s: %d events, %d bytes read back; want %d, %d", e.Key, e.Events, len(got), len(evs), len(want))
		}
	}
	if n := len(outcomes["657fb236-551f-4f88-ab84-e114caf29e48.3.657fb236-551f-4f88-ab84-e114caf29e48"]); n != procs+2 {
		t.Errorf("test_mixed.bep committed %d times, want %d", n, procs+2)
	}
}
