package commands

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bes-cli/bes/bepfile"
)

// FuzzViews runs every reading command on arbitrary input, as a file
// given on the command line: dump in every format, query, and the CI
// views. No input may crash bes or make it print a broken diagnostic: the
// exit status is one of bes's, and standard error is lines, each a
// message. `go test` runs the seed corpus; fuzz it with
//
//	go test -run='^$' -fuzz='^FuzzViews$' -fuzztime=5m ./commands
func FuzzViews(f *testing.F) {
	for _, s := range viewSeeds(f) {
		f.Add(s)
	}
	dir := f.TempDir()
	in := filepath.Join(dir, "in")
	runs := [][]string{
		{"dump", in},
		{"dump", in, "--format", "json"},
		{"dump", in, "--format", "ndjson"},
		{"dump", in, "--format", "obe"},
		{"streams", in, "--format", "json"},
		{"query", `kind == "testResult" || event.started.command == "test"`, in},
		{"summary", in},
		{"summary", in, "--format", "json"},
		{"tests", in, "--runs", "--format", "junit"},
		{"tests", in, "--format", "markdown"},
		{"failures", in, "--format", "json"},
		{"artifacts", in},
		{"log", in},
	}
	codes := []int{ExitOK, ExitError, ExitPartial, ExitBuildFail, ExitTestFail, ExitNoData, ExitIncomplete, ExitDamaged}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(in, data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range runs {
			_, stderr, code := runCLI(t, append(args, "--max-event-size", "65536")...)
			if !slices.Contains(codes, code) {
				t.Fatalf("%v: exit %d\n%s", args[:len(args)-1], code, stderr)
			}
			if stderr == "" {
				continue
			}
			if !strings.HasSuffix(stderr, "\n") {
				t.Fatalf("%v: stderr does not end in a newline: %q", args[0], stderr)
			}
			for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
				if !strings.HasPrefix(line, "bes: ") || len(line) <= len("bes: ") {
					t.Fatalf("%v: stderr line %q is no message", args[0], line)
				}
			}
		}
	})
}

// viewSeeds returns small inputs that hold one event of each kind the
// views decode: from Bazel's binary file, its JSON file and a BES capture.
func viewSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, name := range []string{"test_mixed.bep", "build_keep_going_fail.bep"} {
		data, err := os.ReadFile(td(name))
		if err != nil {
			f.Fatal(err)
		}
		seen := map[string]bool{}
		var seed []byte
		for b := data; len(b) > 0; {
			frame, n := protowire.ConsumeBytes(b)
			if n < 0 {
				f.Fatalf("%s: bad frame", name)
			}
			b = b[n:]
			kind := bepfile.PayloadKind(frame)
			switch kind {
			case "started", "testResult", "testSummary", "completed", "namedSetOfFiles", "action", "aborted", "finished", "configured", "expanded":
				if !seen[kind] && len(frame) < 4<<10 {
					seen[kind] = true
					seed = protowire.AppendBytes(seed, frame)
				}
			}
		}
		seeds = append(seeds, seed)
	}
	json, err := os.ReadFile(td("test_mixed.json"))
	if err != nil {
		f.Fatal(err)
	}
	lines := strings.SplitAfter(string(json), "\n")
	seeds = append(seeds, []byte(lines[0]+lines[len(lines)-3]+lines[len(lines)-2]))
	obe, err := os.ReadFile(td("bes_test_mixed.obe"))
	if err != nil {
		f.Fatal(err)
	}
	var head []byte
	for b, i := obe, 0; i < 3; i++ {
		frame, n := protowire.ConsumeBytes(b)
		head = protowire.AppendBytes(head, frame)
		b = b[n:]
	}
	seeds = append(seeds, head)
	// Captured events whose Bazel payload is no BuildEvent: the reader
	// keeps a capture's payloads as they are; the views must cope.
	for _, payload := range [][]byte{{0x00, 0x00}, {0x30, 0x01}, {0x2a, 0x05, 0x0a, 0x03, 0xff}} {
		frame, _ := protowire.ConsumeBytes(obe)
		ev := &buildpb.OrderedBuildEvent{}
		if err := proto.Unmarshal(frame, ev); err != nil {
			f.Fatal(err)
		}
		ev.SequenceNumber = 4
		ev.Event.Event = &buildpb.BuildEvent_BazelEvent{BazelEvent: &anypb.Any{TypeUrl: bepfile.BazelEventTypeURL, Value: payload}}
		b, err := proto.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, protowire.AppendBytes(slices.Clone(head), b))
	}
	return seeds
}
