package commands

// Diagnostic returns err as bes prints it on standard error: "bes: ", the
// message on one line with control characters escaped (a message may quote
// stream ids or labels from other people's builds), and a newline.
func Diagnostic(err error) string {
	return "bes: " + safeCell(err.Error()) + "\n"
}
