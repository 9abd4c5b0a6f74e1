package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/local"
	"github.com/bes-cli/bes/store/postgres"
)

// storeDir returns dir, or the default store directory when dir is ""
// (local.DefaultDir: $BES_STORE, $XDG_DATA_HOME/bes, ~/.local/share/bes).
func storeDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	return local.DefaultDir()
}

// openStore opens the store at dir (the default one when dir is "") for a
// command that only reads it: streams, dump, query, the views, log. It
// never creates the directory: a store that does not exist is empty, so
// that it lists nothing and finds no stream. openStore and createStore are
// where commands choose the backend (store/local); everything else uses
// the storage contract, store.Backend. The caller closes it.
func openStore(dir string) (store.Backend, error) {
	if postgres.IsURL(dir) {
		return openTeamStore(dir)
	}
	if err := noBlobs(); err != nil {
		return nil, err
	}
	dir, err := storeDir(dir)
	if err != nil {
		return nil, err
	}
	st, _, err := local.OpenExisting(dir)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// createStore opens the store at dir (the default one when dir is "") for
// a command that writes it, ingest and serve, creating the directory
// (mode 0700, parents included) if needed. The caller closes it.
func createStore(dir string) (store.Backend, error) {
	if postgres.IsURL(dir) {
		return openTeamStore(dir)
	}
	if err := noBlobs(); err != nil {
		return nil, err
	}
	dir, err := storeDir(dir)
	if err != nil {
		return nil, err
	}
	st, err := local.Open(dir)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// blobsFlagValue is the last --blobs given (see blobsValue).
var blobsFlagValue atomic.Pointer[string]

// teamBlobs returns the blob URL of a team store: --blobs, else $BES_BLOBS.
func teamBlobs() string {
	if p := blobsFlagValue.Load(); p != nil {
		return *p
	}
	return os.Getenv("BES_BLOBS")
}

// noBlobs refuses --blobs for a directory store, which keeps its stream
// files in its directory (BES_BLOBS, set for a team store, is ignored).
func noBlobs() error {
	if p := blobsFlagValue.Load(); p != nil && *p != "" {
		return &usageError{msg: "--blobs goes with a postgres:// --store; a directory store keeps its stream files in its directory"}
	}
	return nil
}

// openTeamStore opens the team store (store/postgres) whose catalog is
// the PostgreSQL database at url and whose stream bodies are at --blobs,
// creating its tables in an empty database.
func openTeamStore(url string) (store.Backend, error) {
	blobs := teamBlobs()
	if blobs == "" {
		return nil, &usageError{msg: "--store postgres://… needs --blobs (or BES_BLOBS): where the stream bodies are kept (file:///path, s3://bucket/prefix?endpoint=…&region=…, gs://bucket/prefix, azblob://container/prefix)"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return postgres.Open(ctx, url, blobs)
}

// warnUnlisted prints one warning line on errw when the catalog of st
// lists no stream although its directory holds stream files (a catalog
// lost or emptied; issue 13: such a store listed nothing, exit 0, without a
// word), so that an empty listing is not taken for an empty store. A
// backend that cannot tell (not a store/local directory) prints nothing.
func warnUnlisted(ctx context.Context, st store.Backend, errw io.Writer) {
	u, ok := st.(interface {
		Unlisted(context.Context) (int, error)
	})
	if !ok {
		return
	}
	if n, err := u.Unlisted(ctx); err == nil && n > 0 {
		fmt.Fprintf(errw, "bes: warning: store %s: its catalog lists no stream, but the directory holds %d stream files (bes store check --repair indexes them)\n", safeCell(st.Location()), n)
	}
}

type storeCheckOptions struct {
	Store  string
	Repair bool
	Format string
}

// checkRow is one problem `bes store check` found, as printed.
type checkRow struct {
	Problem string `json:"problem"`
	File    string `json:"file"`
	Key     string `json:"key,omitempty"`
	Detail  string `json:"detail"`
	// Status is "found", or with --repair "repaired" or "remains".
	Status string `json:"status"`
}

var checkColumns = []column[checkRow]{
	{"PROBLEM", func(r checkRow) string { return r.Problem }},
	{"FILE", func(r checkRow) string { return r.File }},
	{"KEY", func(r checkRow) string { return r.Key }},
	{"STATUS", func(r checkRow) string { return r.Status }},
	{"DETAIL", func(r checkRow) string { return r.Detail }},
}

func newStoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "store",
		Usage: "maintain the stream store (a directory, or a team store's catalog and blobs)",
		Subcommands: []*cli.Command{
			newStoreCheckCommand(),
			newStoreGCCommand(),
		},
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return unknownCommand("bes store", c.Command.Subcommands, c.Args().First())
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

func newStoreCheckCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "verify that the store's catalog and stream files agree; --repair fixes what does not",
		Description: `Checks the store: every catalog entry's stream file exists, is the
stream's own file, and has the size, digest, event count and outcome the
entry records, and every record its checksum; every stream file is
indexed; no temporary file is left by a writer that was killed; nothing in
the directory is anything but a regular file (a symbolic link is never
followed). It reads every stream file whole and changes nothing. One row
per problem; a summary line on standard error.

A store directory that does not exist is an empty store, consistent:
check (and --repair) creates nothing. A store of an older bes (with an
index.ndjson) is migrated into the catalog (catalog.db) when it is first
opened; the old index is kept as index.ndjson.migrated.

A stream that bes serve is writing is ahead of its catalog entry by up to
a second: that is not a problem. Check runs while ingests and servers
write.

--repair fixes what check found, and only that: it drops entries whose
file is missing; indexes stream files no entry names; writes anew an entry
whose counts or outcome differ from its file; quarantines a stream file
whose content disagrees with its committed entry (moved aside as
NAME.bess.quarantine, never indexed as it is) and moves a file that
cannot be read at all aside (NAME.bess.corrupt); brings up to date the
entries of streams a killed server left open (cutting off a record it was
writing); removes stale temporary files; removes what is not a regular
file (a symbolic link itself, never its target); and rebuilds a damaged catalog
from the stream files (keeping it as catalog.db.corrupt-TIME; only while
no other bes has the store open). It never reads, moves or changes a
stream a live writer holds. It then checks again.

On a team store (--store postgres://… --blobs URL) the same rules hold
for the catalog's rows and the bucket's blobs: every row's chunks have
their blobs, of their sizes, whose records pass their checksums and hold
the row's stream, digest, event count, outcome and facts (a stream
bes serve is writing: up to its last acknowledged batch, its facts once it
ends). A blob no row names and older than an hour is reported ("blob not
in the catalog": an upload killed before its catalog commit; bes store gc
deletes it). --repair drops a row a blob of which is missing, quarantines
a damaged body (its blobs copied under quarantine/ in the bucket, the row
dropped), writes rows and facts anew from their bodies; never for a
stream a bes serve holds.

Problems: bad catalog, bad file name, missing file, content mismatch,
metadata mismatch, corrupt file, entry behind file, not indexed, stale
temporary file, not a regular file, facts mismatch (a stream's facts in the
catalog are missing or not those of its events), facts without stream,
blob not in the catalog (team store).

EXAMPLES:
   bes store check
   bes store check --repair --store ./bes-store
   bes store check --format json

EXIT STATUS:
   0  the store is consistent (with --repair: it is, once repaired)
   1  it is not (with --repair: problems remain), or the check failed
   2  usage error: bad flags or arguments`,
		Flags: []cli.Flag{
			storeFlag(),
			formatFlag(formatTable, formatJSON, formatNDJSON),
			&cli.BoolFlag{Name: "repair", Usage: "fix the problems found: index what is not, quarantine what disagrees with the catalog, reconcile streams left open, remove stale temporary files"},
		},
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return &usageError{msg: fmt.Sprintf("store check takes no arguments, got %q", c.Args().First())}
			}
			opts := storeCheckOptions{Store: c.String("store"), Repair: c.Bool("repair"), Format: c.String("format")}
			return runStoreCheck(c.Context, opts, c.App.Writer, c.App.ErrWriter)
		},
	}
}

// checker is a store that checks and repairs itself (store/local,
// store/postgres), by the rules of store.CheckResult.
type checker interface {
	Check(context.Context) (*store.CheckResult, error)
	Repair(context.Context) (*store.RepairResult, error)
}

func runStoreCheck(ctx context.Context, opts storeCheckOptions, w, errw io.Writer) error {
	var st checker
	var where, files string
	exists := true
	if postgres.IsURL(opts.Store) {
		b, err := openTeamStore(opts.Store)
		if err != nil {
			return err
		}
		defer b.Close()
		st, where, files = b.(*postgres.Store), b.Location(), "blobs"
	} else {
		dir, err := storeDir(opts.Store)
		if err != nil {
			return err
		}
		ls, ok, err := local.OpenExisting(dir)
		if err != nil {
			return err
		}
		st, where, files, exists = ls, ls.Dir(), "stream files", ok
	}
	var rows []checkRow
	var res *store.CheckResult
	var err error
	switch {
	case !exists:
		// An empty store, consistent: nothing to check or repair, and
		// a check creates nothing.
		res = &store.CheckResult{}
	case !opts.Repair:
		if res, err = st.Check(ctx); err != nil {
			return err
		}
		for _, p := range res.Problems {
			rows = append(rows, problemRow(p, "found"))
		}
	default:
		rep, err := st.Repair(ctx)
		if err != nil {
			return err
		}
		res = rep.After
		type at struct {
			kind store.ProblemKind
			file string
		}
		remains := map[at]bool{}
		for _, p := range rep.After.Problems {
			remains[at{p.Kind, p.File}] = true
		}
		for _, p := range rep.Before.Problems {
			status := "repaired"
			if w := (at{p.Kind, p.File}); remains[w] {
				status = "remains"
				delete(remains, w)
			}
			rows = append(rows, problemRow(p, status))
		}
		for _, p := range rep.After.Problems {
			if remains[at{p.Kind, p.File}] { // not there before the repair
				rows = append(rows, problemRow(p, "remains"))
			}
		}
		for _, a := range rep.Actions {
			fmt.Fprintf(errw, "bes: repair: %s\n", safeCell(a))
		}
	}
	if err := render(w, opts.Format, rows, checkColumns); err != nil {
		return err
	}
	summary := fmt.Sprintf("bes: store %s: %d streams, %d %s", where, res.Entries, res.Files, files)
	if n := len(res.Open); n > 0 {
		summary += fmt.Sprintf(", %d being written", n)
	}
	switch {
	case res.OK():
		fmt.Fprintf(errw, "%s: consistent\n", summary)
		return nil
	case opts.Repair:
		fmt.Fprintf(errw, "%s: %d problems remain after the repair\n", summary, len(res.Problems))
	default:
		fmt.Fprintf(errw, "%s: %d problems (bes store check --repair fixes them)\n", summary, len(res.Problems))
	}
	return &reportedError{code: ExitError}
}

func problemRow(p store.Problem, status string) checkRow {
	return checkRow{Problem: string(p.Kind), File: p.File, Key: p.Key, Detail: p.Detail, Status: status}
}

type storeGCOptions struct {
	Store     string
	OlderThan time.Duration // 0: no age limit
	Keep      int           // negative: no count limit
	DryRun    bool
	Format    string
	Now       time.Time // zero: time.Now
	// OrphanGrace is --orphan-grace: how old a team store's blob no
	// catalog row names must be for gc to delete it.
	OrphanGrace time.Duration
}

// gcRow is one stream `bes store gc` selected, as printed.
type gcRow struct {
	// Status is "removed", "would remove" (--dry-run), "kept: being
	// written" (an Appender holds it) or "kept: changed meanwhile"; for a
	// team store's blob no catalog row names (Blob), "removed orphan
	// blob" or "would remove orphan blob".
	Status       string    `json:"status"`
	Time         time.Time `json:"time"` // local.GCTime: the start, else the ingest time
	Key          string    `json:"key"`
	InvocationID string    `json:"invocation_id"`
	Command      string    `json:"command,omitempty"`
	Events       int64     `json:"events"`
	Size         int64     `json:"size"` // bytes of the stream file
	// Blob is the orphan blob's name in the bucket (its row has no key).
	Blob string `json:"blob,omitempty"`
}

var gcColumns = []column[gcRow]{
	{"STATUS", func(r gcRow) string { return r.Status }},
	{"TIME", func(r gcRow) string {
		if r.Time.IsZero() {
			return ""
		}
		return r.Time.UTC().Format(time.RFC3339)
	}},
	{"KEY", func(r gcRow) string {
		if r.Blob != "" {
			return "blob " + r.Blob
		}
		return r.Key
	}},
	{"INVOCATION ID", func(r gcRow) string { return shownInvocationID(r.InvocationID) }},
	{"COMMAND", func(r gcRow) string { return r.Command }},
	{"EVENTS", func(r gcRow) string { return strconv.FormatInt(r.Events, 10) }},
	{"SIZE", func(r gcRow) string { return strconv.FormatInt(r.Size, 10) }},
}

// parseAge parses --older-than: a Go duration (90m, 36h) or a whole
// number of days or weeks (30d, 2w), positive.
func parseAge(v string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(v, "d"); ok {
		d, err = wholeUnits(n, 24*time.Hour)
	} else if n, ok := strings.CutSuffix(v, "w"); ok {
		d, err = wholeUnits(n, 7*24*time.Hour)
	} else {
		d, err = time.ParseDuration(v)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--older-than wants a positive duration such as 30d, 2w, 36h or 90m, not %q", v)
	}
	return d, nil
}

func wholeUnits(n string, unit time.Duration) (time.Duration, error) {
	k, err := strconv.ParseInt(n, 10, 64)
	if err != nil || k <= 0 || k > int64(1<<63-1)/int64(unit) {
		return 0, errors.New("bad count")
	}
	return time.Duration(k) * unit, nil
}

func newStoreGCCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove old streams from the store: --older-than DURATION, --keep N; --dry-run lists them",
		Description: `Removes whole streams from the store (each stream's file and its
catalog entry), oldest first, by their time: the invocation's start
(BuildStarted.start_time), or, for a stream without one, the time it was
stored. The streams of one build (one build id: Bazel's tool stream and
the BES lifecycle streams of the invocation) are kept or removed
together, by the time of the newest of them. --older-than DURATION
removes the builds older than that (30d, 2w, 36h, 90m); --keep N keeps
only the N newest builds. With both, a build beyond either limit is
removed. One of them is required.

A stream that bes serve is writing (an open stream) is never removed: its
row says "kept: being written", and it still counts among the N newest.
A stream replaced (ingest --replace) while gc runs is judged again next
time ("kept: changed meanwhile"). --dry-run removes nothing and lists
what gc would remove.

Each stream is removed as one step, its file first and then its entry:
gc killed at any point leaves every stream either whole or gone (an entry
whose file was removed reads as gone; bes store check reports it as
"missing file" and --repair drops it). Run gc again to finish.

On a team store (--store postgres://…) each stream's row is dropped in
one transaction, its blobs deleted a minute later (readers that started
finish). gc then deletes the blobs no catalog row names (uploads killed
before their catalog commit; bes store check reports them) once they are
older than --orphan-grace (1h by default): an upload in progress is
younger, so gc never takes a blob from under a writer, nor a blob of a
stream being written, nor the quarantine/ of check --repair. One row per
blob ("removed orphan blob"). On a team store --older-than and --keep
may both be left out: gc then deletes orphan blobs only.

One row per stream selected, oldest first; a summary line on standard
error.

EXAMPLES:
   bes store gc --older-than 30d
   bes store gc --keep 1000 --dry-run
   bes store gc --older-than 2w --keep 500 --format json

EXIT STATUS:
   0  done (streams being written are kept, and that is not an error)
   1  the store could not be read or a stream not removed (the rows
      before the error are printed)
   2  usage error: bad flags or arguments, or neither --older-than nor --keep
      (on a directory store)`,
		Flags: []cli.Flag{
			storeFlag(),
			formatFlag(formatTable, formatJSON, formatNDJSON),
			&cli.StringFlag{Name: "older-than", Usage: "remove the streams older than `DURATION` (30d, 2w, 36h, 90m), by start time (else the time stored)"},
			&cli.IntFlag{Name: "keep", Usage: "keep only the `N` newest builds (a build's tool and lifecycle streams count as one)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "remove nothing: list what would be removed"},
			&cli.StringFlag{Name: "orphan-grace", Value: "1h", Usage: "team store: delete the blobs no catalog row names once older than `DURATION` (an upload in progress is younger)"},
		},
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return &usageError{msg: fmt.Sprintf("store gc takes no arguments, got %q", c.Args().First())}
			}
			opts := storeGCOptions{Store: c.String("store"), Keep: -1, DryRun: c.Bool("dry-run"), Format: c.String("format")}
			grace, err := parseAge(c.String("orphan-grace"))
			if err != nil {
				return &usageError{msg: strings.Replace(err.Error(), "--older-than", "--orphan-grace", 1)}
			}
			opts.OrphanGrace = grace
			if !c.IsSet("older-than") && !c.IsSet("keep") && !postgres.IsURL(opts.Store) {
				return &usageError{msg: "store gc needs --older-than DURATION or --keep N (or both)"}
			}
			if c.IsSet("older-than") {
				d, err := parseAge(c.String("older-than"))
				if err != nil {
					return &usageError{msg: err.Error()}
				}
				opts.OlderThan = d
			}
			if c.IsSet("keep") {
				if opts.Keep = c.Int("keep"); opts.Keep < 0 {
					return &usageError{msg: fmt.Sprintf("--keep wants a count of streams, 0 or more, not %d", opts.Keep)}
				}
			}
			return runStoreGC(c.Context, opts, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runStoreGC(ctx context.Context, opts storeGCOptions, w, errw io.Writer) error {
	var items []store.GCItem
	var orphans []postgres.Orphan
	var gcErr error
	gcOpts := store.GCOptions{OlderThan: opts.OlderThan, Keep: opts.Keep, Now: opts.Now, DryRun: opts.DryRun, OrphanGrace: opts.OrphanGrace}
	var where string
	if postgres.IsURL(opts.Store) {
		b, err := openTeamStore(opts.Store)
		if err != nil {
			return err
		}
		defer b.Close()
		where = b.Location()
		items, orphans, gcErr = b.(*postgres.Store).GC(ctx, gcOpts)
	} else {
		dir, err := storeDir(opts.Store)
		if err != nil {
			return err
		}
		st, exists, err := local.OpenExisting(dir)
		if err != nil {
			return err
		}
		where = dir
		if exists { // a store that does not exist is empty: gc creates nothing
			defer st.Close()
			items, gcErr = st.GC(ctx, gcOpts)
		}
	}
	rows := make([]gcRow, 0, len(items))
	var removed, kept int
	var bytes int64
	for _, it := range items {
		r := gcRow{Time: it.Time, Key: it.Entry.Key, InvocationID: it.Entry.InvocationID, Command: it.Entry.Command, Events: it.Entry.Events, Size: it.Entry.Size}
		switch {
		case it.Busy:
			r.Status = "kept: being written"
			kept++
		case it.Gone:
			r.Status = "kept: changed meanwhile"
			kept++
		case it.Removed:
			r.Status = "removed"
			removed++
			bytes += it.Entry.Size
		default:
			r.Status = "would remove"
			removed++
			bytes += it.Entry.Size
		}
		rows = append(rows, r)
	}
	var orphanBytes int64
	for _, o := range orphans {
		r := gcRow{Status: "would remove orphan blob", Time: o.ModTime, Blob: o.Name, Size: o.Size}
		if o.Removed {
			r.Status = "removed orphan blob"
		}
		orphanBytes += o.Size
		rows = append(rows, r)
	}
	if err := render(w, opts.Format, rows, gcColumns); err != nil {
		return err
	}
	verb := "removed"
	if opts.DryRun {
		verb = "would remove"
	}
	fmt.Fprintf(errw, "bes: store %s: %s %d streams (%d bytes)", where, verb, removed, bytes)
	if kept > 0 {
		fmt.Fprintf(errw, ", kept %d being written or changed", kept)
	}
	if postgres.IsURL(opts.Store) {
		fmt.Fprintf(errw, "; %s %d orphan blobs (%d bytes)", verb, len(orphans), orphanBytes)
	}
	fmt.Fprintln(errw)
	return gcErr
}
