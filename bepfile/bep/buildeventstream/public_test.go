package buildeventstream_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// The public BEP files of ../shared/public-bep (Bazel 3.4 to 9.1, see its
// SOURCES.md) must decode with the schema: no unknown field, no enum value
// without a name. JSON files are parsed with protojson without
// DiscardUnknown, so an unknown JSON field name or enum name fails too.
// The files are read where they are, never copied into the project.

const publicBEP = "../../../../shared/public-bep"

// publicBroken are the public files that are damaged on purpose; only the
// events before their first error are checked.
var publicBroken = map[string]bool{
	// 8.2.1's binary file passed through a lossy UTF-8 conversion.
	"trunk-io_analytics-cli_broken_bep_binary_file.bin": true,
	// A path-rewriting tool's output: frames out of sync from byte 45220.
	"dpoluyanov_bazel-wsl_bep.bin2": true,
}

// publicBadLines are the JSON files with lines that are no BuildEvent at
// all, and how many: the author of the qaisjp file replaced 3 values with
// the text "I have removed this line for privacy reasons.", and trunk-io's
// fixture ends in a line cut after `{"id":{"progress":`. Every other line of
// them is checked.
var publicBadLines = map[string]int{
	"qaisjp_bazel-targetConfigured-aborted-payload_bep.json": 3,
	"trunk-io_analytics-cli_bep_partially_valid":             1,
}

// publicUnknown are the fields of public files that no Bazel release
// declares, by file and event index: trunk-io hand-edited its fixture to
// add a field of a "future" Bazel. The test checks that the field is there
// and that without it the event decodes strictly.
var publicUnknown = map[string]map[int][]string{
	"trunk-io_analytics-cli_bep_with_unknown_fields.json": {
		0: {"started", "someOtherFutureField"},
	},
}

// publicCoverageFinished are the Bazel 7.1 files that hold the payload-less
// event {"id":{"coverageActionsFinished":{}}} (once each), which a schema
// without BuildEventId.coverage_actions_finished loses.
var publicCoverageFinished = []string{
	"buildbarn_bb-portal_cpp-tutorial_stage1_build.bep.ndjson",
	"buildbarn_bb-portal_cpp-tutorial_stage1_test.bep.ndjson",
	"buildbarn_bb-portal_nextjs_build.bep.ndjson",
	"buildbarn_bb-portal_nextjs_test.bep.ndjson",
	"buildbarn_bb-portal_nextjs_test_fail.bep.ndjson",
}

func TestPublicFilesDecodeWithoutUnknowns(t *testing.T) {
	ents, err := os.ReadDir(publicBEP)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("%s does not exist", publicBEP)
	}
	if err != nil {
		t.Fatal(err)
	}
	coverage := map[string]int{}
	files := 0
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || name == "SOURCES.md" {
			continue
		}
		files++
		path := filepath.Join(publicBEP, name)
		t.Run(name, func(t *testing.T) {
			var events []*buildeventstream.BuildEvent
			if isJSON(t, path) {
				events = publicJSON(t, name, path)
			} else {
				var err error
				events, err = readBazelEvents(t, path)
				if publicBroken[name] {
					if err == nil {
						t.Errorf("a damaged file read without error")
					}
				} else if err != nil {
					t.Errorf("read: %v", err)
				}
			}
			if !publicBroken[name] && len(events) == 0 {
				t.Errorf("no event")
			}
			for i, ev := range events {
				checkEvent(t, i, ev)
				if ev.GetId().GetCoverageActionsFinished() != nil {
					coverage[name]++
				}
			}
		})
	}
	if files < 30 {
		t.Errorf("%d public files, SOURCES.md lists 34", files)
	}
	for _, name := range publicCoverageFinished {
		if coverage[name] != 1 {
			t.Errorf("%s: %d coverageActionsFinished events, want 1", name, coverage[name])
		}
	}
	if len(coverage) != len(publicCoverageFinished) {
		t.Errorf("coverageActionsFinished in %d files, want %d: %v", len(coverage), len(publicCoverageFinished), coverage)
	}
}

// isJSON tells JSON files (Bazel's NDJSON, or JSON objects one after the
// other however laid out) from the binary forms.
func isJSON(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 64)
	n, _ := io.ReadFull(f, head)
	return bytes.HasPrefix(bytes.TrimSpace(head[:n]), []byte("{"))
}

// publicJSON decodes a public JSON file strictly. Bazel's NDJSON is read
// line by line; a file whose first line is not a whole JSON value
// (trunk-io's pretty-printed fixture) is read as a sequence of JSON values,
// and bes (bepfile) must read the same events from it.
// A value that is no BuildEvent for another reason than an unknown field
// or enum name counts as a bad line (see publicBadLines).
func publicJSON(t *testing.T, name, path string) []*buildeventstream.BuildEvent {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var values [][]byte
	var viaBes []*buildeventstream.BuildEvent
	if first, _, _ := bytes.Cut(bytes.TrimSpace(data), []byte("\n")); json.Valid(first) {
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 {
				values = append(values, line)
			}
		}
	} else {
		dec := json.NewDecoder(bytes.NewReader(data))
		for {
			var v json.RawMessage
			if err := dec.Decode(&v); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("JSON value %d: %v", len(values), err)
			}
			values = append(values, v)
		}
		if viaBes, err = readBazelEvents(t, path); err != nil || len(viaBes) != len(values) {
			t.Errorf("bes reads %d events (error %v), want the %d JSON values", len(viaBes), err, len(values))
		}
	}
	var events []*buildeventstream.BuildEvent
	bad := 0
	for i, v := range values {
		if path, ok := publicUnknown[name][i]; ok {
			v = withoutField(t, i, v, path)
		}
		ev := &buildeventstream.BuildEvent{}
		err := protojson.Unmarshal(v, ev)
		switch {
		case err == nil:
			events = append(events, ev)
		case strings.Contains(err.Error(), "unknown field") || strings.Contains(err.Error(), "invalid value for enum"):
			t.Errorf("event %d: %v", i, err)
		default:
			bad++
		}
	}
	if bad != publicBadLines[name] {
		t.Errorf("%d values that are no BuildEvent, want %d", bad, publicBadLines[name])
	}
	for i, ev := range viaBes {
		if i < len(events) && !proto.Equal(ev, events[i]) {
			t.Errorf("event %d: bes reads %v, want %v", i, ev, events[i])
		}
	}
	return events
}

// withoutField checks that the JSON object v fails to decode strictly
// because of the field at path (and only that field: without it, v must
// decode), and returns v without it.
func withoutField(t *testing.T, i int, v []byte, path []string) []byte {
	t.Helper()
	err := protojson.Unmarshal(v, &buildeventstream.BuildEvent{})
	field := path[len(path)-1]
	if err == nil || !strings.Contains(err.Error(), `unknown field "`+field+`"`) {
		t.Errorf("event %d: strict decoding gives %v, want the unknown field %q", i, err, field)
	}
	var obj map[string]any
	if err := json.Unmarshal(v, &obj); err != nil {
		t.Fatal(err)
	}
	m := obj
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			t.Fatalf("event %d: no object %q on the way to %s", i, k, strings.Join(path, "."))
		}
		m = next
	}
	if _, ok := m[field]; !ok {
		t.Fatalf("event %d: no field %s", i, strings.Join(path, "."))
	}
	delete(m, field)
	out, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
