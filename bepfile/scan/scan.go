// Package scan reads many BEP inputs as one sequence of (stream, event):
// each file in turn, a stream that an earlier file already held (a .bep
// and its .json twin) read once, and the reading pipeline that moves the
// I/O, framing and filtering of a file to a goroutine of its own.
//
// It prints nothing and knows no exit status: what the readers find (a
// skipped frame, a copy of a stream left out, a repaired event, fields
// bes does not know) is handed to Scanner.Note as a Note, in order with
// the events, and a file whose events were damaged ends with ErrDamaged.
package scan

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/bes-cli/bes/bepfile"
)

// NoteKind says what a Note is about.
type NoteKind int

const (
	// Skipped: the reader skipped a frame it could not read (Err, a
	// resumable *bepfile.Error, Bad) and went on with the next.
	Skipped NoteKind = iota
	// Duplicate: File holds stream Key, which an earlier file (From)
	// held: this copy is left out.
	Duplicate
	// Found: a line of what the reader found in an event of File and
	// could not take as it was (Found): a field bes does not know, or a
	// repair naming the event.
	Found
)

// A Note is something a scan found worth reporting, besides the events.
type Note struct {
	Kind NoteKind
	File string // the input's name (bepfile.Reader.Name)
	// Skipped: the reader's error, and the *bepfile.Error it is.
	Err error
	Bad *bepfile.Error
	// Duplicate: the stream's key and the file it was read from first.
	Key, From string
	// Found: the line, unescaped, without a prefix.
	Text string
}

// ErrDamaged is returned for a file whose every event could be read but
// some were damaged: each was reported with a Note (Skipped, or Found
// naming a repair) as the scan went on.
var ErrDamaged = errors.New("scan: damaged events (each was noted)")

// CallbackError carries the error of a scan's callback out of the reading
// of a file (File, Pipeline). Files and Each return Err itself.
type CallbackError struct{ Err error }

func (e *CallbackError) Error() string { return e.Err.Error() }

// Visit is called with each event of a stream not read before, and the
// stream.
type Visit func(*bepfile.Stream, *bepfile.Event) error

// A Scanner reads files one after the other, each stream once: the
// events of a stream that an earlier file of the same Scanner held are
// left out, with a Duplicate note. Its zero value reads with
// bepfile.Open, default options, and drops the notes.
type Scanner struct {
	// Options are the readers' options.
	Options bepfile.Options
	// Open opens a file; nil: bepfile.Open.
	Open func(name string, opts bepfile.Options) (*bepfile.Reader, error)
	// Note, if not nil, is called with each note, in order with the
	// events (on the caller's goroutine, Pipeline's included).
	Note func(Note)
	// Notices says once per file and field what the events hold that
	// bes does not know (bepfile.Reader.Found); nil: the Scanner makes
	// one.
	Notices *bepfile.Notices
	// Uses, if not nil, says whether the caller uses an event (a view's
	// Classify): the reader's repairs of an event it skips are not its
	// damage. Pipeline sets it from its keep.
	Uses func(*bepfile.Event, *bepfile.Peeked) bool

	from map[string]string // stream key → the file it was read from
	r    *bepfile.Reader
}

// Reader returns the reader of the file being read, for callbacks that
// ask it about the event at hand (bepfile.Reader.Peeked, Name); nil
// between files.
func (sc *Scanner) Reader() *bepfile.Reader { return sc.r }

// Sources maps the key of each stream read so far to the file it was read
// from. The map is the Scanner's: do not change it.
func (sc *Scanner) Sources() map[string]string {
	if sc.from == nil {
		sc.from = map[string]string{}
	}
	return sc.from
}

// Files reads every event of the files, in order, and calls visit with
// each and its stream, leaving out the streams read before (File). The
// error of a file is handed to fail and the next file is read; the end of
// ctx, or an error of visit, ends it and is returned. With
// Options.Reuse the event is valid only during the call.
func (sc *Scanner) Files(ctx context.Context, files []string, visit Visit, fail func(name string, err error)) error {
	return Each(ctx, files, func(name string) error { return sc.File(ctx, name, visit) }, fail)
}

// Each calls read with each file in turn: an error of read is handed to
// fail with the file's name, and the next file is read, unless ctx has
// ended (its error is returned) or the error is a *CallbackError (its Err
// is returned).
func Each(ctx context.Context, files []string, read func(name string) error, fail func(name string, err error)) error {
	for _, name := range files {
		err := read(name)
		if err == nil {
			continue
		}
		var ce *CallbackError
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &ce):
			return ce.Err
		}
		fail(name, err)
	}
	return nil
}

// File reads one file and calls visit with the events of the streams not
// read before. An error of visit is returned as a *CallbackError; a file
// read to its end with damaged events gives ErrDamaged.
func (sc *Scanner) File(ctx context.Context, name string, visit Visit) error {
	return sc.each(ctx, name, sc.Options, visit, sc.note)
}

func (sc *Scanner) note(n Note) {
	if sc.Note != nil {
		sc.Note(n)
	}
}

func (sc *Scanner) each(ctx context.Context, name string, opts bepfile.Options, visit Visit, note func(Note)) error {
	open := sc.Open
	if open == nil {
		open = bepfile.Open
	}
	r, err := open(name, opts)
	if err != nil {
		return err
	}
	defer r.Close()
	sc.r = r
	defer func() { sc.r = nil }()
	from := sc.Sources()
	var (
		cur  *bepfile.Stream
		keep bool
		errs error
	)
	for n := 0; ; n++ {
		if n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		s, ev, err := r.Next()
		if err == io.EOF {
			return errs
		}
		if err != nil {
			var be *bepfile.Error
			if errors.As(err, &be) && be.Resumable() {
				// A bad event that can be skipped: report it and go on.
				note(Note{Kind: Skipped, File: r.Name(), Err: err, Bad: be})
				errs = ErrDamaged
				continue
			}
			return err
		}
		if s != cur {
			cur, keep = s, true
			if src, ok := from[s.Key]; ok && src != r.Name() {
				note(Note{Kind: Duplicate, File: r.Name(), Key: s.Key, From: src})
				keep = false
			} else {
				from[s.Key] = r.Name()
			}
		}
		if keep {
			if f := r.Found(); len(f.Unknown) > 0 || f.Damaged() {
				if f.Damaged() && sc.Uses != nil && !sc.Uses(ev, r.Peeked()) {
					f.Repaired, f.Corrupt = nil, nil
				}
				if sc.Notices == nil {
					sc.Notices = &bepfile.Notices{}
				}
				lines, damaged := FoundLines(sc.Notices, r.Name(), ev, f)
				for _, line := range lines {
					note(Note{Kind: Found, File: r.Name(), Text: line})
				}
				if damaged {
					errs = ErrDamaged
				}
			}
			if err := visit(s, ev); err != nil {
				return &CallbackError{err}
			}
		}
	}
}

// FoundLines returns the lines to report for what a reader found in an
// event of file name and could not take as it was (bepfile.Reader.Found:
// Bazel's JSON file): what bes does not know, once per field (notices),
// and a repair, one line naming the event. It reports whether the event
// was damaged.
func FoundLines(notices *bepfile.Notices, name string, ev *bepfile.Event, f bepfile.Damage) (lines []string, damaged bool) {
	lines = notices.New(name, f.Unknown)
	if !f.Damaged() {
		return lines, false
	}
	where := name
	if off, idx, ok := ev.Position(); ok {
		where = fmt.Sprintf("%s: byte %d (event %d)", name, off, idx)
	}
	return append(lines, where+": "+f.String()), true
}
