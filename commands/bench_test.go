package commands

// Benchmarks of bes on large generated inputs, each beside its naive
// baseline (package naive: protodelim and a full protobuf-go decode of
// every event), so that every figure is a ratio measured in one run:
//
//	go test ./commands -run '^$' -bench . -benchtime 5x
//
// Each BenchmarkX has the sub-benchmarks bes and naive (or replay). The
// inputs are generated once per process, by package bepgen, into a
// temporary directory removed at the end: a binary BEP file of
// $BES_BENCH_SIZE bytes (default 64MB; BENCHMARKS.md uses 200MB) and a
// store of $BES_BENCH_STREAMS streams (default 10000). testdata/bench.sh
// times the bes binary against jq and the naive binary on the same kind
// of input.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/bepgen"
	"github.com/bes-cli/bes/bepfile/bepgen/naive"
	"github.com/bes-cli/bes/store/local"
)

// benchInputs are the generated inputs, made on first use.
type benchInputs struct {
	once    sync.Once
	dir     string
	bep     string // a binary BEP file of about benchSize bytes
	size    int64
	store   string // a store of benchStreams streams
	streams int
	storeSz int64
	err     error
}

// inputs is the process's one set of inputs, generated once per benchmark
// process as the benchmarks need them and removed by TestMain (tests do
// not use it).
var inputs benchInputs

// envInt reads a count or a size ("200MB", "1GB", "4096") from the
// environment, def if it is unset or bad.
func envInt(name string, def int64) int64 {
	v := strings.ToUpper(strings.TrimSpace(os.Getenv(name)))
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}} {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSuffix(v, u.suffix), u.m
			break
		}
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
		return int64(f * mult)
	}
	return def
}

func (in *benchInputs) get(b *testing.B, withStore bool) *benchInputs {
	b.Helper()
	in.once.Do(func() {
		in.dir, in.err = os.MkdirTemp("", "bes-bench-")
		if in.err != nil {
			return
		}
		in.bep = filepath.Join(in.dir, "gen.bep")
		f, err := os.Create(in.bep)
		if err != nil {
			in.err = err
			return
		}
		st, err := bepgen.WriteBEP(f, bepgen.Config{Seed: 1, Size: envInt("BES_BENCH_SIZE", 64e6)})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		in.size, in.err = st.Bytes, err
	})
	if in.err != nil {
		b.Fatal(in.err)
	}
	if withStore && in.store == "" {
		in.makeStore(b)
	}
	return in
}

// makeStore ingests a capture of many small invocations into a store.
func (in *benchInputs) makeStore(b *testing.B) {
	in.streams = int(envInt("BES_BENCH_STREAMS", 10000))
	capture := filepath.Join(in.dir, "capture.obe")
	f, err := os.Create(capture)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bepgen.WriteOBE(f, bepgen.CaptureConfig{Seed: 2, Streams: in.streams, MinTargets: 1, MaxTargets: 4}); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(in.dir, "store")
	err = runIngest(context.Background(), ingestOptions{Store: dir, Format: formatNDJSON}, []string{capture}, io.Discard, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	os.Remove(capture)
	in.store = dir
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			in.storeSz += fi.Size()
		}
		return nil
	})
}

func TestMain(m *testing.M) {
	code := m.Run()
	if inputs.dir != "" {
		os.RemoveAll(inputs.dir)
	}
	os.Exit(code)
}

// benchFile runs fn on the binary file, reporting its throughput.
func benchFile(b *testing.B, fn func(path string) error) {
	in := inputs.get(b, false)
	b.SetBytes(in.size)
	b.ReportAllocs()
	for b.Loop() {
		if err := fn(in.bep); err != nil && ExitCode(err) != ExitTestFail && ExitCode(err) != ExitBuildFail {
			b.Fatal(err)
		}
	}
}

// naiveFile runs a naive baseline on the binary file.
func naiveFile(b *testing.B, fn func(r io.Reader, w io.Writer) error) {
	benchFile(b, func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return fn(f, io.Discard)
	})
}

func BenchmarkTests(b *testing.B) {
	b.Run("bes", func(b *testing.B) {
		benchFile(b, func(path string) error {
			return runTests(context.Background(), testsOptions{viewOptions: viewOptions{Format: formatTable}, Statuses: []string{"FAILED"}}, []string{path}, io.Discard, io.Discard)
		})
	})
	b.Run("naive", func(b *testing.B) {
		naiveFile(b, func(r io.Reader, w io.Writer) error { return naive.Tests(r, w, bes.TestStatus_FAILED) })
	})
}

func BenchmarkFailures(b *testing.B) {
	b.Run("bes", func(b *testing.B) {
		benchFile(b, func(path string) error {
			return runFailures(context.Background(), viewOptions{Format: formatTable}, 0, []string{path}, io.Discard, io.Discard)
		})
	})
	b.Run("naive", func(b *testing.B) { naiveFile(b, naive.Failures) })
}

func BenchmarkSummary(b *testing.B) {
	b.Run("bes", func(b *testing.B) {
		benchFile(b, func(path string) error {
			return runSummary(context.Background(), viewOptions{Format: formatTable}, []string{path}, io.Discard, io.Discard)
		})
	})
	b.Run("naive", func(b *testing.B) { naiveFile(b, naive.Summary) })
}

// BenchmarkReport builds the page of the generated file (bes report,
// issue 16), written to io.Discard.
func BenchmarkReport(b *testing.B) {
	benchFile(b, func(path string) error {
		return runReport(context.Background(), reportOptions{LogLines: 20}, []string{path}, io.Discard, io.Discard)
	})
}

// BenchmarkQuery selects the failed test results, with the shortcut
// filters (a peek at each event's kind) and the naive way.
func BenchmarkQuery(b *testing.B) {
	b.Run("bes", func(b *testing.B) {
		benchFile(b, func(path string) error {
			err := runQuery(context.Background(), queryOptions{Format: formatNDJSON, Kinds: []string{"testResult"}, Statuses: []string{"FAILED"}}, []string{path}, io.Discard, io.Discard)
			if ExitCode(err) == ExitNoData {
				return fmt.Errorf("no failed test result: %w", err)
			}
			return err
		})
	})
	b.Run("naive", func(b *testing.B) {
		naiveFile(b, func(r io.Reader, w io.Writer) error {
			return naive.Each(r, func(ev *bes.BuildEvent) error {
				if ev.GetTestResult().GetStatus() == bes.TestStatus_FAILED {
					_, err := proto.Marshal(ev)
					return err
				}
				return nil
			})
		})
	})
}

func BenchmarkIngest(b *testing.B) {
	b.Run("bes", func(b *testing.B) {
		tmp := b.TempDir()
		n := 0
		benchFile(b, func(path string) error {
			n++
			dir := filepath.Join(tmp, strconv.Itoa(n))
			defer os.RemoveAll(dir)
			return runIngest(context.Background(), ingestOptions{Store: dir, Format: formatTable}, []string{path}, io.Discard, io.Discard)
		})
	})
	b.Run("naive", func(b *testing.B) {
		out := filepath.Join(b.TempDir(), "naive.obe")
		naiveFile(b, func(r io.Reader, _ io.Writer) error {
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			defer os.Remove(out)
			if err := naive.Ingest(r, f); err != nil {
				f.Close()
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		})
	})
}

func BenchmarkDumpNDJSON(b *testing.B) {
	b.Run("bes", func(b *testing.B) {
		benchFile(b, func(path string) error {
			return runDump(context.Background(), dumpOptions{Format: formatNDJSON}, []string{path}, io.Discard, io.Discard)
		})
	})
	b.Run("naive", func(b *testing.B) { naiveFile(b, naive.DumpNDJSON) })
}

func BenchmarkDumpTable(b *testing.B) {
	benchFile(b, func(path string) error {
		return runDump(context.Background(), dumpOptions{Format: formatTable}, []string{path}, io.Discard, io.Discard)
	})
}

// BenchmarkStreamsMatch lists the streams of a large store whose key
// matches a regular expression, from the index, against replaying every
// stream (decoding each event whole) to find them.
func BenchmarkStreamsMatch(b *testing.B) {
	const pattern = `^[0-9a-f]{4}a`
	b.Run("bes", func(b *testing.B) {
		in := inputs.get(b, true)
		b.ReportMetric(float64(in.streams), "streams")
		for b.Loop() {
			if err := runStreams(context.Background(), streamsOptions{Store: in.store, Match: pattern, Format: formatTable}, nil, io.Discard, io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("replay", func(b *testing.B) {
		in := inputs.get(b, true)
		re := regexp.MustCompile(pattern)
		ctx := context.Background()
		for b.Loop() {
			st, err := local.Open(in.store)
			if err != nil {
				b.Fatal(err)
			}
			var entries []*local.Entry
			st.List(ctx, func(e *local.Entry) error { entries = append(entries, e); return nil })
			var out bytes.Buffer
			for _, e := range entries {
				var key string
				var events int
				err := st.Events(ctx, e, func(s *bepfile.Stream, ev *bepfile.Event) error {
					key = s.Key
					events++
					if ev.IsBazel() {
						return proto.Unmarshal(ev.Payload, &bes.BuildEvent{})
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if re.MatchString(key) {
					fmt.Fprintln(&out, key, events)
				}
			}
		}
	})
}
