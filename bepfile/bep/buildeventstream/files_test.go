package buildeventstream_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// This file checks the schema against every input of testdata/: each Bazel
// BuildEvent of every file, in every form bepfile reads (binary, NDJSON,
// BES captures, gzip and zstd), decodes with no unknown field and no enum
// value without a name. JSON files are also parsed line by line with
// protojson without DiscardUnknown, since the reader's own JSON decoding
// would drop an unknown field before it could be seen.

// testdataEvents is the number of Bazel BuildEvents each input holds (see
// testdata/README.md), so that a file silently read short fails too.
var testdataEvents = map[string]int{
	"build_ok.bep":                 81,
	"build_ok.json":                81,
	"build_keep_going_fail.bep":    99,
	"build_keep_going_fail.json":   99,
	"test_mixed.bep":               105,
	"test_mixed.json":              105,
	"test_mixed.json.zst":          105,
	"test_cached.bep":              104,
	"test_cached.json":             104,
	"query.bep":                    15,
	"query.json":                   15,
	"truncated-test_mixed.bep":     62,
	"bes_test_mixed.bep":           105,
	"bes_test_mixed.obe":           105,
	"bes_test_mixed.lifecycle.obe": 0,
	"large_test.bep.gz":            32030,
}

func TestEveryTestdataFileDecodesWithoutUnknowns(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "testdata")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	inputs := 0
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue // golden/ and bazel/ hold outputs and a workspace
		}
		name := e.Name()
		path := filepath.Join(dir, name)
		t.Run(name, func(t *testing.T) {
			events, err := readBazelEvents(t, path)
			if errors.Is(err, bepfile.ErrNotBEP) {
				// Documentation and scripts only; any other file must be BEP.
				if ext := filepath.Ext(name); ext != ".md" && ext != ".sh" {
					t.Fatalf("not BEP: %v", err)
				}
				return
			}
			inputs++
			if strings.HasPrefix(name, "truncated-") {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("a truncated file must end in a cut event, got %v", err)
				}
			} else if err != nil {
				t.Errorf("read: %v", err)
			}
			if want, ok := testdataEvents[name]; ok && len(events) != want {
				t.Errorf("%d Bazel events, want %d", len(events), want)
			}
			for i, ev := range events {
				checkEvent(t, i, ev)
			}
			if strings.Contains(name, ".json") {
				lines := strictJSONLines(t, path)
				if len(lines) != len(events) {
					t.Errorf("%d JSON lines, %d events read", len(lines), len(events))
				}
				for i, ev := range lines {
					checkEvent(t, i, ev)
				}
			}
		})
	}
	if inputs < len(testdataEvents) {
		t.Errorf("read %d BEP inputs in testdata, want at least %d", inputs, len(testdataEvents))
	}
}

// checkEvent reports unknown fields and unnamed enum values anywhere in ev.
func checkEvent(t *testing.T, i int, ev *buildeventstream.BuildEvent) {
	t.Helper()
	for _, p := range unknownFields(ev.ProtoReflect(), "BuildEvent") {
		t.Errorf("event %d: unknown field at %s", i, p)
	}
	for _, p := range unnamedEnums(ev.ProtoReflect(), "BuildEvent") {
		t.Errorf("event %d: enum value without a name at %s", i, p)
	}
}

// readBazelEvents reads a file with bepfile.Open and decodes the Bazel
// BuildEvent of every event (envelopes without one, such as lifecycle
// events, are skipped). It returns the events read before the first error
// (of the reader, or an envelope or payload that does not decode) and that
// error; nil at a clean end.
func readBazelEvents(t *testing.T, path string) ([]*buildeventstream.BuildEvent, error) {
	t.Helper()
	r, err := bepfile.Open(path, bepfile.Options{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var events []*buildeventstream.BuildEvent
	for {
		s, ev, err := r.Next()
		if err == io.EOF {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		payload := ev.Payload
		if !ev.IsBazel() {
			obe, err := ev.OrderedBuildEvent(s)
			if err != nil {
				return events, fmt.Errorf("event %d: envelope: %w", len(events), err)
			}
			a := obe.GetEvent().GetBazelEvent()
			if a == nil {
				continue
			}
			if want := "type.googleapis.com/build_event_stream.BuildEvent"; a.GetTypeUrl() != want {
				return events, fmt.Errorf("event %d: bazel_event of type %q, want %q", len(events), a.GetTypeUrl(), want)
			}
			payload = a.GetValue()
		}
		be := &buildeventstream.BuildEvent{}
		if err := proto.Unmarshal(payload, be); err != nil {
			return events, fmt.Errorf("event %d: %w", len(events), err)
		}
		events = append(events, be)
	}
}

// strictJSONLines decodes every non-blank line of a (possibly gzip or zstd
// compressed) NDJSON file with protojson, unknown fields being errors.
func strictJSONLines(t *testing.T, path string) []*buildeventstream.BuildEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = decompress(t, data)
	var events []*buildeventstream.BuildEvent
	for n, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		be := &buildeventstream.BuildEvent{}
		if err := protojson.Unmarshal(line, be); err != nil {
			t.Errorf("line %d: %v", n+1, err)
			continue
		}
		events = append(events, be)
	}
	return events
}

// decompress undoes gzip or zstd, told apart by their magic numbers.
func decompress(t *testing.T, data []byte) []byte {
	t.Helper()
	var r io.Reader
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case bytes.HasPrefix(data, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		return data
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
