package commands

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/wire"
)

// Values of `bes log --color` and `--only`.
const (
	colorAuto   = "auto"
	colorAlways = "always"
	colorNever  = "never"
	onlyStderr  = "stderr"
	onlyStdout  = "stdout"
)

type logOptions struct {
	Store string
	Match string
	// Color is auto (escape sequences kept when the output is a terminal
	// and NO_COLOR is unset), always or never.
	Color string
	// Only is "" (both), "stderr" or "stdout".
	Only string
	Read bepfile.Options
}

func newLogCommand() *cli.Command {
	return &cli.Command{
		Name:      "log",
		Usage:     "print the console output of invocations, as Bazel printed it",
		ArgsUsage: "[STREAM...] [FILE...]",
		Description: `Prints what Bazel wrote on its console during an invocation, from the
Progress events of its build event stream (build_event_stream.Progress:
"the next chunk of stdout/stderr that bazel produced since the last
progress event"): Bazel's messages (INFO, WARNING, ERROR lines, progress
lines, the output of failed actions and of streamed tests) on its stderr,
and the command's own output (bazel query results, bazel run's output...)
on its stdout. Both are printed to standard output, event by event in
stream order; within an event, stderr comes before stdout, as Bazel's
build_event_stream.proto says consumers may assume. --only stderr or
--only stdout prints one of them. A BES capture holds the same events.

The output is bytes, as Bazel wrote them: invalid UTF-8 (Bazel does write
it, bazelbuild/bazel#11125) is printed unchanged. ANSI escape sequences
(colours, and the cursor movements of Bazel's --curses output) are kept
when standard output is a terminal and NO_COLOR is not set, and removed
otherwise: --color always keeps them, --color never removes them. Nothing
else is changed.

` + viewSelectionHelp + `

With several streams that have output, each one's output follows a line
"==> KEY <==".

Only Progress events are decoded, and only their two strings: the other
events are skipped on the wire.

EXAMPLES:
   bes log build.bep
   bes log build.bep | grep -B2 -A20 '^ERROR:'
   bes log 5d2e1f --only stdout            # what bazel query printed
   bes log build.json --color always | less -R

EXIT STATUS:
   0  console output was printed
   1  error: unreadable or invalid input, I/O error, stream not found, no such file
   2  usage error: bad flags or arguments
   3  partial: an input was truncated; the output of the complete events before the cut was printed
   7  no data: the streams hold no console output (no Progress event with stdout or stderr; with
      --only, none of that part)
   9  damaged input: some events could not be decoded (one stderr line each); the others were printed`,
		Flags: append([]cli.Flag{
			storeFlag(),
			&cli.StringFlag{Name: "match", Aliases: []string{"m"}, Usage: "keep the streams whose key matches `REGEX` (unanchored); without STREAM or FILE, every stored stream that matches"},
			&cli.StringFlag{
				Name:  "color",
				Value: colorAuto,
				Usage: "ANSI escape sequences: auto (kept on a terminal, unless NO_COLOR is set), always, never",
				Action: func(_ *cli.Context, v string) error {
					if !slices.Contains([]string{colorAuto, colorAlways, colorNever}, v) {
						return &usageError{msg: fmt.Sprintf("--color must be one of auto, always, never, not %q", v)}
					}
					return nil
				},
			},
			&cli.StringFlag{
				Name:  "only",
				Usage: "print only Bazel's `stderr|stdout` (default: both, in event order)",
				Action: func(_ *cli.Context, v string) error {
					if v != onlyStderr && v != onlyStdout {
						return &usageError{msg: fmt.Sprintf("--only must be stderr or stdout, not %q", v)}
					}
					return nil
				},
			},
		}, inputFlags()...),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			opts := logOptions{
				Store: c.String("store"),
				Match: c.String("match"),
				Color: c.String("color"),
				Only:  c.String("only"),
				Read:  readOptions(c),
			}
			return runLog(c.Context, opts, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

// consoleLog is the console output of one stream.
type consoleLog struct {
	key      string
	out      []byte
	bazel    bool // the stream holds Bazel events (not only lifecycle ones)
	progress int  // Progress events seen
	// strip, when set, removes escape sequences from Bazel's stderr and
	// stdout, each a stream of its own.
	strip          bool
	stderr, stdout escapeStripper
}

// add appends the output of one event: stderr then stdout, as --only
// selects. Bazel's build_event_stream.proto (Progress) says consumers may
// assume stderr was emitted before stdout when an event has both.
func (l *consoleLog) add(stderr, stdout []byte, only string) {
	if only != onlyStdout {
		l.out = l.append(&l.stderr, stderr)
	}
	if only != onlyStderr {
		l.out = l.append(&l.stdout, stdout)
	}
}

func (l *consoleLog) append(e *escapeStripper, b []byte) []byte {
	if l.strip {
		return e.strip(l.out, b)
	}
	return append(l.out, b...)
}

func runLog(ctx context.Context, opts logOptions, args []string, w, errw io.Writer) error {
	re, err := regexp.Compile(opts.Match)
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--match: %v", err), cause: err}
	}
	files, refs := splitArgs(args)
	if len(files) == 0 && len(refs) == 0 && opts.Match == "" {
		return &usageError{msg: "log: name a STREAM (key, key prefix or invocation id), a FILE, or --match REGEX"}
	}
	strip := !(opts.Color == colorAlways || opts.Color == colorAuto && isTerminal(w) && os.Getenv("NO_COLOR") == "")
	newLog := func(key string) *consoleLog { return &consoleLog{key: key, strip: strip} }
	res := &outcome{}
	// event handles one event of a stream; lg is the stream's log.
	event := func(lg *consoleLog, s *bepfile.Stream, ev *bepfile.Event, known *bepfile.Peeked) {
		payload := ev.BazelPayload(s)
		if payload == nil {
			return
		}
		lg.bazel = true
		var p bepfile.Peeked
		if known != nil {
			p = *known
		} else {
			var err error
			if p, err = bepfile.Peek(payload); err != nil {
				fmt.Fprintf(errw, "bes: stream %s: event %d: %v; its console output, if any, is left out\n", safeCell(lg.key), ev.Seq, err)
				res.add(ExitDamaged)
				return
			}
		}
		if p.PayloadField != wire.BuildEventProgress {
			return
		}
		lg.progress++
		stderr, stdout := progressOutput(p.Payload)
		lg.add(stderr, stdout, opts.Only)
	}
	logs, r, err := readSelected(ctx, selection{Store: opts.Store, Match: re, Files: files, Refs: refs, Read: opts.Read}, errw,
		func(ev *bepfile.Event, known *bepfile.Peeked) (bool, bepfile.Peeked, bool) {
			// Keep the Progress events, and the events that must be
			// looked at again: those the reader did not peek at.
			if known != nil && ev.IsBazel() {
				return known.PayloadField == wire.BuildEventProgress, *known, true
			}
			return true, bepfile.Peeked{}, false
		},
		func(s *bepfile.Stream) *consoleLog { return newLog(s.Key) },
		event,
		func(lg *consoleLog, _ int) { lg.bazel = true })
	if err != nil {
		return err
	}
	res.add(r.code)

	var shown []*consoleLog
	for _, lg := range logs {
		if len(lg.out) > 0 {
			shown = append(shown, lg)
		}
	}
	if len(shown) == 0 {
		what := "console output"
		if opts.Only != "" {
			what = "output on Bazel's " + opts.Only
		}
		fmt.Fprintf(errw, "bes: log: no %s in %s\n", what, describeLogs(logs))
		res.add(ExitNoData)
		return res.err()
	}
	for i, lg := range shown {
		if len(shown) > 1 {
			sep := ""
			if i > 0 {
				sep = "\n"
			}
			if _, err := fmt.Fprintf(w, "%s==> %s <==\n", sep, safeCell(lg.key)); err != nil {
				return err
			}
		}
		out := lg.out
		if len(shown) > 1 && len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n') // the next header starts a line
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
	}
	return res.err()
}

// describeLogs names the streams looked at, for the "no console output"
// line.
func describeLogs(logs []*consoleLog) string {
	var keys []string
	progress := 0
	for _, lg := range logs {
		if lg.bazel {
			keys = append(keys, safeCell(lg.key))
			progress += lg.progress
		}
	}
	switch len(keys) {
	case 0:
		return "any stream (no stream with Bazel build events)"
	case 1:
		return fmt.Sprintf("stream %s (%d progress events)", keys[0], progress)
	}
	return fmt.Sprintf("%d streams (%d progress events): %s", len(keys), progress, strings.Join(keys, ", "))
}

// progressOutput returns Progress.stderr and Progress.stdout from an
// encoded Progress message, read off the wire as bytes, so that invalid
// UTF-8 stays as Bazel wrote it. The last occurrence of a field wins, as
// in protobuf. The slices alias progress.
func progressOutput(progress []byte) (stderr, stdout []byte) {
	bepfile.EachField(progress, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		if typ != protowire.BytesType {
			return
		}
		switch num {
		case wire.ProgressStdout:
			stdout = v
		case wire.ProgressStderr:
			stderr = v
		}
	})
	return stderr, stdout
}

// escState is where an escapeStripper is in an escape sequence.
type escState uint8

const (
	escGround    escState = iota // not in a sequence
	escStart                     // after ESC
	escInter                     // in the intermediates of a two-character escape
	escCSI                       // in a CSI sequence, after ESC [
	escString                    // in an OSC, DCS, SOS, PM or APC string
	escStringEsc                 // after an ESC in such a string
)

// escapeStripper removes ANSI (ECMA-48) escape sequences from a byte
// stream that comes in chunks, a sequence possibly split across two: CSI
// sequences (ESC [ parameters intermediates final: colours, cursor
// movement, erase line), OSC and other string sequences (ESC ] ... BEL or
// ESC \), and other escapes (ESC, intermediates, final). Every other byte
// is kept, invalid UTF-8 included. Bazel's stdout and stderr are two
// streams: each needs its own.
type escapeStripper struct{ state escState }

// strip appends to dst the bytes of b outside escape sequences.
func (e *escapeStripper) strip(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		switch e.state {
		case escGround:
			j := bytes.IndexByte(b[i:], 0x1b)
			if j < 0 {
				return append(dst, b[i:]...)
			}
			dst = append(dst, b[i:i+j]...)
			i += j + 1
			e.state = escStart
			continue
		case escStart:
			switch {
			case c == '[':
				e.state = escCSI
			case c == ']' || c == 'P' || c == 'X' || c == '^' || c == '_':
				e.state = escString
			case c >= 0x20 && c <= 0x2f:
				e.state = escInter
			case c < 0x20: // a control character ends it, and is kept
				e.state = escGround
				continue
			default: // the final byte, dropped
				e.state = escGround
			}
		case escInter:
			if c < 0x20 {
				e.state = escGround
				continue
			}
			if c > 0x2f {
				e.state = escGround // the final byte, dropped
			}
		case escCSI: // parameters and intermediates 0x20–0x3F, then a final byte
			if c < 0x20 || c > 0x3f {
				e.state = escGround
				if c < 0x40 || c > 0x7e { // no final byte: keep this one
					continue
				}
			}
		case escString: // up to BEL or ST (ESC \)
			switch c {
			case 0x07:
				e.state = escGround
			case 0x1b:
				e.state = escStringEsc
			}
		case escStringEsc:
			e.state = escString
			if c == '\\' {
				e.state = escGround
			}
		}
		i++
	}
	return dst
}

// stripEscapes returns b without its escape sequences (see
// escapeStripper), a sequence cut off at its end dropped.
func stripEscapes(b []byte) []byte {
	var e escapeStripper
	return e.strip(nil, b)
}
