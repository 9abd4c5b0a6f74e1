package commands

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestAppendJSONString: the page's lean JSON writes strings exactly as
// encoding/json does with HTML escaping, hostile ones included.
func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `"quoted" \back\`, "</script><!--", "a&b<c>d", "\x00\x01\x1f\t\n\r", "bad \xff utf-8 \xc3", "sep\u2028\u2029", "ünïcode ✓ 𝄞", "\x7f"} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("%q: %s, encoding/json %s", s, got, want)
		}
	}
}

// TestReportLeanData: the page of test_mixed holds every test's runs and
// every output file, their URIs whole once uri_prefix is put back, as bes
// tests and bes artifacts give them.
func TestReportLeanData(t *testing.T) {
	in := filepath.Join("..", "testdata", "test_mixed.bep")
	page, _, _ := runCLI(t, "report", in)
	d := reportDataOf(t, page)
	if d.URIPrefix == "" {
		t.Fatal("no uri_prefix: the URIs share none?")
	}
	full := func(u string) string {
		if strings.HasPrefix(u, uriPrefixMark) {
			return d.URIPrefix + u[len(uriPrefixMark):]
		}
		return u
	}
	var tests []testRow
	out, _, _ := runCLI(t, "tests", in, "--format", "json")
	if err := json.Unmarshal([]byte(out), &tests); err != nil {
		t.Fatal(err)
	}
	short := 0
	for i, r := range d.Tests {
		for j, run := range r.Runs {
			want := tests[i].Runs[j]
			if full(run.Log) != want.Log || run.Status != want.Status || run.Duration != want.Duration || !run.Start.Equal(*want.Start) {
				t.Errorf("%s run %d: page %+v, bes tests %+v", r.Label, j, run, want)
			}
			if run.Log != want.Log {
				short++
			}
		}
	}
	var arts []artifactRow
	out, _, _ = runCLI(t, "artifacts", in, "--format", "json")
	if err := json.Unmarshal([]byte(out), &arts); err != nil {
		t.Fatal(err)
	}
	if len(arts) != len(d.Artifacts) {
		t.Fatalf("%d output files in the page, %d in bes artifacts", len(d.Artifacts), len(arts))
	}
	for i, a := range d.Artifacts {
		if full(a.URI) != arts[i].URI || a.Name != arts[i].Name || a.Group != arts[i].Group {
			t.Errorf("file %d: page %+v, bes artifacts %+v", i, a, arts[i])
		}
	}
	if short == 0 {
		t.Error("no test log written without the prefix")
	}
}
