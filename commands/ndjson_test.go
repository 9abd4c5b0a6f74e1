package commands

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepgen"
	"github.com/bes-cli/bes/store"
)

// TestNDJSONFastPath checks that the ndjson encoder's fast path writes the
// same JSON values as protojson of the whole OrderedBuildEvent.
func TestNDJSONFastPath(t *testing.T) {
	var capture bytes.Buffer
	if _, err := bepgen.WriteOBE(&capture, bepgen.CaptureConfig{Seed: 1, Streams: 3, MinTargets: 20, MaxTargets: 40}); err != nil {
		t.Fatal(err)
	}
	inputs := map[string]func() (*store.Storage, error){
		"capture.obe": func() (*store.Storage, error) {
			r, err := bepfile.NewReader(bytes.NewReader(capture.Bytes()), "capture.obe", bepfile.Options{})
			if err != nil {
				return nil, err
			}
			mem := store.New()
			for {
				s, ev, err := r.Next()
				if err != nil {
					return mem, nil
				}
				mem.GetStreamFor(s).Append(*ev)
			}
		},
	}
	for _, name := range []string{"test_mixed.bep", "build_keep_going_fail.bep", "bes_test_mixed.obe", "bes_test_mixed.lifecycle.obe", "test_cached.json"} {
		inputs[name] = func() (*store.Storage, error) {
			mem, _, err := readFiles(context.Background(), []string{filepath.Join("..", "testdata", name)}, bepfile.Options{}, &bytes.Buffer{})
			return mem, err
		}
	}
	for name, load := range inputs {
		mem, err := load()
		if err != nil {
			t.Fatal(err)
		}
		enc := newNDJSONEncoder(nil)
		n, fast := 0, 0
		for _, s := range mem.Streams() {
			for ev := range s.Query(context.Background(), nil) {
				got, rep := enc.append(nil, s.Info(), ev)
				if rep.bad() {
					t.Fatalf("%s: event %d: %+v", name, ev.Seq, rep)
				}
				obe, err := ev.OrderedBuildEvent(s.Info())
				if err != nil {
					t.Fatal(err)
				}
				want, err := jsonOpts.Marshal(obe)
				if err != nil {
					t.Fatal(err)
				}
				var g, w buildpb.OrderedBuildEvent
				if err := protojson.Unmarshal(got, &g); err != nil {
					t.Fatalf("%s: event %d: invalid JSON %v:\n%s", name, ev.Seq, err, got)
				}
				if err := protojson.Unmarshal(want, &w); err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(&g, &w) {
					t.Fatalf("%s: event %d:\n got %s\nwant %s", name, ev.Seq, got, want)
				}
				n++
				if _, _, ok := enc.appendFast(nil, s.Info(), ev); ok && ev.IsBazel() {
					fast++
				}
			}
		}
		if n == 0 || fast == 0 && !strings.Contains(name, "lifecycle") {
			t.Errorf("%s: %d of %d events took the fast path", name, fast, n)
		}
	}
}
