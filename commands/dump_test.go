package commands

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
)

// TestDumpNDJSONEqualsBazelJSON proves the schema, the decoder and the JSON
// rendering together: the Bazel payloads of `bes dump --format ndjson X.bep`
// are, as JSON values, exactly the events of Bazel's own X.json. Bazel
// writes its two files in slightly different orders, so they are compared
// as multisets.
func TestDumpNDJSONEqualsBazelJSON(t *testing.T) {
	for _, name := range []string{"build_ok", "build_keep_going_fail", "test_mixed", "test_cached", "query"} {
		t.Run(name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "dump", "--format", "ndjson", filepath.Join("..", "testdata", name+".bep"))
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var got []string
			var last map[string]any
			for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
				var obe map[string]any
				if err := json.Unmarshal([]byte(line), &obe); err != nil {
					t.Fatalf("bes printed invalid JSON: %v\n%s", err, line)
				}
				last = obe
				ev, _ := obe["event"].(map[string]any)
				be, ok := ev["bazelEvent"].(map[string]any)
				if !ok {
					continue
				}
				if be["@type"] != "type.googleapis.com/build_event_stream.BuildEvent" {
					t.Fatalf("bazelEvent @type = %v", be["@type"])
				}
				delete(be, "@type")
				got = append(got, canonicalJSON(t, be))
			}
			if ev, _ := last["event"].(map[string]any); ev["componentStreamFinished"] == nil {
				t.Errorf("last event is not componentStreamFinished: %v", last)
			}
			want := readJSONLines(t, filepath.Join("..", "testdata", name+".json"))
			if len(got) != len(want) {
				t.Fatalf("%d Bazel events dumped, Bazel's JSON has %d", len(got), len(want))
			}
			counts := map[string]int{}
			for _, w := range want {
				counts[w]++
			}
			for _, g := range got {
				if counts[g] == 0 {
					t.Fatalf("dumped event not in Bazel's JSON:\n%s", g)
				}
				counts[g]--
			}
		})
	}
}

func readJSONLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var v any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, canonicalJSON(t, v))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// canonicalJSON re-encodes a decoded JSON value with sorted keys, so that
// equal values have equal text.
func canonicalJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWrapMatchesBESCapture checks that a Bazel binary file wrapped with the
// captured build id is the stream Bazel itself sent to a BES in the same run:
// same stream id, N+1 events numbered 1..N+1, the same final event, and the
// same payloads byte for byte (as a multiset: the two transports may order a
// few neighbouring events differently).
func TestWrapMatchesBESCapture(t *testing.T) {
	capture := readOBEs(t, filepath.Join("..", "testdata", "bes_test_mixed.obe"))
	buildID := capture[0].GetStreamId().GetBuildId()
	stdout, stderr, code := runCLI(t, "dump", "--format", "obe", "--build-id", buildID, filepath.Join("..", "testdata", "bes_test_mixed.bep"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	wrapped := readOBEsFrom(t, bytes.NewReader([]byte(stdout)))
	if len(wrapped) != len(capture) {
		t.Fatalf("%d events, capture has %d", len(wrapped), len(capture))
	}
	payloads := map[string]int{}
	for _, c := range capture {
		if be := c.GetEvent().GetBazelEvent(); be != nil {
			payloads[string(be.GetValue())]++
		}
	}
	for i, w := range wrapped {
		if !proto.Equal(w.GetStreamId(), capture[0].GetStreamId()) {
			t.Fatalf("event %d: stream id %v, capture has %v", i, w.GetStreamId(), capture[0].GetStreamId())
		}
		if w.GetSequenceNumber() != int64(i+1) {
			t.Fatalf("event %d: sequence number %d", i, w.GetSequenceNumber())
		}
		be := w.GetEvent().GetBazelEvent()
		if be == nil {
			continue
		}
		if be.GetTypeUrl() != "type.googleapis.com/build_event_stream.BuildEvent" {
			t.Fatalf("event %d: type URL %q", i, be.GetTypeUrl())
		}
		if payloads[string(be.GetValue())] == 0 {
			t.Fatalf("event %d: payload not byte-identical to any in the capture", i)
		}
		payloads[string(be.GetValue())]--
	}
	lastW, lastC := wrapped[len(wrapped)-1], capture[len(capture)-1]
	if !proto.Equal(lastW.GetEvent().GetComponentStreamFinished(), lastC.GetEvent().GetComponentStreamFinished()) || lastW.GetEvent().GetComponentStreamFinished() == nil {
		t.Errorf("final event %v, capture ends with %v", lastW.GetEvent(), lastC.GetEvent())
	}
}

func readOBEs(t *testing.T, path string) []*buildpb.OrderedBuildEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readOBEsFrom(t, f)
}

func readOBEsFrom(t *testing.T, r io.Reader) []*buildpb.OrderedBuildEvent {
	t.Helper()
	br := bufio.NewReader(r)
	var out []*buildpb.OrderedBuildEvent
	for {
		obe := &buildpb.OrderedBuildEvent{}
		err := protodelim.UnmarshalFrom(br, obe)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatal(fmt.Errorf("message %d: %w", len(out), err))
		}
		out = append(out, obe)
	}
}

// TestDumpFilesStreamed checks the dump of files event by event, as they
// are read (taken when inKeyOrder holds), against the dump of the same
// streams held in memory: the same events, in the same order, the same
// notes and exit status. The in-memory dump is forced with a stream
// reference, which the streaming path does not take.
func TestDumpFilesStreamed(t *testing.T) {
	td := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, filepath.Join("..", "testdata", n))
		}
		return out
	}
	for _, tc := range []struct {
		files    []string
		streamed bool
	}{
		{td("test_mixed.bep"), true},
		{td("test_mixed.json.zst"), true},
		{td("test_mixed.bep", "build_ok.bep"), true},    // 657fb236… < 716bc5f2…
		{td("build_ok.bep", "test_mixed.bep"), false},   // printed in key order
		{td("test_mixed.bep", "test_mixed.json"), true}, // the twin is skipped
		{td("truncated-test_mixed.bep", "build_ok.bep"), true},
		{td("bes_test_mixed.lifecycle.obe"), false}, // a build's lifecycle streams interleave
		{append(td("test_mixed.bep"), "-"), false},  // standard input is read once
	} {
		name := strings.Join(tc.files, " ")
		t.Run(name, func(t *testing.T) {
			if got := inKeyOrder(context.Background(), tc.files, bepfile.Options{}); got != tc.streamed {
				t.Fatalf("inKeyOrder = %v, want %v", got, tc.streamed)
			}
			if !tc.streamed {
				return
			}
			// Every key of the files, to force the in-memory dump.
			var keys []string
			for _, f := range tc.files {
				r, err := bepfile.Open(f, bepfile.Options{Reuse: true})
				if err != nil {
					t.Fatal(err)
				}
				for {
					s, _, err := r.Next()
					if err != nil {
						break
					}
					if !slices.Contains(keys, s.Key) {
						keys = append(keys, s.Key)
					}
				}
				r.Close()
			}
			for _, format := range []string{"obe", "ndjson"} {
				args := append([]string{"dump", "--format", format}, tc.files...)
				streamed, serr, scode := runCLI(t, args...)
				held, herr, hcode := runCLI(t, append(args, keys...)...)
				if scode != hcode || serr != herr {
					t.Fatalf("%s: streamed: exit %d, %q; held: exit %d, %q", format, scode, serr, hcode, herr)
				}
				if streamed != held {
					t.Fatalf("%s: the streamed dump (%d bytes) differs from the held one (%d bytes)", format, len(streamed), len(held))
				}
				if len(streamed) == 0 {
					t.Fatalf("%s: nothing dumped", format)
				}
			}
		})
	}
}
