package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

type ingestOptions struct {
	Store    string
	Read     bepfile.Options
	Replace  bool
	Format   string
	Progress bool // show progress on stderr
}

// ingestRow is one stream ingested, as printed.
type ingestRow struct {
	Key      string `json:"key"`
	Source   string `json:"source"`
	Form     string `json:"input_format"`
	Events   int64  `json:"events"`
	Complete bool   `json:"complete"`
	Status   string `json:"status"` // created, replaced, unchanged, duplicate, busy
}

var ingestColumns = []column[ingestRow]{
	{"KEY", func(r ingestRow) string { return r.Key }},
	{"SOURCE", func(r ingestRow) string { return r.Source }},
	{"FORM", func(r ingestRow) string { return r.Form }},
	{"EVENTS", func(r ingestRow) string { return fmt.Sprint(r.Events) }},
	{"STATE", func(r ingestRow) string { return completeness(r.Complete) }},
	{"STATUS", func(r ingestRow) string { return r.Status }},
}

func completeness(complete bool) string {
	if complete {
		return "complete"
	}
	return "partial"
}

func newIngestCommand() *cli.Command {
	return &cli.Command{
		Name:      "ingest",
		Usage:     "save the streams of BEP files into the local store",
		ArgsUsage: "FILE...",
		Description: commandHelp(`Reads each FILE (any input form, optionally gzip or zstd compressed; - is
standard input) and saves every stream in it to the store, one row per
stream: its key, the input form, the number of events and whether the stream
is complete (Bazel's last event, or component_stream_finished, was seen).

A file that is cut short keeps its complete events: they are stored as a
partial stream, the cut is reported with its byte offset, and bes exits 3.
A stream whose key is already stored with other content is reported and left
unchanged (exit 4) unless --replace; ingesting the same stream again is
harmless (status unchanged), and so is ingesting the .bep and the .json
Bazel wrote for one invocation, in either order: a stream is the same when
it holds the same events, compared as protobuf messages and in any order.
A cut copy of a stored stream (its events all among the stored ones) is
unchanged too; the whole file of a stream stored partial (all its events,
and complete) replaces it without --replace (status replaced, exit 0).
Bazel's own files carry no build id: the stream's build id is the
invocation id unless --build-id is given. A file whose first event names no
invocation (bazel query has no BuildStarted.uuid) gets the invocation id
nouuid-<digest of that event>, the same for the .bep and the .json.

EXAMPLES:
   bes ingest bazel-out/build.bep
   bes ingest --store ./bes-store build.json.gz capture.obe
   bazel-build-events | bes ingest -`),
		Flags: append([]cli.Flag{
			storeFlag(),
			formatFlag(formatTable, formatJSON, formatNDJSON),
			&cli.BoolFlag{Name: "replace", Usage: "overwrite a stored stream that has the same key"},
		}, inputFlags()...),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return &usageError{msg: "ingest: name at least one FILE (- for standard input)"}
			}
			opts := ingestOptions{
				Store:    c.String("store"),
				Read:     readOptions(c),
				Replace:  c.Bool("replace"),
				Format:   c.String("format"),
				Progress: isTerminal(c.App.ErrWriter),
			}
			return runIngest(c.Context, opts, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

// isTerminal reports whether w is a terminal (progress is shown only there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

func runIngest(ctx context.Context, opts ingestOptions, files []string, w, errw io.Writer) error {
	if err := checkInputs(files); err != nil {
		return err
	}
	st, err := createStore(opts.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	var rows []ingestRow
	var res outcome
	for _, name := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		fileRows, err := ingestFile(ctx, st, name, opts, errw)
		rows = append(rows, fileRows...)
		if err != nil {
			if !IsReported(err) { // skipped events were reported one by one
				fmt.Fprint(errw, Diagnostic(err))
			}
			res.add(ExitCode(err))
		}
		for _, r := range fileRows {
			switch r.Status {
			case "duplicate":
				fmt.Fprintf(errw, "bes: %s: stream %s is already stored with other content; nothing changed (use --replace to overwrite)\n", name, safeCell(r.Key))
				res.add(ExitDuplicate)
			case "busy":
				fmt.Fprintf(errw, "bes: %s: stream %s is being received by a bes serve; nothing changed (ingest it once the stream has ended)\n", name, safeCell(r.Key))
				res.add(ExitDuplicate)
			}
		}
	}
	if err := render(w, opts.Format, rows, ingestColumns); err != nil {
		return err
	}
	return res.err()
}

// ingestFile saves every stream of one file. On a read error the streams read
// so far are still committed (as partial streams), and the error is returned.
func ingestFile(ctx context.Context, st store.Backend, name string, opts ingestOptions, errw io.Writer) ([]ingestRow, error) {
	r, err := bepfile.Open(name, opts.Read)
	if err != nil {
		return nil, err
	}
	defer r.Close()

	var order []store.Writer
	writers := map[*bepfile.Stream]store.Writer{}
	defer func() {
		for _, sw := range order {
			sw.Abort() // no-op after Commit
		}
	}()
	prog := newProgress(errw, name, opts.Progress)
	var readErr, skipped error
	notices := &bepfile.Notices{}
	for n := 0; ; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			prog.update(r.Offset(), int64(n))
		}
		at := r.Offset()
		s, ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			var be *bepfile.Error
			if errors.As(err, &be) && be.Resumable() {
				// One bad event that the reader skipped: report it, go on.
				fmt.Fprint(errw, Diagnostic(err))
				skipped = &reportedError{code: ExitDamaged}
				continue
			}
			readErr = err
			break
		}
		if f := r.Found(); len(f.Unknown) > 0 || f.Damaged() {
			// Bazel's JSON file: what bes does not know, by the rule of
			// every command (noteFound).
			if noteFound(notices, name, ev, f, errw) {
				skipped = &reportedError{code: ExitDamaged}
			}
		}
		sw := writers[s]
		if sw == nil {
			if sw, err = st.Create(ctx, s); err != nil {
				// A stream the store refuses (ids over its limits):
				// nothing of the file is stored.
				return nil, fmt.Errorf("%s: byte %d (event %d): %w", name, at, n+1, err)
			}
			writers[s] = sw
			order = append(order, sw)
		}
		if err := sw.Append(ev); err != nil {
			return nil, err
		}
	}
	prog.done()

	source := name
	if name == "-" {
		source = "<stdin>"
	}
	// One index update for all the streams of the file.
	outcomes, err := st.CommitAll(ctx, order, source, r.Format().String(), opts.Replace)
	if err != nil {
		return nil, err
	}
	var rows []ingestRow
	for i, sw := range order {
		e, result, err := outcomes[i].Entry, outcomes[i].Result, outcomes[i].Err
		var dup *store.DuplicateStreamError
		status := result.String()
		switch {
		case errors.As(err, &dup):
			// Nothing was stored: describe the content that was refused.
			m := sw.Meta()
			e = &store.Entry{Key: dup.Key, Events: m.Events, Complete: m.Complete}
			status = "duplicate"
		case errors.Is(err, store.ErrStreamBusy):
			// A bes serve is receiving the stream: it is left alone.
			m := sw.Meta()
			e = &store.Entry{Key: sw.Stream().Key, Events: m.Events, Complete: m.Complete}
			status = "busy"
		case err != nil:
			return rows, err
		}
		rows = append(rows, ingestRow{
			Key: e.Key, Source: source, Form: r.Format().String(),
			Events: e.Events, Complete: e.Complete, Status: status,
		})
	}
	if readErr == nil {
		readErr = skipped
	}
	return rows, readErr
}

// progress shows bytes, events and rate on one terminal line.
type progress struct {
	w     io.Writer
	name  string
	on    bool
	start time.Time
	last  time.Time
	shown bool
}

func newProgress(w io.Writer, name string, on bool) *progress {
	now := time.Now()
	return &progress{w: w, name: name, on: on, start: now, last: now}
}

func (p *progress) update(bytes, events int64) {
	if !p.on {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last = now
	secs := now.Sub(p.start).Seconds()
	fmt.Fprintf(p.w, "\r%s: %s, %d events, %s/s\x1b[K", p.name, humanBytes(bytes), events, humanBytes(int64(float64(bytes)/secs)))
	p.shown = true
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
