package commands

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bes-cli/bes/store/local"
)

// factsCorpus are the files of testdata/ whose streams can share a store
// (truncated-test_mixed.bep is test_mixed.bep's stream cut short: a store
// of its own).
var factsCorpus = [][]string{
	{"test_mixed.bep", "test_cached.bep", "build_keep_going_fail.bep", "build_ok.bep", "build_genrules.bep",
		"build_genrules_noop.bep", "build_unknown_option.bep", "query.bep", "bes_test_mixed.obe",
		"bes_test_mixed.lifecycle.obe", "large_test.bep.gz"},
	{"truncated-test_mixed.bep"},
	{"build_unknown_option.bep", "query.bep", "bes_test_mixed.lifecycle.obe"}, // no test at all
	{"bes_test_mixed.lifecycle.obe"},                                          // no Bazel event
}

// viewRun is what one bes command printed and its exit status.
type viewRun struct {
	stdout, stderr string
	code           int
}

// The views that read the facts of stored invocations (bes tests' table)
// print byte for byte what they print from the streams' events, on every
// file of testdata/, for each stored stream, several, all (--match .) and
// with --status; and they read no stream file (bes failures: only those of
// the invocations with failures): the same output once the others' bytes
// are zeros.
func TestViewsFromFacts(t *testing.T) {
	for i, files := range factsCorpus {
		dir := filepath.Join(t.TempDir(), "store")
		args := []string{"ingest", "--store", dir}
		for _, f := range files {
			args = append(args, tdPath(f))
		}
		if _, stderr, code := runCLI(t, args...); code != 0 && code != ExitPartial {
			t.Fatalf("corpus %d: ingest: exit %d: %s", i, code, stderr)
		}
		out, _, _ := runCLI(t, "streams", "--store", dir, "--format", "json")
		var streams []struct{ Key, Component string }
		if err := json.Unmarshal([]byte(out), &streams); err != nil {
			t.Fatal(err)
		}
		var testCalls, failureCalls [][]string
		add := func(calls [][]string, view ...string) [][]string {
			calls = append(calls, append(append([]string{}, view...), "--match", "."))
			calls = append(calls, append(append([]string{}, view...), "--match", "test_|mixed"))
			for _, s := range streams {
				calls = append(calls, append(append([]string{}, view...), s.Key))
			}
			if len(streams) > 1 {
				calls = append(calls, append(append([]string{}, view...), streams[0].Key, streams[len(streams)-1].Key))
			}
			return calls
		}
		for _, view := range [][]string{{"tests"}, {"tests", "--status", "failed,timeout"}, {"tests", "--status", "passed", "--limit", "2"}} {
			testCalls = add(testCalls, view...)
		}
		for _, view := range [][]string{{"failures"}, {"failures", "--format", "json"}, {"failures", "--format", "ndjson", "--log-lines", "0"}} {
			failureCalls = add(failureCalls, view...)
		}
		run := func(calls [][]string, facts bool) []viewRun {
			viewsReadFacts = facts
			defer func() { viewsReadFacts = true }()
			var runs []viewRun
			for _, c := range calls {
				o, e, code := runCLI(t, append(c, "--store", dir)...)
				runs = append(runs, viewRun{o, e, code})
			}
			return runs
		}
		compare := func(calls [][]string, fromEvents, fromFacts []viewRun) (lines int) {
			for j, c := range calls {
				if fromFacts[j] != fromEvents[j] {
					t.Errorf("corpus %d: bes %s:\nfrom the facts (exit %d):\n%s%s\nfrom the events (exit %d):\n%s%s", i, strings.Join(c, " "),
						fromFacts[j].code, fromFacts[j].stdout, fromFacts[j].stderr, fromEvents[j].code, fromEvents[j].stdout, fromEvents[j].stderr)
				}
				lines += strings.Count(fromFacts[j].stdout, "\n")
			}
			return lines
		}
		// How many failures each stream has, as its facts say.
		st, err := local.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		failures := map[string]int{}
		for _, s := range streams {
			f, err := st.Facts(context.Background(), s.Key)
			if err != nil {
				t.Fatal(err)
			}
			if f != nil {
				failures[s.Key] = f.Failures
			}
		}
		st.Close()
		// spoil overwrites the stream files of the invocations that which
		// accepts with zeros, their sizes kept (the views check that a
		// stream file is there, whole, before they trust its facts; reading
		// it now fails), and returns how to put them back. (A BES lifecycle
		// stream has no facts: its few events say it has no Bazel event.)
		spoil := func(which func(key string) bool) (spoiled int, back func()) {
			saved := map[string][]byte{}
			for _, s := range streams {
				if s.Component == "CONTROLLER" || !which(s.Key) {
					continue
				}
				path := filepath.Join(dir, local.FileName(s.Key))
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, make([]byte, len(data)), 0o600); err != nil {
					t.Fatal(err)
				}
				saved[path] = data
			}
			return len(saved), func() {
				for path, data := range saved {
					if err := os.WriteFile(path, data, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
		}

		// bes tests: from the catalog alone.
		fromEvents := run(testCalls, false)
		_, back := spoil(func(string) bool { return true })
		fromFacts := run(testCalls, true)
		rows := compare(testCalls, fromEvents, fromFacts)
		// What the corpus says, lest both sides print nothing.
		if i == 0 && (rows < 100 || fromFacts[0].code != ExitIncomplete && fromFacts[0].code != ExitTestFail) {
			t.Errorf("corpus %d: %d lines in all; bes tests --match . exits %d", i, rows, fromFacts[0].code)
		}
		// The events are needed for the JSON (every run): it fails now.
		if _, _, code := runCLI(t, "tests", "--store", dir, "--match", ".", "--format", "json"); i != 3 && code == 0 {
			t.Errorf("corpus %d: tests --format json without the stream files: exit 0", i)
		}
		back()

		// bes failures: the streams of the invocations without failures
		// are not read.
		fromEvents = run(failureCalls, false)
		moved, back := spoil(func(key string) bool { return failures[key] == 0 })
		fromFacts = run(failureCalls, true)
		rows = compare(failureCalls, fromEvents, fromFacts)
		back()
		if i == 0 && (moved < 3 || moved == len(failures) || rows < 50) {
			t.Errorf("corpus %d: %d streams without failures of %d; %d lines of failures", i, moved, len(failures), rows)
		}
	}
}
