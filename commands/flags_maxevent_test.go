package commands

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestMaxEventSizeMustBePositive: --max-event-size 0 or below is a usage
// error (exit 2, one line), as for bes serve, not silently the default.
func TestMaxEventSizeMustBePositive(t *testing.T) {
	in := filepath.Join("..", "testdata", "test_mixed.bep")
	for _, v := range []string{"-5", "0"} {
		for _, cmd := range []string{"dump", "summary"} {
			stdout, stderr, code := runCLI(t, cmd, "--max-event-size", v, in)
			if code != ExitUsage || stdout != "" || !strings.Contains(stderr, "--max-event-size must be positive") || strings.Count(stderr, "\n") != 1 {
				t.Errorf("%s --max-event-size %s: exit %d, %d bytes out, stderr %q; want exit 2 and one line", cmd, v, code, len(stdout), stderr)
			}
		}
	}
	if _, stderr, code := runCLI(t, "dump", "--max-event-size", "1000", in); code != ExitError || !strings.Contains(stderr, "exceeds the limit of 1000 bytes") {
		t.Errorf("--max-event-size 1000: exit %d, stderr %q; want exit 1, the frame over it named", code, stderr)
	}
}
