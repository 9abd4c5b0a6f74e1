package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/scan"
	"github.com/bes-cli/bes/store"
)

// splitArgs separates arguments that name existing files (or "-", standard
// input) from the others, which are stream references. An argument that
// looks like a path (looksLikePath) is a file even if there is none, so
// that reading it reports "no such file" (checkInputs); one that names an
// existing directory is a file argument too, so that reading it reports
// "is a directory, not a file".
func splitArgs(args []string) (files, refs []string) {
	for _, a := range args {
		if a == "-" || looksLikePath(a) {
			files = append(files, a)
			continue
		}
		if _, err := os.Stat(a); err == nil {
			files = append(files, a)
			continue
		}
		refs = append(refs, a)
	}
	return files, refs
}

// readFiles reads every stream of the files into a new in-memory storage,
// without touching the store. A read error is reported on errw, one line
// naming the file and offset; the complete events before it are kept. The
// returned outcome says whether any input was partial or failed. A stream
// that an earlier file already held (say a .bep and its .json twin) is
// read once: the later copy is skipped with a note.
func readFiles(ctx context.Context, files []string, opts bepfile.Options, errw io.Writer) (*store.Storage, *outcome, error) {
	mem, _, res, err := readFilesFrom(ctx, files, opts, errw)
	return mem, res, err
}

// readFilesFrom is readFiles that also says which file each stream was
// read from: sources maps stream keys to file names.
func readFilesFrom(ctx context.Context, files []string, opts bepfile.Options, errw io.Writer) (mem *store.Storage, sources map[string]string, res *outcome, err error) {
	mem = store.New()
	var cur *bepfile.Stream
	var st *store.Stream
	opts.Reuse = false // the storage keeps the events
	sc := newScanner(opts, errw)
	res, err = scanAll(ctx, sc, files, errw, func(s *bepfile.Stream, ev *bepfile.Event) error {
		if s != cur {
			cur, st = s, mem.GetStreamFor(s)
		}
		st.Append(*ev)
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return mem, sc.Sources(), res, nil
}

// newScanner returns the scan.Scanner of the files of the command line:
// it opens them with openInput and reports its notes on errw (noteLine).
func newScanner(opts bepfile.Options, errw io.Writer) *scan.Scanner {
	return &scan.Scanner{Options: opts, Open: openInput, Note: func(n scan.Note) { fmt.Fprint(errw, noteLine(n)) }}
}

// noteLine is a note of a scan as bes reports it on standard error.
func noteLine(n scan.Note) string {
	switch n.Kind {
	case scan.Skipped:
		return Diagnostic(n.Err)
	case scan.Duplicate:
		return fmt.Sprintf("bes: %s: stream %s was already read from %s; skipping this copy\n", n.File, safeCell(n.Key), n.From)
	default:
		return "bes: " + safeCell(n.Text) + "\n"
	}
}

// scanAll reads every event of the files, in order, and calls fn with
// each and its stream, with readFiles's handling of read errors and of
// streams read twice: those events are skipped. With sc.Options.Reuse the
// event is valid only during the call. An error of fn ends the scan and
// is returned as it is.
func scanAll(ctx context.Context, sc *scan.Scanner, files []string, errw io.Writer, fn scan.Visit) (*outcome, error) {
	return forFiles(ctx, files, errw, func(name string) error {
		return sc.File(ctx, name, fn)
	})
}

// forFiles calls read with each file in turn and gathers the outcome: the
// error of a file is reported on errw (one line, unless its bad events
// were reported already: scan.ErrDamaged) and the next file is read; the
// end of ctx, or an error of the caller's callback (a
// *scan.CallbackError), ends it and is returned.
func forFiles(ctx context.Context, files []string, errw io.Writer, read func(name string) error) (*outcome, error) {
	if err := checkInputs(files); err != nil {
		return nil, err
	}
	res := &outcome{}
	err := scan.Each(ctx, files, read, func(_ string, err error) {
		if errors.Is(err, scan.ErrDamaged) { // skipped events were reported one by one
			res.add(ExitDamaged)
			return
		}
		fmt.Fprint(errw, Diagnostic(err))
		res.add(ExitCode(err))
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// noteFound reports on errw what a reader found in an event of file name
// and could not take as it was (scan.FoundLines), by the rule of every
// command, and whether the event was damaged.
func noteFound(notices *bepfile.Notices, name string, ev *bepfile.Event, f bepfile.Damage, errw io.Writer) bool {
	lines, damaged := scan.FoundLines(notices, name, ev, f)
	for _, line := range lines {
		fmt.Fprint(errw, "bes: "+safeCell(line)+"\n")
	}
	return damaged
}

// selection is what a reading command was asked to read: the FILEs and
// STREAM references of its arguments (splitArgs) and --match.
type selection struct {
	Store       string // --store
	Match       *regexp.Regexp
	Files, Refs []string
	Read        bepfile.Options
}

// readSelected reads the streams sel names, by the one rule of every
// reading command (viewSelectionHelp):
//
//   - with FILEs, every stream of the files, event by event
//     (scanFilesPipelined, keep deciding which events fn gets: skip counts
//     the others), and then the streams Refs name among them
//     (selectStreamInfos: in key order, or in the order of the refs), of
//     those whose key Match matches; no store is opened;
//   - with STREAMs alone, the stored streams that Lookup resolves each ref
//     to, each once, in key order, whose key Match matches;
//   - with --match alone, every stored stream whose key Match matches, in
//     key order.
//
// A stored stream is read with Backend.Events, event by event, every event
// handed to fn with no peek (keep is for files only). open makes the
// state of a stream, once, before its first event (for a stored stream
// without events, after reading it); readSelected returns the states of
// the streams selected, in order, and what reading the files gave. fn
// must keep none of an event's bytes after it returns.
func readSelected[T any](ctx context.Context, sel selection, errw io.Writer, keep scan.Keep, open func(*bepfile.Stream) T,
	fn func(T, *bepfile.Stream, *bepfile.Event, *bepfile.Peeked), skip func(T, int)) ([]T, *outcome, error) {
	if len(sel.Files) > 0 {
		states := map[*bepfile.Stream]T{}
		var streams []*bepfile.Stream
		stateOf := func(s *bepfile.Stream) T {
			x, ok := states[s]
			if !ok {
				x = open(s)
				states[s] = x
				streams = append(streams, s)
			}
			return x
		}
		res, err := scanFilesPipelined(ctx, sel.Files, sel.Read, errw, keep,
			func(s *bepfile.Stream, ev *bepfile.Event, p *bepfile.Peeked) error {
				fn(stateOf(s), s, ev, p)
				return nil
			},
			func(s *bepfile.Stream, n int) { skip(stateOf(s), n) })
		if err != nil {
			return nil, nil, err
		}
		selected, err := selectStreamInfos(streams, sel.Refs)
		if err != nil {
			return nil, nil, err
		}
		var out []T
		for _, s := range selected {
			if sel.Match.MatchString(s.Key) {
				out = append(out, states[s])
			}
		}
		return out, res, nil
	}
	st, err := openStore(sel.Store)
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	entries, err := selectStored(ctx, st, sel)
	if err != nil {
		return nil, nil, err
	}
	out := make([]T, 0, len(entries))
	for _, e := range entries {
		var x T
		opened := false
		err := st.Events(ctx, e, func(s *bepfile.Stream, ev *bepfile.Event) error {
			if !opened {
				x, opened = open(s), true
			}
			fn(x, s, ev, nil)
			return nil
		})
		if err != nil && !storeDamage(ctx, errw, err) {
			return nil, nil, err
		}
		if !opened {
			x = open(entryStream(e))
		}
		out = append(out, x)
	}
	return out, &outcome{}, nil
}

// selectStored returns the entries of the streams of st that sel names
// (its Refs, else every stream --match selects), in key order, each once,
// whose key sel.Match matches.
func selectStored(ctx context.Context, st store.Backend, sel selection) ([]*store.Entry, error) {
	var entries []*store.Entry
	if len(sel.Refs) == 0 {
		err := st.ListMatching(ctx, sel.Match.MatchString, func(e *store.Entry) error {
			entries = append(entries, e)
			return nil
		})
		return entries, err
	}
	seen := map[string]bool{}
	for _, ref := range sel.Refs {
		es, err := st.Lookup(ctx, ref)
		if err != nil {
			return nil, refError(ref, err, "store "+st.Location())
		}
		for _, e := range es {
			if !seen[e.Key] && sel.Match.MatchString(e.Key) {
				seen[e.Key] = true
				entries = append(entries, e)
			}
		}
	}
	slices.SortFunc(entries, func(a, b *store.Entry) int { return strings.Compare(a.Key, b.Key) })
	return entries, nil
}

// entryStream is the identity of e's stream, from its entry.
func entryStream(e *store.Entry) *bepfile.Stream {
	return bepfile.NewStream(&buildpb.StreamId{BuildId: e.BuildID, InvocationId: e.InvocationID, Component: buildpb.StreamId_BuildComponent(e.Component)})
}

// resolveRefs finds the stored streams that refs name, by the rule of
// store.ResolveRef (see store.Backend.Lookup), and replays them into a new
// in-memory storage. A stream whose file is damaged holds the events
// before the damage (loadStored).
func resolveRefs(ctx context.Context, st store.Backend, refs []string, errw io.Writer) (*store.Storage, error) {
	mem := store.New()
	for _, ref := range refs {
		entries, err := st.Lookup(ctx, ref)
		if err != nil {
			return nil, refError(ref, err, "store "+st.Location())
		}
		for _, e := range entries {
			s, err := loadStored(ctx, st, e, errw)
			if err != nil {
				return nil, err
			}
			var dup *store.DuplicateStreamError
			if err := mem.Add(s); err != nil && !errors.As(err, &dup) {
				return nil, err
			}
		}
	}
	return mem, nil
}

// loadStored reads the stream of e into memory, as Backend.Load does. When
// its stored file is damaged (a *bess.CorruptError: a checksum that fails,
// a file cut short), the stream holds the events before the damage, and
// storeDamage reports it (one line on errw; the command exits
// ExitDamaged).
func loadStored(ctx context.Context, st store.Backend, e *store.Entry, errw io.Writer) (*store.Stream, error) {
	var out *store.Stream
	err := st.Events(ctx, e, func(s *bepfile.Stream, ev *bepfile.Event) error {
		if out == nil {
			out = store.NewStreamFromInfo(s)
		}
		out.Append(*ev)
		return nil
	})
	if err != nil && !storeDamage(ctx, errw, err) {
		return nil, err
	}
	if out == nil {
		out = store.NewStreamFromInfo(entryStream(e))
	}
	return out, nil
}

// scanFilesPipelined reads the files with scan.Scanner.Pipeline: fn
// gets each event keep accepts (and what keep peeked in it), in order, on
// the caller's goroutine, and skip the number of events of a stream left
// out in between. fn must keep none of an event's bytes (nor the *Event)
// after it returns: they are reused for later events. Read errors are
// handled as readFiles handles them.
func scanFilesPipelined(ctx context.Context, files []string, opts bepfile.Options, errw io.Writer,
	keep scan.Keep, fn scan.Func, skip func(*bepfile.Stream, int)) (*outcome, error) {
	sc := newScanner(opts, errw)
	return forFiles(ctx, files, errw, func(name string) error {
		return sc.Pipeline(ctx, name, keep, fn, skip)
	})
}
