// Package bepgen generates large, realistic Bazel build event streams for
// benchmarks: a `bazel test //...` of a generated workspace, in the shapes
// and proportions of the real Bazel 4.2.3 files in testdata/ (see
// large_test.bep.gz and test_mixed.bep), at any size.
//
// One invocation is a sequence of build_event_stream.BuildEvents in Bazel's
// order: started, the command lines, the expanded patterns, a configured
// event per target, then, target by target, the actions, named sets of
// files, completed targets, test results (with attempts and shards; some
// tests fail, are flaky or time out, some are cached) and test summaries,
// interleaved with progress events that carry stdout and stderr chunks,
// and last finished, build metrics and build tool logs (last_message).
// A few genrules fail (a failed action and a failed target) and a few
// targets are aborted.
//
// Everything is deterministic: the same Config gives the same bytes.
package bepgen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// Config describes one generated invocation.
type Config struct {
	// Seed makes the invocation; the same seed gives the same events.
	Seed uint64
	// Targets is the number of targets (three genrules for every test);
	// 0 means: as many as make a binary file of about Size bytes.
	Targets int
	// Size is the approximate size in bytes of the binary file, used when
	// Targets is 0.
	Size int64

	// Start, if not zero, is the invocation's start time (to the
	// millisecond); else one drawn within a day of November 2026.
	Start time.Time
	// Commit, if not "", is the source revision the invocation says it
	// built: BuildMetadata COMMIT_SHA, as --build_metadata gives it.
	Commit string
	// Statuses, if not nil, gives the overall status of the tests it
	// names (by label: "//pkg00000:test002"), in place of the drawn one;
	// with Passing, every other test passes. A store of known flaky
	// tests is made of such invocations (issue 15).
	Statuses map[string]bes.TestStatus
	Passing  bool
	// InvocationID, if not "", is the invocation's id
	// (BuildStarted.uuid) in place of the one drawn from Seed: the same
	// tests and durations as another invocation of the seed, as a run of
	// its own (one run per invocation id in bes history, issue 15).
	InvocationID string
}

// Stats describes what a writer wrote.
type Stats struct {
	Events  int   // build events (for OBE: ordered build events)
	Bytes   int64 // bytes written
	Targets int
	Tests   int
	// Failing tests by overall status, and failed genrules.
	Failed, Flaky, TimedOut, FailedBuilds int
	Streams                               int // OBE: streams written
}

// bytesPerTarget is the calibrated size of one target's events in the
// binary form (about 2.1 kB, as in large_test.bep).
func bytesPerTarget(seed uint64) float64 {
	const n = 2000
	var cw countWriter
	st, err := WriteBEP(&cw, Config{Seed: seed, Targets: n})
	if err != nil {
		panic(err) // a countWriter does not fail
	}
	return float64(st.Bytes) / n
}

// targets returns the number of targets of cfg.
func (cfg Config) targets() int {
	if cfg.Targets > 0 {
		return cfg.Targets
	}
	return max(8, int(float64(cfg.Size)/bytesPerTarget(cfg.Seed)))
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// Events calls fn with every event of the invocation cfg describes, in
// order. The event may be changed by the generator after fn returns.
func Events(cfg Config, fn func(*bes.BuildEvent) error) (Stats, error) {
	g := newGen(cfg.Seed, cfg.targets())
	g.commit = cfg.Commit
	if cfg.InvocationID != "" {
		g.uuid = cfg.InvocationID
	}
	if !cfg.Start.IsZero() {
		g.now += cfg.Start.UnixMilli() - g.start
		g.start = cfg.Start.UnixMilli()
	}
	if cfg.Statuses != nil || cfg.Passing {
		g.setStatuses(cfg.Statuses, cfg.Passing)
	}
	err := g.run(fn, &g.stats)
	return g.stats, err
}

// WriteBEP writes the invocation as Bazel's --build_event_binary_file:
// varint-delimited BuildEvents.
func WriteBEP(w io.Writer, cfg Config) (Stats, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	var buf []byte
	var n int64
	st, err := Events(cfg, func(ev *bes.BuildEvent) error {
		var err error
		buf, err = proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf[:0], ev)
		if err != nil {
			return err
		}
		var pfx [10]byte
		p := protowire.AppendVarint(pfx[:0], uint64(len(buf)))
		bw.Write(p)
		_, err = bw.Write(buf)
		n += int64(len(p) + len(buf))
		return err
	})
	if err != nil {
		return st, err
	}
	st.Bytes = n
	return st, bw.Flush()
}

// WriteNDJSON writes the invocation as Bazel's --build_event_json_file:
// one BuildEvent per line in the proto3 JSON mapping (camelCase names,
// int64 as strings), the JSON twin of WriteBEP's file.
func WriteNDJSON(w io.Writer, cfg Config) (Stats, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	var buf []byte
	var n int64
	st, err := Events(cfg, func(ev *bes.BuildEvent) error {
		var err error
		buf, err = protojson.MarshalOptions{}.MarshalAppend(buf[:0], ev)
		if err != nil {
			return err
		}
		buf = append(buf, '\n')
		_, err = bw.Write(buf)
		n += int64(len(buf))
		return err
	})
	if err != nil {
		return st, err
	}
	st.Bytes = n
	return st, bw.Flush()
}

// gen generates one invocation.
type gen struct {
	r       *rand.Rand
	stats   Stats
	uuid    string
	config  string // configuration id
	outBase string // output base, as a file URI prefix
	start   int64  // start time, ms since the epoch
	now     int64  // the clock, ms
	opaque  int32  // next progress opaque count
	nset    int    // next named set id
	done    int    // actions done
	total   int    // actions planned
	pkgs    []pkg
	commit  string // BuildMetadata COMMIT_SHA, "" for none
}

type pkg struct {
	name    string
	targets []target
}

type target struct {
	label, name, pkg string
	test             bool
	status           bes.TestStatus // tests: overall status
	shards           int            // tests: shards (1 if not sharded)
	cached           bool           // tests: cached locally
	fails            bool           // genrules: the action fails
	aborted          bool           // the target is aborted (analysis failure)
	size             bes.TestSize
}

func newGen(seed uint64, targets int) *gen {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	g := &gen{r: r}
	g.uuid = g.hexUUID()
	g.config = g.hex(64)
	g.outBase = "file:///var/cache/bazel-out/" + g.hex(32) + "/execroot/bep_gen"
	g.start = 1795464926149 + int64(r.IntN(86400000))
	g.now = g.start
	// Packages of 40 targets, 30 genrules and 10 tests, as in ws_large;
	// the last package takes the rest.
	for i := 0; targets > 0; i++ {
		n := min(40, targets)
		targets -= n
		p := pkg{name: fmt.Sprintf("pkg%05d", i)}
		for j := range n {
			t := target{pkg: p.name}
			if j%4 == 3 {
				t.test = true
				t.name = fmt.Sprintf("test%03d", j/4)
			} else {
				t.name = fmt.Sprintf("gen%03d", j-j/4)
			}
			t.label = "//" + p.name + ":" + t.name
			g.plan(&t)
			p.targets = append(p.targets, t)
		}
		g.pkgs = append(g.pkgs, p)
	}
	return g
}

// plan draws a target's fate.
func (g *gen) plan(t *target) {
	g.stats.Targets++
	x := g.r.Float64()
	if x < 0.0005 {
		t.aborted = true
		return
	}
	if !t.test {
		t.fails = g.r.Float64() < 0.002
		if t.fails {
			g.stats.FailedBuilds++
		}
		g.total++
		return
	}
	g.stats.Tests++
	t.shards = 1
	if g.r.Float64() < 0.05 {
		t.shards = 2 + g.r.IntN(3)
	}
	t.size = bes.TestSize_SMALL
	if g.r.Float64() < 0.2 {
		t.size = bes.TestSize_MEDIUM
	}
	t.cached = g.r.Float64() < 0.08
	switch x := g.r.Float64(); {
	case x < 0.006:
		t.status = bes.TestStatus_FAILED
		g.stats.Failed++
	case x < 0.014:
		t.status = bes.TestStatus_FLAKY
		g.stats.Flaky++
	case x < 0.016:
		t.status = bes.TestStatus_TIMEOUT
		g.stats.TimedOut++
	default:
		t.status = bes.TestStatus_PASSED
	}
	if t.status != bes.TestStatus_PASSED {
		t.cached = false
	}
	g.total += 3
	if !t.cached {
		g.total += t.shards * t.attempts()
	}
}

// setStatuses gives the tests the statuses of statuses, and with passing
// PASSED to every other test, the counts of Stats following.
func (g *gen) setStatuses(statuses map[string]bes.TestStatus, passing bool) {
	for i := range g.pkgs {
		for j := range g.pkgs[i].targets {
			t := &g.pkgs[i].targets[j]
			if !t.test || t.aborted {
				continue
			}
			st, ok := statuses[t.label]
			if !ok && !passing {
				continue
			}
			if !ok {
				st = bes.TestStatus_PASSED
			}
			if !t.cached {
				g.total -= t.shards * t.attempts()
			}
			switch t.status {
			case bes.TestStatus_FAILED:
				g.stats.Failed--
			case bes.TestStatus_FLAKY:
				g.stats.Flaky--
			case bes.TestStatus_TIMEOUT:
				g.stats.TimedOut--
			}
			t.status = st
			switch st {
			case bes.TestStatus_FAILED:
				g.stats.Failed++
			case bes.TestStatus_FLAKY:
				g.stats.Flaky++
			case bes.TestStatus_TIMEOUT:
				g.stats.TimedOut++
			}
			if st != bes.TestStatus_PASSED {
				t.cached = false
			}
			if !t.cached {
				g.total += t.shards * t.attempts()
			}
		}
	}
}

// attempts is the number of attempts of each shard (--flaky_test_attempts=2).
func (t *target) attempts() int {
	if t.status == bes.TestStatus_PASSED {
		return 1
	}
	return 2
}

const hexDigits = "0123456789abcdef"

func (g *gen) hex(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = hexDigits[g.r.IntN(16)]
	}
	return string(b)
}

func (g *gen) hexUUID() string {
	h := g.hex(32)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
}

// tick advances the clock by up to ms milliseconds.
func (g *gen) tick(ms int) int64 {
	g.now += int64(1 + g.r.IntN(ms))
	return g.now
}

func (g *gen) run(fn func(*bes.BuildEvent) error, st *Stats) error {
	emit := func(ev *bes.BuildEvent) error {
		st.Events++
		return fn(ev)
	}
	for _, ev := range g.preamble() {
		if err := emit(ev); err != nil {
			return err
		}
	}
	for _, p := range g.pkgs {
		for i := range p.targets {
			if err := emit(g.configured(&p.targets[i])); err != nil {
				return err
			}
		}
	}
	if err := emit(g.workspaceStatus()); err != nil {
		return err
	}
	for _, p := range g.pkgs {
		for i := range p.targets {
			for _, ev := range g.execute(&p.targets[i]) {
				if err := emit(ev); err != nil {
					return err
				}
			}
		}
	}
	for _, ev := range g.epilogue() {
		if err := emit(ev); err != nil {
			return err
		}
	}
	return nil
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
