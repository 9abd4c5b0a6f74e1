package commands

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestLongKeyShortenedInTables: streams whose key is megabytes long (a
// build id of 1 MiB, as a broken or hostile client may send; issue 13) are
// listed with the key shortened to its start, its length and its end, each
// line of the table within a few KiB; JSON keeps the key whole. A
// diagnostic quoting such a key is shortened too.
func TestLongKeyShortenedInTables(t *testing.T) {
	id := strings.Repeat("B", 1<<20)
	key := id + ".3.657fb236-551f-4f88-ab84-e114caf29e48"
	stdout, stderr, code := runCLI(t, "streams", "--build-id", id, td("test_mixed.bep"), td("test_cached.bep"))
	if code != 0 {
		t.Fatalf("streams: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%.500s", len(lines), stdout)
	}
	want := "...(" + strconv.Itoa(len(key)) + " bytes)...BBBB"
	for i, line := range lines {
		if len(line) > 4<<10 {
			t.Errorf("line %d: %d bytes", i, len(line))
		}
		if i > 0 && !strings.HasPrefix(line, "BBBBBBBB") {
			t.Errorf("line %d: %.100q", i, line)
		}
	}
	if !strings.Contains(stdout, want) || !strings.Contains(stdout, "BBBB.3.657fb236-551f-4f88-ab84-e114caf29e48  ") {
		t.Errorf("no row shows %q:\n%.3000s", want, stdout)
	}
	// JSON is for programs: the key whole.
	js, _, code := runCLI(t, "streams", "-o", "json", "--build-id", id, td("test_mixed.bep"))
	if code != 0 || !strings.Contains(js, key) {
		t.Errorf("streams -o json: exit %d, key whole: %v", code, strings.Contains(js, key))
	}
	// A diagnostic.
	d := Diagnostic(errors.New("stream " + key + " is already stored"))
	if len(d) > 4200 || !strings.HasPrefix(d, "bes: stream BBBB") || !strings.HasSuffix(d, " is already stored\n") || strings.Count(d, "\n") != 1 {
		t.Errorf("diagnostic of %d bytes: %.100q...", len(d), d)
	}
}
