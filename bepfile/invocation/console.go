package invocation

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile/wire"
)

// Bazel's console, as the BEP carries it: the stdout and stderr of Progress
// events (build_event_stream.Progress, fields 1 and 2). Bazel prints each
// error as a line "ERROR: <location>: <message>", followed, for a failed
// action, by the action's own output; its next message (INFO:, a progress
// line "[12 / 40] …", …) ends it. The Builder keeps those ERROR messages
// (Invocation.Errors) and gives each failure the ones that name it.

// errorMark is what a Progress event must contain to be worth reading.
var errorMark = []byte("ERROR")

// Limits on what the console costs: ERROR messages kept, lines per
// message, bytes per line.
const (
	maxErrors     = 1000
	maxErrorLines = 40
	maxLineBytes  = 4096
)

// ansiEscape matches the terminal control sequences Bazel's colour and
// curses output use.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]`)

// StripTerminal returns one line of console output as a terminal shows
// it: colour and cursor escape sequences removed, and only what follows
// the last carriage return. Other bytes are kept.
func StripTerminal(line string) string {
	if strings.IndexByte(line, 0x1b) >= 0 {
		line = ansiEscape.ReplaceAllString(line, "")
	}
	if i := strings.LastIndexByte(line, '\r'); i >= 0 {
		line = line[i+1:]
	}
	return line
}

// timestampPrefix is what --show_timestamps puts before Bazel's messages.
var timestampPrefix = regexp.MustCompile(`^\(\d\d:\d\d:\d\d(?:\.\d+)?\) `)

// bazelLine reports whether a console line is a message of Bazel's own (so
// that it ends the action output that follows an ERROR line).
func bazelLine(line string) bool {
	for _, p := range []string{"INFO:", "WARNING:", "ERROR:", "DEBUG:", "FAILED:", "FAIL:", "PASSED:", "Loading:", "Analyzing:", "Target ", "Executed ", "Elapsed time", "Starting local Bazel", "Extracting Bazel", "Computing main repo mapping", "Build completed", "Build did NOT", "There were tests whose", "["} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	// The test summary: "//pkg:t    FAILED in 0.3s".
	return strings.HasPrefix(line, "//") || strings.HasPrefix(line, "@")
}

// progress reads the stderr of a Progress event (the payload) and gathers
// its ERROR messages. The bytes are read off the wire, never validated as
// UTF-8 (bazelbuild/bazel#11125): invalid sequences become U+FFFD.
func (b *Builder) progress(payload []byte) (invalidUTF8 bool) {
	for p := payload; len(p) > 0; {
		f, rest, ok := nextField(p)
		if !ok {
			return
		}
		p = rest
		if f.num != wire.ProgressStderr || f.typ != protowire.BytesType {
			continue
		}
		data := f.v
		if !utf8.Valid(data) {
			invalidUTF8 = true
		}
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				if len(b.console) < maxLineBytes {
					b.console = append(b.console, data[:min(len(data), maxLineBytes-len(b.console))]...)
				}
				break
			}
			line := data[:i]
			if len(b.console) > 0 {
				b.console = append(b.console, line[:min(len(line), max(0, maxLineBytes-len(b.console)))]...)
				line = b.console
			}
			b.consoleLine(line)
			b.console = b.console[:0]
			data = data[i+1:]
		}
	}
	return invalidUTF8
}

// consoleLine folds one line of Bazel's stderr.
func (b *Builder) consoleLine(raw []byte) {
	if len(raw) > maxLineBytes {
		raw = raw[:maxLineBytes]
	}
	line := StripTerminal(string(raw))
	line = strings.ToValidUTF8(strings.TrimRight(line, " \t"), "\uFFFD")
	if m := timestampPrefix.FindString(line); m != "" {
		line = line[len(m):] // --show_timestamps
	}
	switch {
	case strings.HasPrefix(line, "ERROR:"):
		b.endError()
		if len(b.inv.Errors) < maxErrors {
			b.errBlock = []string{line}
		}
	case b.errBlock == nil:
	case bazelLine(line):
		b.endError()
	case strings.TrimSpace(line) == "", strings.HasPrefix(line, "Use --sandbox_debug"), strings.HasPrefix(line, "Use --verbose_failures"):
		// Bazel's hints and blank lines: not the action's output.
	case len(b.errBlock) < maxErrorLines:
		b.errBlock = append(b.errBlock, line)
	}
}

// endError keeps the ERROR message being gathered.
func (b *Builder) endError() {
	if b.errBlock != nil {
		b.inv.Errors = append(b.inv.Errors, strings.Join(b.errBlock, "\n"))
		b.errBlock = nil
	}
}

// endConsole ends the console at the end of the stream.
func (b *Builder) endConsole() {
	if len(b.console) > 0 {
		b.consoleLine(b.console)
		b.console = b.console[:0]
	}
	b.endError()
}

// consoleLabel matches a Bazel label in a console message: //pkg:name,
// @repo//pkg:name, @@repo//pkg, //pkg.
var consoleLabel = regexp.MustCompile(`@{0,2}[A-Za-z0-9_.~+-]*//[A-Za-z0-9_./+~@-]*(?::[^\s'"` + "`" + `,;()\[\]]+)?`)

// normLabel drops the main repository's "@" or "@@" prefix, which some
// Bazels write in the BEP and not on the console, or the other way round.
func normLabel(l string) string {
	if strings.HasPrefix(l, "@@//") {
		return l[2:]
	}
	if strings.HasPrefix(l, "@//") {
		return l[1:]
	}
	return strings.TrimSuffix(l, ":")
}

// attachConsole gives each failure the ERROR messages that name its label
// or repeat its message. The messages no failure
// claims go to the failure of the build as a whole, if there is one.
func (b *Builder) attachConsole() {
	inv := &b.inv
	if len(inv.Errors) == 0 {
		return
	}
	claimed := make([]bool, len(inv.Errors))
	labels := make([][]string, len(inv.Errors))
	for i, e := range inv.Errors {
		for _, l := range consoleLabel.FindAllString(e, -1) {
			labels[i] = append(labels[i], normLabel(l))
		}
	}
	for _, f := range inv.Failures {
		if f.Kind == KindBuild || f.Kind == KindDidNotFinish {
			continue
		}
		label := normLabel(strings.TrimSuffix(f.Label, ")"))
		if i := strings.Index(label, " (aspect "); i >= 0 {
			label = label[:i]
		}
		msg := firstLine(f.Message)
		for i, e := range inv.Errors {
			if (label != "" && slices.Contains(labels[i], label)) || (len(msg) > 20 && strings.Contains(firstLine(e), msg)) {
				f.Console = append(f.Console, e)
				claimed[i] = true
			}
		}
	}
	for _, f := range inv.Failures {
		if f.Kind != KindBuild && f.Kind != KindDidNotFinish {
			continue
		}
		for i, e := range inv.Errors {
			if !claimed[i] {
				f.Console = append(f.Console, e)
			}
		}
		break
	}
}

// firstLine is s up to its first line break.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
