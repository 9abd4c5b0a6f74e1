package commands

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportOutputErrors: bes report -o into a directory that does not
// exist, or onto a directory, exits 1 with one line naming the -o path
// (not the hidden temporary file the page is written through) and what is
// wrong with it, and leaves no temporary file behind.
func TestReportOutputErrors(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join("..", "testdata", "build_ok.bep")
	missing := filepath.Join(dir, "no", "report.html")
	onDir := filepath.Join(dir, "out")
	if err := os.Mkdir(onDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ out, want string }{
		{missing, "bes: report: -o " + missing + ": no such directory " + filepath.Dir(missing)},
		{onDir, "bes: report: -o " + onDir + ": is a directory, not a file"},
	} {
		stdout, stderr, code := runCLI(t, "report", in, "-o", c.out)
		if code != ExitError || stdout != "" {
			t.Errorf("-o %s: exit %d, %d bytes out; want exit 1, nothing written", c.out, code, len(stdout))
		}
		if !strings.HasPrefix(stderr, c.want) || strings.Contains(stderr, ".bes-report-") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("-o %s: stderr %q; want one line starting %q", c.out, stderr, c.want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d entries in the directory, want the directory out alone (no temporary file left)", len(entries))
	}
}
