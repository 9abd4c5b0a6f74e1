// Command bepgen writes large, realistic Bazel build event files for
// benchmarks (see package bepgen):
//
//	go run ./bepfile/bepgen/cmd/bepgen -size 200MB -seed 1 -json -out DIR
//
// writes DIR/gen.bep (Bazel's binary file of one `bazel test //...` of
// about 200 MB) and, with -json, DIR/gen.json (its JSON twin); with
// -streams N it also writes DIR/capture.obe, a BES capture of N
// invocations.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bes-cli/bes/bepfile/bepgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bepgen: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bepgen", flag.ContinueOnError)
	size := fs.String("size", "200MB", "approximate `SIZE` of the binary file (B, KB, MB, GB)")
	targets := fs.Int("targets", 0, "number of targets (overrides -size)")
	seed := fs.Uint64("seed", 1, "random seed")
	out := fs.String("out", ".", "output `DIR`")
	json := fs.Bool("json", false, "also write the JSON twin, gen.json")
	streams := fs.Int("streams", 0, "also write capture.obe, a capture of `N` invocations")
	minTargets := fs.Int("min-targets", 4, "-streams: fewest targets of an invocation")
	maxTargets := fs.Int("max-targets", 60, "-streams: most targets of an invocation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	n, err := parseSize(*size)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	cfg := bepgen.Config{Seed: *seed, Size: n, Targets: *targets}
	write := func(name string, fn func(w io.Writer) (bepgen.Stats, error)) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		path := filepath.Join(*out, name)
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		st, err := fn(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d bytes, %d events, %d streams, %d targets, %d tests (%d failed, %d flaky, %d timed out), %d failed genrules\n",
			path, st.Bytes, st.Events, max(st.Streams, 1), st.Targets, st.Tests, st.Failed, st.Flaky, st.TimedOut, st.FailedBuilds)
		return nil
	}
	if *streams == 0 || *targets > 0 || n > 0 && *size != "0" {
		if err := write("gen.bep", func(w io.Writer) (bepgen.Stats, error) { return bepgen.WriteBEP(w, cfg) }); err != nil {
			return err
		}
		if *json {
			if err := write("gen.json", func(w io.Writer) (bepgen.Stats, error) { return bepgen.WriteNDJSON(w, cfg) }); err != nil {
				return err
			}
		}
	}
	if *streams > 0 {
		return write("capture.obe", func(w io.Writer) (bepgen.Stats, error) {
			return bepgen.WriteOBE(w, bepgen.CaptureConfig{Seed: *seed, Streams: *streams, MinTargets: *minTargets, MaxTargets: *maxTargets})
		})
	}
	return nil
}

// parseSize parses "200MB", "1.5GB", "4096".
func parseSize(s string) (int64, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	mult := 1.0
	for _, x := range []struct {
		suffix string
		m      float64
	}{{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"G", 1e9}, {"M", 1e6}, {"K", 1e3}, {"B", 1}} {
		if strings.HasSuffix(u, x.suffix) {
			u, mult = strings.TrimSuffix(u, x.suffix), x.m
			break
		}
	}
	f, err := strconv.ParseFloat(u, 64)
	if err != nil || f < 0 {
		return 0, errors.New("bad -size " + strconv.Quote(s))
	}
	return int64(f * mult), nil
}
