package bepfile

import (
	"errors"
	"strings"
	"testing"
)

// TestNotBEPHints: an input that is build events in a form bes does not
// read (Bazel's --build_event_text_file, the JSON bes dump and bes query
// write) is still not BEP (errors.Is ErrNotBEP, at byte 0), and its one
// line says what to give instead; other input that is no BEP gets no hint.
func TestNotBEPHints(t *testing.T) {
	for _, c := range []struct {
		name, input, hint string
	}{
		// the start of Bazel 4.2.3's --build_event_text_file (corpus test_mixed.txt)
		{"text file", "event {\n  id {\n    started {\n    }\n  }\n", "--build_event_text_file"},
		{"text file, id first", "id {\n  started {\n  }\n}\n", "--build_event_text_file"},
		// the first bytes of bes dump testdata/query.bep --format ndjson, json
		{"dump ndjson", `{"streamId":{"buildId":"b","invocationId":"i","component":"TOOL"},"sequenceNumber":"1","event":{}}` + "\n", "bes dump --format obe"},
		{"dump json", "[\n  {\n    \"streamId\": {\"buildId\":\"b\",\"invocationId\":\"i\",\"component\":\"TOOL\"},\n    \"events\": []\n  }\n]\n", "bes dump --format obe"},
		{"text", "hello, world\nthis is text\n", ""},
		{"identifier", "identity {\n", ""},
		{"json array", `[{"id":{}}]` + "\n", ""},
	} {
		_, err := NewReader(strings.NewReader(c.input), "in", Options{})
		var e *Error
		if !errors.Is(err, ErrNotBEP) || !errors.As(err, &e) || e.Offset != 0 {
			t.Errorf("%s: error %v; want a not-BEP error at byte 0", c.name, err)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "in: byte 0: "+ErrNotBEP.Error()) || strings.Contains(msg, "\n") {
			t.Errorf("%s: %q; want one line starting with the not-BEP message", c.name, msg)
		}
		if c.hint == "" && msg != "in: byte 0: "+ErrNotBEP.Error() {
			t.Errorf("%s: %q; want no hint", c.name, msg)
		}
		if c.hint != "" && !strings.Contains(msg, c.hint) {
			t.Errorf("%s: %q; want a hint naming %s", c.name, msg, c.hint)
		}
	}
}
