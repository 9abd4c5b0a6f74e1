package postgres

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// TestCheckHelperProcess is the process of TestCheckRepairGC whose upload
// is killed: it commits testdata/build_ok.bep whole, as bes ingest does,
// and is SIGKILLed while its transaction waits for the stream's lock,
// which the test holds, after the body's upload.
func TestCheckHelperProcess(t *testing.T) {
	if os.Getenv("BES_PG_CHECK_HELPER") == "" {
		return
	}
	ctx := context.Background()
	s, err := Open(ctx, os.Getenv("BES_PG_CATALOG"), os.Getenv("BES_PG_BLOBS"))
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	st, evs := readInput(t, "build_ok.bep", "killed-upload")
	w, err := s.Create(ctx, st)
	if err != nil {
		os.Exit(1)
	}
	for i := range evs {
		w.Append(&evs[i])
	}
	w.Commit(ctx, "killed", "bep", false)
	os.Exit(0)
}

// TestCheckRepairGC (issue 14): bes store check and gc on the team store,
// on a real PostgreSQL and a real bucket (a directory and versitygw's S3),
// by store/local's rules: an upload killed before its catalog commit
// leaves a blob no row names, which check reports and gc deletes once
// older than the grace period (never before: it could be an upload in
// progress); a flipped byte in a committed body is found by its record
// checksum and quarantined by Repair (the blob copied under quarantine/,
// the row dropped); a live stream (an Appender holds it) is listed as
// open, and check, repair and gc leave it and its blobs alone.
func TestCheckRepairGC(t *testing.T) {
	for _, bk := range []struct {
		name  string
		blobs func(testing.TB) string
	}{
		{"file", func(t testing.TB) string { return "file://" + t.TempDir() }},
		{"s3", newS3Blobs},
	} {
		t.Run(bk.name, func(t *testing.T) { testCheckRepairGC(t, newCatalog(t), bk.blobs(t)) })
	}
}

func testCheckRepairGC(t *testing.T, catalog, blobsURL string) {
	ctx := context.Background()
	s, err := Open(ctx, catalog, blobsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Two streams committed whole, one live.
	good := commitWhole(t, s, "test_cached.bep", "good")
	damaged := commitWhole(t, s, "test_mixed.bep", "damaged")
	live, err := Open(ctx, catalog, blobsURL) // another replica
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	lst, levs := readInput(t, "test_mixed.bep", "live")
	a, _, err := live.OpenAppend(ctx, lst, store.AppendOptions{Source: "replica", Format: "grpc"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range levs[:60] {
		a.Append(&levs[i])
		if i%20 == 19 {
			if err := a.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	liveBlobs := func() []string {
		t.Helper()
		chunks, _, err := s.body(ctx, lst.Key)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range chunks {
			out = append(out, c.blob)
		}
		return out
	}
	liveBefore := liveBlobs()

	res, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Entries != 3 || len(res.Open) != 1 || res.Open[0] != lst.Key || res.Files != 2+len(liveBefore) {
		t.Fatalf("intact store: %+v, want consistent, 3 streams, the live one open, %d blobs", res, 2+len(liveBefore))
	}

	// 1. An upload killed before its catalog commit: the helper's
	// commit waits for the stream's lock, which this test holds.
	kst, _ := readInput(t, "build_ok.bep", "killed-upload")
	lockConn, err := pgx.Connect(ctx, catalog)
	if err != nil {
		t.Fatal(err)
	}
	defer lockConn.Close(ctx)
	if _, err := lockConn.Exec(ctx, `SELECT pg_advisory_lock($1)`, s.lockID('K', kst.Key)); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCheckHelperProcess$")
	cmd.Env = append(os.Environ(), "BES_PG_CHECK_HELPER=1", "BES_PG_CATALOG="+catalog, "BES_PG_BLOBS="+blobsURL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var orphan string
	for deadline := time.Now().Add(30 * time.Second); orphan == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		bs, err := s.streamBlobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if strings.HasPrefix(b.name, streamDir(kst.Key)+"/") {
				orphan = b.name
			}
		}
	}
	if orphan == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the helper uploaded nothing: %s", stderr.String())
	}
	// The upload in progress: not reported, and gc leaves it.
	if res, err := s.Check(ctx); err != nil || !res.OK() {
		t.Errorf("with an upload in progress: %+v, %v; want consistent", res, err)
	}
	if _, orphans, err := s.GC(ctx, store.GCOptions{Keep: -1}); err != nil || len(orphans) != 0 || !blobExists(t, s, orphan) {
		t.Errorf("gc with an upload in progress: %+v, %v; want its blob left", orphans, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := lockConn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, s.lockID('K', kst.Key)); err != nil {
		t.Fatal(err)
	}
	if es, _ := s.Lookup(ctx, kst.Key); len(es) != 0 {
		t.Fatalf("the killed upload's stream is listed: %+v", es)
	}

	// 2. A flipped byte in the middle of a committed body.
	chunks, _, err := s.body(ctx, damaged.Key)
	if err != nil || len(chunks) != 1 {
		t.Fatalf("%v, %v", chunks, err)
	}
	body := readBlob(t, s, chunks[0].blob)
	flipped := bytes.Clone(body)
	flipped[len(flipped)/2] ^= 0x20
	writeBlob(t, s, chunks[0].blob, flipped)

	// The orphan is old enough for a Store whose grace is shorter.
	time.Sleep(50 * time.Millisecond)
	short, err := Open(ctx, catalog, blobsURL, WithOrphanGrace(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	res, err = short.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[store.ProblemKind]store.Problem{}
	for _, p := range res.Problems {
		kinds[p.Kind] = p
	}
	if p, ok := kinds[store.ProblemMismatch]; !ok || p.Key != damaged.Key || p.File != chunks[0].blob || !strings.Contains(p.Detail, "checksum") {
		t.Errorf("flipped byte: %+v; want a content mismatch of %s naming its checksum", res.Problems, chunks[0].blob)
	}
	if p, ok := kinds[store.ProblemOrphanBlob]; !ok || p.File != orphan {
		t.Errorf("killed upload: %+v; want the orphan blob %s", res.Problems, orphan)
	}
	if len(res.Problems) != 2 || len(res.Open) != 1 {
		t.Errorf("problems %+v, open %v; want 2 problems, the live stream open", res.Problems, res.Open)
	}

	rep, err := short.Repair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("repair: %q", rep.Actions)
	if len(rep.Actions) != 1 || !strings.Contains(rep.Actions[0], "quarantined") {
		t.Errorf("repair actions %q, want the damaged body quarantined", rep.Actions)
	}
	if got := readBlob(t, s, QuarantinePrefix+chunks[0].blob); !bytes.Equal(got, flipped) {
		t.Errorf("the quarantined blob holds %d bytes, not the damaged body", len(got))
	}
	if es, _ := s.Lookup(ctx, damaged.Key); len(es) != 0 {
		t.Errorf("the damaged stream is still listed: %+v", es)
	}
	// Repair leaves the orphan to gc.
	if len(rep.After.Problems) != 1 || rep.After.Problems[0].Kind != store.ProblemOrphanBlob {
		t.Errorf("after repair: %+v, want the orphan blob only", rep.After.Problems)
	}

	// 3. gc: --keep 0 removes every stream but the live one; the orphan
	// is deleted; the quarantine stays.
	items, orphans, err := short.GC(ctx, store.GCOptions{Keep: 0})
	if err != nil {
		t.Fatal(err)
	}
	removed, busy := 0, 0
	for _, it := range items {
		switch {
		case it.Removed:
			removed++
		case it.Busy && it.Entry.Key == lst.Key:
			busy++
		default:
			t.Errorf("gc item %+v", it)
		}
	}
	if removed != 1 || busy != 1 {
		t.Errorf("gc --keep 0: %d removed, %d busy; want the good stream removed, the live one kept", removed, busy)
	}
	if len(orphans) != 1 || orphans[0].Name != orphan || !orphans[0].Removed || blobExists(t, s, orphan) {
		t.Errorf("gc orphans %+v; want %s removed", orphans, orphan)
	}
	if !blobExists(t, s, QuarantinePrefix+chunks[0].blob) {
		t.Errorf("gc deleted the quarantined blob")
	}
	if es, _ := s.Lookup(ctx, good.Key); len(es) != 0 {
		t.Errorf("gc --keep 0 left %+v", es)
	}

	// The live stream: untouched, and it goes on.
	for _, b := range liveBefore {
		if !blobExists(t, s, b) {
			t.Errorf("the live stream's blob %s is gone", b)
		}
	}
	for i := 60; i < len(levs); i++ {
		a.Append(&levs[i])
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatalf("the live stream after check, repair and gc: %v", err)
	}
	if _, err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := s.Events(ctx, entryOfKey(t, s, lst.Key), func(*bepfile.Stream, *bepfile.Event) error { n++; return nil }); err != nil || n != len(levs) {
		t.Errorf("the live stream reads %d events, %v; want %d", n, err, len(levs))
	}
	if res, err := s.Check(ctx); err != nil || !res.OK() || res.Entries != 1 {
		t.Errorf("at the end: %+v, %v; want consistent, the live stream", res, err)
	}
}

// commitWhole commits testdata/name whole, as bes ingest does.
func commitWhole(t *testing.T, s *Store, name, buildID string) *store.Entry {
	t.Helper()
	st, evs := readInput(t, name, buildID)
	w, err := s.Create(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		w.Append(&evs[i])
	}
	e, res, err := w.Commit(context.Background(), name, "bep", false)
	if err != nil || res != store.Created {
		t.Fatalf("commit %s: %v, %v", name, res, err)
	}
	return e
}

func readBlob(t *testing.T, s *Store, name string) []byte {
	t.Helper()
	r, err := s.blobs.open(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeBlob overwrites the blob name with b, as damage would.
func writeBlob(t *testing.T, s *Store, name string, b []byte) {
	t.Helper()
	if err := s.blobs.b.WriteAll(context.Background(), name, b, nil); err != nil {
		t.Fatal(err)
	}
}

func blobExists(t *testing.T, s *Store, name string) bool {
	t.Helper()
	ok, err := s.blobs.b.Exists(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestCheckChunkEvents: each chunk's event count is checked, not only
// their sum; and Repair leaves a live stream alone even when it is wrong.
func TestCheckChunkEvents(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, newCatalog(t), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, evs := readInput(t, "test_mixed.bep", "chunks")
	a := appendInChunks(t, s, st, evs)
	shift := func(d int) {
		t.Helper()
		for n, dd := range map[int]int{1: d, 2: -d} {
			if _, err := s.pool.Exec(ctx, `UPDATE chunks SET events = events + $1 WHERE kid = $2 AND n = $3`, dd, kidOf(st.Key), n); err != nil {
				t.Fatal(err)
			}
		}
	}
	shift(1)
	res, err := s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || res.Problems[0].Kind != store.ProblemMismatch || !strings.Contains(res.Problems[0].Detail, "chunk 1 holds 40 events, the catalog says 41") {
		t.Errorf("chunks' event counts shifted: %+v", res.Problems)
	}
	rep, err := s.Repair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Actions) != 0 || len(rep.After.Problems) != 1 {
		t.Errorf("repair of a live stream: %q, after %+v; want it left alone", rep.Actions, rep.After.Problems)
	}
	shift(-1)
	if _, err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Check(ctx); err != nil || !res.OK() {
		t.Errorf("closed: %+v, %v", res, err)
	}
}
