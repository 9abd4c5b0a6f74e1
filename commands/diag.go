package commands

import rendering "github.com/bes-cli/bes/commands/render"

// Diagnostic returns err as bes prints it on standard error: "bes: ", the
// message on one line with control characters escaped (a message may quote
// stream ids or labels from other people's builds), and a newline. A
// message over maxDiagnostic bytes (one quoting a key of megabytes) is
// shortened to its start and end (render.ShortCell).
func Diagnostic(err error) string {
	return "bes: " + safeCell(rendering.ShortCell(err.Error(), maxDiagnostic)) + "\n"
}

// maxDiagnostic is the most bytes of a message Diagnostic prints whole.
const maxDiagnostic = 4096
