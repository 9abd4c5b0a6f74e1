package bepfile

import (
	"bytes"
	"fmt"
)

// notBEPError is the cause of the error for an input whose start p is no
// BEP in any form bes reads: ErrNotBEP, with a hint when p starts as a form
// of build events that bes knows but does not read, so that the one line
// says what to give instead:
//
//   - Bazel's --build_event_text_file (protobuf text format, "event {" or
//     "id {" first): use --build_event_binary_file or --build_event_json_file;
//   - the JSON of bes dump or bes query (--format json or ndjson,
//     OrderedBuildEvents: "{"streamId"" first, or "[" and then it): bes dump
//     --format obe writes what bes reads back.
//
// errors.Is(err, ErrNotBEP) holds for every error it returns.
func notBEPError(p []byte) error {
	s := bytes.TrimLeft(p, " \t\r\n")
	word := func(w string) bool {
		rest, ok := bytes.CutPrefix(s, []byte(w))
		return ok && bytes.HasPrefix(bytes.TrimLeft(rest, " \t"), []byte("{"))
	}
	if word("event") || word("id") {
		return fmt.Errorf("%w; it looks like Bazel's --build_event_text_file, which bes does not read: give Bazel's --build_event_binary_file or --build_event_json_file", ErrNotBEP)
	}
	j := bytes.TrimLeft(bytes.TrimPrefix(s, []byte("[")), " \t\r\n")
	if rest, ok := bytes.CutPrefix(j, []byte("{")); ok && bytes.HasPrefix(bytes.TrimLeft(rest, " \t\r\n"), []byte(`"streamId"`)) {
		return fmt.Errorf("%w; it looks like the JSON of bes dump or bes query (OrderedBuildEvents), which bes does not read back: bes dump --format obe writes what bes reads", ErrNotBEP)
	}
	return ErrNotBEP
}
