package bepfile

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// TestDescribe describes the events of a real Bazel 4.2.3 binary file and
// of a real BES capture's lifecycle streams.
func TestDescribe(t *testing.T) {
	_, items := mustRead(t, testdata(t, "build_ok.bep"), "build_ok.bep", Options{})
	byKind := map[string][]Description{}
	for _, it := range items {
		d := Describe(it.ev)
		if !it.ev.IsBazel() {
			// The reader's end of the stream, as Bazel's BES client sends it.
			if d.Kind != "componentStreamFinished" || d.ID != "type=FINISHED" || it != items[len(items)-1] {
				t.Errorf("event %d: %+v", it.ev.Seq, d)
			}
			continue
		}
		if d.Kind != PayloadKind(it.ev.Payload) || d.Seq != it.ev.Seq || d.HasTime {
			t.Fatalf("event %d: %+v (payload kind %q)", it.ev.Seq, d, PayloadKind(it.ev.Payload))
		}
		byKind[d.Kind] = append(byKind[d.Kind], d)
	}
	if got := byKind["expanded"]; len(got) != 1 || got[0].ID != "pattern=[//...,-//broken/...]" {
		t.Errorf("expanded: %+v", got)
	}
	if got := byKind["structuredCommandLine"]; len(got) != 3 || got[0].ID != "commandLineLabel=original" || got[2].ID != "commandLineLabel=tool" {
		t.Errorf("structuredCommandLine: %+v", got)
	}
	// A label first, then the configuration id cut to 12 hex digits.
	found := false
	for _, d := range byKind["completed"] {
		label, config, ok := strings.Cut(d.ID, " configuration=")
		if !ok || !strings.HasPrefix(label, "//") || len(config) != 12 {
			t.Errorf("completed: ID %q", d.ID)
		}
		found = found || d.ID == "//cc:greet configuration=b21a74dd4f40"
	}
	if !found {
		t.Errorf("no completed event of //cc:greet: %+v", byKind["completed"])
	}

	_, items = mustRead(t, testdata(t, "bes_test_mixed.lifecycle.obe"), "bes_test_mixed.lifecycle.obe", Options{})
	var got []string // in the file's order
	for _, it := range items {
		d := Describe(it.ev)
		if !d.HasTime || d.Time.Seconds < 1.7e9 {
			t.Errorf("event %d of %s: no time: %+v", it.ev.Seq, it.s.Key, d)
		}
		got = append(got, d.Kind+" "+d.ID)
	}
	want := []string{
		"buildEnqueued ",
		"invocationAttemptStarted attemptNumber=1",
		"invocationAttemptFinished invocationStatus={result=COMMAND_FAILED}",
		"buildFinished status={result=COMMAND_FAILED}",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lifecycle events:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDescribeUndecodable: an envelope that is not a well-formed
// OrderedBuildEvent is described as such, not dropped.
func TestDescribeUndecodable(t *testing.T) {
	ev := &Event{Seq: 4, Raw: []byte{0x0a, 0x05, 0x01}} // field 1, length 5, one byte
	d := Describe(ev)
	if d.Kind != "?" || !strings.HasPrefix(d.ID, "<undecodable event: ") || d.Seq != 4 {
		t.Errorf("Describe = %+v", d)
	}
}

// TestFirstAndLastBytesField: a field that occurs twice (proto merging
// keeps the last) gives its first content to FirstBytesField, its last to
// LastBytesField; a malformed field before it ends the walk.
func TestFirstAndLastBytesField(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("first"))
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("last"))
	if got := string(FirstBytesField(b, 1)); got != "first" {
		t.Errorf("FirstBytesField = %q", got)
	}
	if got := string(LastBytesField(b, 1)); got != "last" {
		t.Errorf("LastBytesField = %q", got)
	}
	if got := FirstBytesField(b, 3); got != nil {
		t.Errorf("FirstBytesField of an absent field = %q", got)
	}
	bad := protowire.AppendTag(nil, 2, protowire.VarintType)
	for range 11 {
		bad = append(bad, 0xff) // a varint longer than 10 bytes
	}
	if got := FirstBytesField(append(bad, b...), 1); got != nil {
		t.Errorf("FirstBytesField after a malformed field = %q", got)
	}
}
