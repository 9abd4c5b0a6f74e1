package render

import (
	"bufio"
	"encoding/json"
	"io"
)

// JSON writes v as one JSON value (encoding/json), indented by two spaces,
// HTML characters (<, >, &) kept as they are, and a newline. It returns
// the error of encoding or writing.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// NDJSON writes each of rows as one line of compact JSON (encoding/json),
// HTML characters kept as they are. It returns the first error of
// encoding or writing.
func NDJSON[T any](w io.Writer, rows []T) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return bw.Flush()
}
