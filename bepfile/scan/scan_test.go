package scan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepgen"
)

// writeFile writes data to a new file of dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// genBEP returns a generated invocation in Bazel's binary form.
func genBEP(t *testing.T, seed uint64, targets int) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := bepgen.WriteBEP(&b, bepgen.Config{Seed: seed, Targets: targets}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// genNDJSON returns a generated invocation in Bazel's JSON form.
func genNDJSON(t *testing.T, seed uint64, targets int) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := bepgen.WriteNDJSON(&b, bepgen.Config{Seed: seed, Targets: targets}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rec is what a test keeps of an event: its stream, sequence number and
// bytes.
func rec(s *bepfile.Stream, ev *bepfile.Event) string {
	return fmt.Sprintf("%s #%d %x %x", s.Key, ev.Seq, ev.Payload, ev.Raw)
}

// TestStreamReadOnce: a stream that an earlier file held is left out of
// a later one, with one Duplicate note; the streams of other files are
// read.
func TestStreamReadOnce(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.bep", genBEP(t, 1, 5))
	b := writeFile(t, dir, "b.bep", genBEP(t, 1, 5))
	c := writeFile(t, dir, "c.bep", genBEP(t, 2, 5))
	var notes []Note
	sc := &Scanner{Note: func(n Note) { notes = append(notes, n) }}
	count := map[string]int{}
	err := sc.Files(context.Background(), []string{a, b, c}, func(s *bepfile.Stream, ev *bepfile.Event) error {
		count[s.Key]++
		return nil
	}, func(name string, err error) { t.Errorf("%s: %v", name, err) })
	if err != nil {
		t.Fatal(err)
	}
	if len(count) != 2 {
		t.Fatalf("streams: %v, want 2", count)
	}
	if len(notes) != 1 || notes[0].Kind != Duplicate || notes[0].File != b || notes[0].From != a {
		t.Fatalf("notes = %+v, want one Duplicate of %s from %s", notes, b, a)
	}
	src := sc.Sources()
	if src[notes[0].Key] != a || len(src) != 2 {
		t.Fatalf("Sources = %v", src)
	}
	// Reading the same file again is no copy.
	sc2 := &Scanner{Note: func(n Note) { t.Errorf("note %+v", n) }}
	for range 2 {
		if err := sc2.File(context.Background(), a, func(*bepfile.Stream, *bepfile.Event) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPipelineAsFile: Pipeline hands fn the events keep accepts, in the
// order File reads them, with skip counting the others, over several
// batches (buffers reused).
func TestPipelineAsFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"x.bep", genBEP(t, 3, 400)},
		{"x.json", genNDJSON(t, 3, 400)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, dir, tc.name, tc.data)
			keep := func(ev *bepfile.Event) bool { return ev.Seq%3 != 0 }
			var want []string
			sc := &Scanner{}
			if err := sc.File(context.Background(), p, func(s *bepfile.Stream, ev *bepfile.Event) error {
				if keep(ev) {
					want = append(want, rec(s, ev))
				} else if n := len(want); n > 0 && strings.HasPrefix(want[n-1], "skip ") {
					var k int
					fmt.Sscanf(want[n-1], "skip %d", &k)
					want[n-1] = fmt.Sprintf("skip %d", k+1)
				} else {
					want = append(want, "skip 1")
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(want) < 2*batchLen {
				t.Fatalf("only %d items: the test wants several batches", len(want))
			}
			var got []string
			sc = &Scanner{}
			err := sc.Pipeline(context.Background(), p,
				func(ev *bepfile.Event, _ *bepfile.Peeked) (bool, bepfile.Peeked, bool) {
					return keep(ev), bepfile.Peeked{}, false
				},
				func(s *bepfile.Stream, ev *bepfile.Event, pk *bepfile.Peeked) error {
					if pk != nil {
						t.Errorf("a peek that keep did not make")
					}
					got = append(got, rec(s, ev))
					return nil
				},
				func(s *bepfile.Stream, n int) { got = append(got, fmt.Sprintf("skip %d", n)) })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("Pipeline gave %d items, File %d, or others", len(got), len(want))
			}
		})
	}
}

// TestPipelineCallbackError: an error of fn ends the pipeline and comes
// back as a *CallbackError; Each returns it as it is.
func TestPipelineCallbackError(t *testing.T) {
	p := writeFile(t, t.TempDir(), "x.bep", genBEP(t, 4, 400))
	stop := errors.New("stop")
	sc := &Scanner{}
	n := 0
	read := func(name string) error {
		return sc.Pipeline(context.Background(), name,
			func(*bepfile.Event, *bepfile.Peeked) (bool, bepfile.Peeked, bool) {
				return true, bepfile.Peeked{}, false
			},
			func(*bepfile.Stream, *bepfile.Event, *bepfile.Peeked) error {
				if n++; n == 1500 {
					return stop
				}
				return nil
			},
			func(*bepfile.Stream, int) {})
	}
	err := read(p)
	var ce *CallbackError
	if !errors.As(err, &ce) || ce.Err != stop {
		t.Fatalf("Pipeline = %v, want a *CallbackError of stop", err)
	}
	n = 0
	if err := Each(context.Background(), []string{p, p}, read, func(string, error) { t.Error("fail called") }); err != stop {
		t.Fatalf("Each = %v, want stop", err)
	}
}

// TestSkippedFrameNoted: a frame the reader skips is noted in its place
// among the events, by File and Pipeline alike, and the file ends with
// ErrDamaged; Each hands that, and a file that is not there, to fail and
// goes on.
func TestSkippedFrameNoted(t *testing.T) {
	dir := t.TempDir()
	lines := strings.SplitAfter(string(genNDJSON(t, 5, 3)), "\n")
	const at = 4
	bad := slices.Concat(lines[:at], []string{"{not json}\n"}, lines[at:])
	p := writeFile(t, dir, "bad.json", []byte(strings.Join(bad, "")))
	missing := filepath.Join(dir, "missing.json")

	for _, pipelined := range []bool{false, true} {
		var got []string
		sc := &Scanner{Note: func(n Note) {
			if n.Kind == Skipped && n.Bad != nil && n.File == p {
				got = append(got, "skipped")
			} else {
				got = append(got, fmt.Sprintf("note %+v", n))
			}
		}}
		visit := func(*bepfile.Stream, *bepfile.Event) error {
			got = append(got, "event")
			return nil
		}
		read := func(name string) error { return sc.File(context.Background(), name, visit) }
		if pipelined {
			read = func(name string) error {
				return sc.Pipeline(context.Background(), name,
					func(*bepfile.Event, *bepfile.Peeked) (bool, bepfile.Peeked, bool) {
						return true, bepfile.Peeked{}, false
					},
					func(s *bepfile.Stream, ev *bepfile.Event, _ *bepfile.Peeked) error { return visit(s, ev) },
					func(*bepfile.Stream, int) {})
			}
		}
		var failed []string
		err := Each(context.Background(), []string{missing, p}, read, func(name string, err error) {
			switch {
			case name == missing && errors.Is(err, os.ErrNotExist):
				failed = append(failed, "missing")
			case name == p && errors.Is(err, ErrDamaged):
				failed = append(failed, "damaged")
			default:
				t.Errorf("fail(%s, %v)", name, err)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(failed, []string{"missing", "damaged"}) {
			t.Errorf("pipelined %v: failed %v", pipelined, failed)
		}
		if i := slices.Index(got, "skipped"); i != at || slices.Index(got[i+1:], "skipped") >= 0 || slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "note") }) {
			t.Errorf("pipelined %v: %d items, skipped at %d, want %d: %q", pipelined, len(got), i, at, got[:min(len(got), at+2)])
		}
	}
}

// TestBufReuse: a buf handed back keeps its chunks for reuse and drops
// its items.
func TestBufReuse(t *testing.T) {
	b := newBuf(nil)
	c := b.chunk(10)
	if cap(c) != chunkLen {
		t.Fatalf("chunk cap %d, want %d", cap(c), chunkLen)
	}
	big := b.chunk(chunkLen + 1)
	if cap(big) < chunkLen+1 {
		t.Fatalf("big chunk cap %d", cap(big))
	}
	b.items = append(b.items, item{skipped: 1})
	b = newBuf(b)
	if len(b.items) != 0 || len(b.chunks) != 0 || len(b.spare) != 2 {
		t.Fatalf("after reuse: %d items, %d chunks, %d spare", len(b.items), len(b.chunks), len(b.spare))
	}
	if c2 := b.chunk(chunkLen + 1); cap(c2) != cap(big) || len(b.spare) != 1 {
		t.Fatalf("the big spare chunk was not reused")
	}
}
