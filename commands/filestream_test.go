package commands

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/bes-cli/bes/bepfile/bepgen"
)

// peakHeap runs bes with args, its output discarded, and returns the
// highest HeapInuse seen while it ran (sampled every millisecond) above
// what was in use before, and its exit status.
func peakHeap(t *testing.T, args ...string) (uint64, int) {
	t.Helper()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var (
		peak uint64
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	app := NewApp("test")
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	err := Run(context.Background(), app, append([]string{"bes"}, args...))
	close(stop)
	wg.Wait()
	if peak < base.HeapInuse {
		return 0, ExitCode(err)
	}
	return peak - base.HeapInuse, ExitCode(err)
}

// TestFileCommandsMemoryBounded checks that dump (table), query and
// streams read a file event by event (issues 12 and 13): the heap they
// use does not grow with the file. Before, they loaded every event of
// the file: on these inputs the peak grew by about twice the 32 MB the
// larger file adds.
func TestFileCommandsMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 38 MB of input")
	}
	dir := t.TempDir()
	gen := func(name string, size int64) string {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := bepgen.WriteBEP(f, bepgen.Config{Seed: 1, Size: size}); err != nil {
			t.Fatal(err)
		}
		return path
	}
	small, large := gen("small.bep", 6<<20), gen("large.bep", 38<<20)
	const grace = 12 << 20 // what may differ between two runs of a bounded command
	for _, c := range []struct {
		name string
		args []string
		code int
	}{
		{"dump table", []string{"dump"}, 0},
		{"query table", []string{"query", `kind == "buildFinished" || seq < 20`}, 0},
		{"query ndjson", []string{"query", "-o", "ndjson", `kind == "testResult"`}, 0},
		{"query json", []string{"query", "-o", "json", `kind == "testResult"`}, 0},
		{"dump json", []string{"dump", "-o", "json"}, 0},
		{"query obe", []string{"query", "-o", "obe", "--kind", "testResult"}, 0},
		{"streams", []string{"streams"}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, code := peakHeap(t, append(c.args, small)...)
			if code != c.code {
				t.Fatalf("%s small: exit %d, want %d", strings.Join(c.args, " "), code, c.code)
			}
			l, code := peakHeap(t, append(c.args, large)...)
			if code != c.code {
				t.Fatalf("%s large: exit %d, want %d", strings.Join(c.args, " "), code, c.code)
			}
			t.Logf("peak heap in use: %.1f MB on 6 MB, %.1f MB on 38 MB", float64(s)/(1<<20), float64(l)/(1<<20))
			if l > s+grace {
				t.Errorf("peak heap grew with the input: %d bytes on 6 MB, %d on 38 MB (more than %d apart)", s, l, grace)
			}
		})
	}
}

// TestFileCommandsSameOutputStreamed checks that the streaming readings
// of files print what reading the streams into memory prints: the same
// input given as a file and on standard input (which cannot be read twice,
// so it is read from a temporary copy).
func TestFileCommandsSameOutputStreamed(t *testing.T) {
	var buf bytes.Buffer
	if _, err := bepgen.WriteBEP(&buf, bepgen.Config{Seed: 3, Targets: 40}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gen.bep")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"dump"},
		{"query", `kind == "testResult"`},
		{"query", "-o", "ndjson", "--kind", "completed"},
		{"query", "-o", "obe", `seq > 5`},
	} {
		streamed, serr, scode := runCLI(t, append(args, path)...)
		loaded, lerr, lcode := runWithStdin(t, buf.Bytes(), append(args, "-")...)
		if streamed == "" || scode != 0 {
			t.Fatalf("%v: exit %d, stdout %d bytes, stderr %q", args, scode, len(streamed), serr)
		}
		if streamed != loaded || serr != lerr || scode != lcode {
			t.Errorf("%v: streamed (exit %d, %d bytes) differs from loaded (exit %d, %d bytes)", args, scode, len(streamed), lcode, len(loaded))
		}
	}
}

// runWithStdin is runCLI with in as standard input.
func runWithStdin(t *testing.T, in []byte, args ...string) (string, string, int) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(in); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = old }()
	return runCLI(t, args...)
}

// TestFileCommandsReportEachDamagedEvent: the streamed readings hand out a
// new *Event per event (the damage log tells events apart by pointer), so
// that each of several damaged events is reported once, by dump's table
// and by a query that decodes them, as the loaded reading reports them.
func TestFileCommandsReportEachDamagedEvent(t *testing.T) {
	evs := [][]byte{dmgStarted("inv-many")}
	for i := uint64(1); i <= 4; i++ {
		evs = append(evs, dmgProgress(i, fmt.Sprintf("bad %d \xff\n", i)))
	}
	evs = append(evs, dmgFinished())
	data := dmgBEP(evs...)
	path := filepath.Join(t.TempDir(), "many.bep")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"dump"},
		{"query", `kind == "progress" && event.progress.stderr != ""`},
		{"query", "-o", "ndjson", `event.progress.stderr != ""`},
	} {
		_, stderr, code := runCLI(t, append(args, path)...)
		_, lerr, lcode := runWithStdin(t, data, append(args, "-")...)
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if code != ExitDamaged || len(lines) != 4 {
			t.Fatalf("%v: exit %d, want %d; stderr:\n%s", args, code, ExitDamaged, stderr)
		}
		for i, l := range lines {
			if want := fmt.Sprintf("(event %d): invalid UTF-8 in progress.stderr (replaced by U+FFFD)", i+1); !strings.HasSuffix(l, want) {
				t.Errorf("%v: line %d = %q, want it to end in %q", args, i, l, want)
			}
		}
		if strings.ReplaceAll(stderr, path, "-") != strings.ReplaceAll(lerr, "<stdin>", "-") || lcode != code {
			t.Errorf("%v: streamed stderr %q (exit %d), loaded %q (exit %d)", args, stderr, code, lerr, lcode)
		}
	}
}

// TestStdinMemoryBounded: standard input, plain or compressed, is read in
// memory bounded independently of its size, as a regular file is (issue
// 13: `bes query` of a 97 KB zstd stream that expands to 1 GiB took 2.6 GB
// on standard input). It is copied, as it comes, to a temporary file that
// is read like any other, and removed.
func TestStdinMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 38 MB of input")
	}
	dir := t.TempDir()
	gen := func(name string, size int64, compress bool) string {
		var buf bytes.Buffer
		if _, err := bepgen.WriteBEP(&buf, bepgen.Config{Seed: 1, Size: size}); err != nil {
			t.Fatal(err)
		}
		data := buf.Bytes()
		if compress {
			// One window size for both inputs: the decoder holds a
			// window's history, whatever the input's size.
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
			if err != nil {
				t.Fatal(err)
			}
			data = enc.EncodeAll(data, nil)
			enc.Close()
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// bes reads these as standard input.
	withStdin := func(path string, fn func()) {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		old := os.Stdin
		os.Stdin = f
		defer func() { os.Stdin = old }()
		fn()
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the copies go
	const grace = 12 << 20
	for _, compress := range []bool{false, true} {
		small, large := gen(fmt.Sprintf("small-%v", compress), 6<<20, compress), gen(fmt.Sprintf("large-%v", compress), 38<<20, compress)
		for _, args := range [][]string{
			{"dump", "-"},
			{"query", `kind == "buildFinished" || seq < 20`, "-"},
			{"query", "-o", "obe", "--kind", "testResult", "-"},
		} {
			var s, l uint64
			var sc, lc int
			withStdin(small, func() { s, sc = peakHeap(t, args...) })
			withStdin(large, func() { l, lc = peakHeap(t, args...) })
			t.Logf("%v (zstd %v): peak heap in use %.1f MB on 6 MB, %.1f MB on 38 MB", args, compress, float64(s)/(1<<20), float64(l)/(1<<20))
			if sc != 0 || lc != 0 {
				t.Fatalf("%v: exit %d and %d", args, sc, lc)
			}
			if l > s+grace {
				t.Errorf("%v (zstd %v): peak heap grew with the input: %d bytes on 6 MB, %d on 38 MB", args, compress, s, l)
			}
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("%d temporary copies left behind", len(left))
	}
}

// TestCaptureMemoryBounded: a BES capture, whose streams come interleaved
// event by event, is read by dump and query in memory bounded
// independently of its size (issue 13: they read it whole into memory),
// here with groupBudget at 2 MiB; and query's json (issue 13: held every
// event) of a capture and of a Bazel file.
func TestCaptureMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("generates 55 MB of input")
	}
	defer func(b int64) { groupBudget = b }(groupBudget)
	groupBudget = 2 << 20
	dir := t.TempDir()
	gen := func(name string, streams int) string {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := bepgen.WriteOBE(f, bepgen.CaptureConfig{Seed: 1, Streams: streams, MinTargets: 200, MaxTargets: 400}); err != nil {
			t.Fatal(err)
		}
		return path
	}
	small, large := gen("small.obe", 8), gen("large.obe", 48) // 7.5 MB, 47 MB
	const grace = 12 << 20
	for _, c := range []struct {
		name string
		args []string
	}{
		{"dump table", []string{"dump"}},
		{"dump ndjson", []string{"dump", "-o", "ndjson"}},
		{"dump json", []string{"dump", "-o", "json"}},
		{"query table", []string{"query", `kind == "testResult"`}},
		{"query json", []string{"query", "-o", "json", `kind == "testResult"`}},
		{"query obe", []string{"query", "-o", "obe", "--kind", "testSummary"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, code := peakHeap(t, append(c.args, small)...)
			if code != 0 {
				t.Fatalf("%v small: exit %d", c.args, code)
			}
			l, code := peakHeap(t, append(c.args, large)...)
			if code != 0 {
				t.Fatalf("%v large: exit %d", c.args, code)
			}
			t.Logf("peak heap in use: %.1f MB on 7.5 MB, %.1f MB on 47 MB", float64(s)/(1<<20), float64(l)/(1<<20))
			if l > s+grace {
				t.Errorf("peak heap grew with the input: %d bytes on 7.5 MB, %d on 47 MB (more than %d apart)", s, l, grace)
			}
		})
	}
}

// TestBoundedReadsSameOutput: what the bounded readings of issue 13 print
// (a capture's interleaved streams grouped by groupedEvents, over several
// batches; query's json written as it reads) is byte for byte what reading
// the streams into memory prints, on the captures and Bazel's files of
// testdata and a generated capture of 12 interleaved streams.
func TestBoundedReadsSameOutput(t *testing.T) {
	defer func(b int64) { groupBudget = b }(groupBudget)
	groupBudget = 64 << 10 // several batches
	var buf bytes.Buffer
	if _, err := bepgen.WriteOBE(&buf, bepgen.CaptureConfig{Seed: 5, Streams: 12, MinTargets: 2, MaxTargets: 30}); err != nil {
		t.Fatal(err)
	}
	gen := filepath.Join(t.TempDir(), "capture.obe")
	if err := os.WriteFile(gen, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	inputs := []string{gen, td("bes_test_mixed.obe"), td("bes_test_mixed.lifecycle.obe"), td("test_mixed.bep"), td("build_ok.json"), td("truncated-test_mixed.bep")}
	for _, in := range inputs {
		for _, args := range [][]string{
			{"dump"},
			{"dump", "-o", "ndjson"},
			{"dump", "-o", "obe"},
			{"dump", "-o", "json"},
			{"query", `kind == "testResult" || seq % 5 == 0`},
			{"query", "-o", "json", `kind == "progress"`},
			{"query", "-o", "json", "--kind", "nosuch"},
			{"query", "-o", "ndjson", "--kind", "testSummary"},
			{"query", "-o", "obe", `seq > 3`},
		} {
			args := append(args, in)
			bout, berr, bcode := runCLI(t, args...)
			boundedReads = false
			mout, merr, mcode := runCLI(t, args...)
			boundedReads = true
			if bout != mout || berr != merr || bcode != mcode {
				t.Errorf("%v: bounded (exit %d, %d bytes, stderr %q) differs from in memory (exit %d, %d bytes, stderr %q)", args, bcode, len(bout), berr, mcode, len(mout), merr)
			}
		}
	}
}
