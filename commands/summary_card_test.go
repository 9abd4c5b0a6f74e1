package commands

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// Issue 11: the summary of one invocation is key: value lines that fit 80
// columns, with the build's own metrics.

func TestSummaryCardFits80Columns(t *testing.T) {
	files, err := filepath.Glob(tdPath("*.bep"))
	if err != nil || len(files) == 0 {
		t.Fatal(files, err)
	}
	json, _ := filepath.Glob(tdPath("*.json"))
	for _, f := range append(files, json...) {
		out, _, _ := runCLI(t, "summary", f)
		if out == "" || strings.Contains(f, "lifecycle") {
			continue
		}
		for i, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if n := utf8.RuneCountInString(line); n > 80 {
				t.Errorf("%s: line %d is %d columns: %q", filepath.Base(f), i+1, n, line)
			}
		}
	}
	out, _, _ := runCLI(t, "summary", tdPath("test_mixed.bep"))
	for _, want := range []string{
		"invocation:     657fb236-551f-4f88-ab84-e114caf29e48\n",
		"verdict:        tests failed (exit 6)\n",
		"configurations: k8-fastbuild\n",
		"actions:        12 executed, 108 created\n",
		"processes:      12 processes: 23 linux-sandbox, 4 local.\n",
		"critical path:  4.51s\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary of test_mixed lacks %q:\n%s", want, out)
		}
	}
}

func TestSummaryNoOpBuildDiffers(t *testing.T) {
	// The same build twice in one output base: 4 actions executed, then 1.
	metrics := func(f string) metricsRow {
		out, _, code := runCLI(t, "summary", tdPath(f), "--format", "json")
		if code != ExitOK {
			t.Fatalf("%s: exit %d", f, code)
		}
		var rows []summaryRow
		if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].Metrics == nil {
			t.Fatalf("%s: %v %s", f, err, out)
		}
		return *rows[0].Metrics
	}
	full, noop := metrics("build_genrules.bep"), metrics("build_genrules_noop.json")
	if full.ActionsExecuted != 4 || noop.ActionsExecuted != 1 || full.ActionsCreated != 4 || noop.ActionsCreated != 4 {
		t.Errorf("actions executed/created: full %d/%d, no-op %d/%d; want 4/4 and 1/4",
			full.ActionsExecuted, full.ActionsCreated, noop.ActionsExecuted, noop.ActionsCreated)
	}
	if full.ProcessStats != "4 processes: 1 internal, 3 linux-sandbox." || noop.ProcessStats != "1 process: 1 internal." {
		t.Errorf("process stats %q, %q", full.ProcessStats, noop.ProcessStats)
	}
	if full.ProfileURI == "" || !strings.HasSuffix(full.ProfileURI, "/command.profile.gz") {
		t.Errorf("profile %q", full.ProfileURI)
	}
}
