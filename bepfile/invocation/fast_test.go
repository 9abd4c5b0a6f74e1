package invocation

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepgen"
)

// readStreams reads every stream of a BEP input into memory.
func readStreams(t *testing.T, r *bepfile.Reader) []*memStream {
	t.Helper()
	mem := memStreams{}
	for {
		s, ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var be *bepfile.Error
			if errors.As(err, &be) && !be.Resumable() {
				break // a truncated file: keep what came before
			}
			t.Fatal(err)
		}
		mem.GetStreamFor(s).Append(*ev)
	}
	return mem.Streams()
}

// buildWith builds the model of st with a Builder set up by setup.
func buildWith(t *testing.T, st *memStream, setup func(*Builder)) *Invocation {
	t.Helper()
	b := NewBuilder(st.Info())
	setup(b)
	for ev, err := range st.Query(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Add(ev); err != nil {
			t.Fatal(err)
		}
	}
	return b.Invocation()
}

// checkFastPath checks that the fast path (with and without artifacts)
// builds exactly the model a full decode of every event builds.
func checkFastPath(t *testing.T, name string, streams []*memStream) {
	for _, st := range streams {
		full := buildWith(t, st, func(b *Builder) { b.full, b.targetsWanted = true, true })
		fast := buildWith(t, st, func(b *Builder) { b.targetsWanted = true })
		if !reflect.DeepEqual(full, fast) {
			t.Errorf("%s: stream %s: the fast path builds another model than a full decode", name, st.Key())
		}
		// Wants.MaxArtifacts: the first output files, the others counted.
		all := full.Artifacts
		for _, k := range []int{1, 2, 7, len(all) / 2, len(all) - 1, len(all), len(all) + 3} {
			if k <= 0 {
				continue
			}
			some := buildWith(t, st, func(b *Builder) { b.maxArtifacts = k })
			n := min(k, len(all))
			if !reflect.DeepEqual(some.Artifacts, all[:n]) || some.ArtifactsLeft != len(all)-n {
				t.Errorf("%s: stream %s: MaxArtifacts %d gives %d artifacts and %d left, want the first %d of %d and %d left",
					name, st.Key(), k, len(some.Artifacts), some.ArtifactsLeft, n, len(all), len(all)-n)
			}
		}
		lean := buildWith(t, st, func(b *Builder) { b.WithoutArtifacts().targetsWanted = true })
		full.Artifacts = []*Artifact{}
		if !reflect.DeepEqual(full, lean) {
			t.Errorf("%s: stream %s: WithoutArtifacts builds another model than a full decode", name, st.Key())
		}
	}
}

func TestFastPathMatchesFullDecode(t *testing.T) {
	for _, name := range []string{
		"build_ok.bep", "build_keep_going_fail.bep", "test_mixed.bep", "test_cached.bep",
		"query.bep", "truncated-test_mixed.bep", "bes_test_mixed.obe", "large_test.bep.gz",
	} {
		r, err := bepfile.Open(filepath.Join("..", "..", "testdata", name), bepfile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkFastPath(t, name, readStreams(t, r))
		r.Close()
	}
}

// TestFastPathGenerated compares the paths on generated builds, which have
// flaky, failed, timed out, sharded and cached tests, failed genrules and
// aborted targets.
func TestFastPathGenerated(t *testing.T) {
	var buf bytes.Buffer
	st, err := bepgen.WriteOBE(&buf, bepgen.CaptureConfig{Seed: 7, Streams: 8, MinTargets: 300, MaxTargets: 400})
	if err != nil {
		t.Fatal(err)
	}
	if st.Failed == 0 || st.Flaky == 0 || st.TimedOut == 0 || st.FailedBuilds == 0 {
		t.Fatalf("the capture lacks a kind of failure: %+v", st)
	}
	r, err := bepfile.NewReader(&buf, "capture.obe", bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkFastPath(t, "capture.obe", readStreams(t, r))
}

// TestRelevant checks that leaving out the events Relevant rejects, and
// counting them with Skip, builds the same model as adding every event.
func TestRelevant(t *testing.T) {
	for _, name := range []string{"test_mixed.bep", "build_keep_going_fail.bep", "bes_test_mixed.obe", "large_test.bep.gz"} {
		r, err := bepfile.Open(filepath.Join("..", "..", "testdata", name), bepfile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range readStreams(t, r) {
			for _, artifacts := range []bool{false, true} {
				all, some := NewBuilder(st.Info()), NewBuilder(st.Info())
				if !artifacts {
					all.WithoutArtifacts()
					some.WithoutArtifacts()
				}
				skipped := 0
				for ev := range st.Query(context.Background(), nil) {
					if err := all.Add(ev); err != nil {
						t.Fatal(err)
					}
					if Relevant(ev, artifacts) {
						if err := some.Add(ev); err != nil {
							t.Fatal(err)
						}
					} else {
						some.Skip(1)
						skipped++
					}
				}
				if skipped == 0 {
					t.Errorf("%s: Relevant kept every event", name)
				}
				if !reflect.DeepEqual(all.Invocation(), some.Invocation()) {
					t.Errorf("%s (artifacts %v): skipping irrelevant events changes the model", name, artifacts)
				}
			}
		}
		r.Close()
	}
}
