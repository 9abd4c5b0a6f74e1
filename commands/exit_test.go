package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp/syntax"
	"strings"
	"testing"
)

// TestDamagedStoreFileExitsDamaged: a stream file of the store cut short
// is damaged stored data (exit 9, issue 13; it was exit 1, and nothing was
// printed), not partial input (exit 3), which a cut input file still is
// (issue 12): dump, summary, tests and query print what they read before
// the damage, and one line naming the file and the offset.
func TestDamagedStoreFileExitsDamaged(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, code := runCLI(t, "ingest", "--store", dir, td("test_mixed.bep")); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	var files []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".bess") {
			files = append(files, path)
		}
		return err
	})
	if len(files) != 1 {
		t.Fatalf("stream files %q, want one", files)
	}
	fi, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(files[0], fi.Size()-100); err != nil {
		t.Fatal(err)
	}
	const key = "657fb236-551f-4f88-ab84-e114caf29e48.3.657fb236-551f-4f88-ab84-e114caf29e48"
	for _, args := range [][]string{
		{"dump", "--store", dir, key},
		{"dump", "--store", dir, "--format", "ndjson", key},
		{"summary", "--store", dir, key},
		{"tests", "--store", dir, key},
		{"query", "--store", dir, `kind == "progress"`, key},
		{"query", "--store", dir, "--match", ".", `kind == "progress"`},
	} {
		stdout, stderr, code := runCLI(t, args...)
		if code != ExitDamaged || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, files[0]+": corrupt stream file at offset ") || !strings.Contains(stderr, "unexpected EOF") {
			t.Errorf("%s on a cut stream file: exit %d, want %d and one line naming the file and offset: %s", args, code, ExitDamaged, stderr)
		}
		if stdout == "" {
			t.Errorf("%s on a cut stream file printed nothing of the events before the cut", args)
		}
	}
	// What dump prints is the events before the cut.
	whole, _, _ := runCLI(t, "dump", "--format", "ndjson", td("test_mixed.bep"))
	cut, _, _ := runCLI(t, "dump", "--store", dir, "--format", "ndjson", key)
	if n := strings.Count(cut, "\n"); n == 0 || n >= strings.Count(whole, "\n") || !strings.HasPrefix(whole, cut) {
		t.Errorf("dump of the cut stream: %d of %d events, a prefix: %v", n, strings.Count(whole, "\n"), strings.HasPrefix(whole, cut))
	}

	// A cut input file is partial input.
	if _, stderr, code := runCLI(t, "dump", td("truncated-test_mixed.bep")); code != ExitPartial {
		t.Errorf("dump of a cut file: exit %d, want %d: %s", code, ExitPartial, stderr)
	}
}

// TestUsageErrorKeepsCause: a usage error made from an error (here a
// regular expression's) is exit 2 and still carries that error.
func TestUsageErrorKeepsCause(t *testing.T) {
	app := NewApp("test")
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	err := Run(context.Background(), app, []string{"bes", "streams", "--store", t.TempDir(), "--match", "("})
	var se *syntax.Error
	if code := ExitCode(err); code != ExitUsage || !errors.As(err, &se) || se.Code != syntax.ErrMissingParen {
		t.Errorf("streams --match '(': exit %d, error %v (%T), want exit %d and the regexp's *syntax.Error", code, err, err, ExitUsage)
	}
	if !strings.HasPrefix(err.Error(), "--match: ") {
		t.Errorf("message %q", err)
	}
	// ExitCode of an error that merely wraps io.ErrUnexpectedEOF, from
	// neither an input nor the store: an error.
	if code := ExitCode(fmt.Errorf("reading: %w", io.ErrUnexpectedEOF)); code != ExitError {
		t.Errorf("bare unexpected EOF: exit %d", code)
	}
}
