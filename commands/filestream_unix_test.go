//go:build unix

package commands

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/bes-cli/bes/bepfile/bepgen"
)

// TestFileCommandsReadPipeOnce: a named pipe (what bash's <(zcat f)
// gives) cannot be read twice, so the commands that read a regular file
// twice (dump's table and its ndjson in key order, query) read it once,
// into a temporary copy (issue 13; into memory before), and print what
// they print for the file. Before, dump -o ndjson drained the pipe on its
// first pass and printed nothing.
func TestFileCommandsReadPipeOnce(t *testing.T) {
	var data []byte
	{
		f := filepath.Join(t.TempDir(), "gen.bep")
		w, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bepgen.WriteBEP(w, bepgen.Config{Seed: 5, Targets: 30}); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if data, err = os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "in.bep")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, args := range [][]string{
		{"dump"},
		{"dump", "-o", "ndjson"},
		{"query", `kind == "testResult"`},
		{"query", "-o", "obe", "--kind", "completed"},
	} {
		want, _, wcode := runCLI(t, append(args, file)...)
		fifo := filepath.Join(dir, "pipe"+string(rune('a'+i)))
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		go func() {
			w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
			if err != nil {
				return
			}
			w.Write(data)
			w.Close()
		}()
		got, stderr, code := runCLI(t, append(args, fifo)...)
		if want == "" || got != want || code != wcode {
			t.Errorf("%v of a pipe: exit %d, %d bytes (stderr %q); of the file: exit %d, %d bytes", args, code, len(got), stderr, wcode, len(want))
		}
	}
}
