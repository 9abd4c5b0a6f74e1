package store

import (
	"context"
	"errors"

	"github.com/bes-cli/bes/bepfile"
)

// Backend is the contract every persistent stream store implements (in the
// manner of restic's backend.Backend): a catalog of Entries, one per stream
// key, and each stream's events, read back byte for byte as they were
// written. store/local implements it with a directory of stream files;
// Memory adapts the in-memory Storage to it; store/storetest is the
// conformance suite each implementation runs.
//
// Streams are named by Key. A stream is written either whole, by a Writer
// that Commit puts in place atomically (a file ingested: `bes ingest`), or
// live, by an Appender whose events are readable as soon as Sync returns
// (`bes serve`). The duplicate rules are BuildGrid's
// (buildgrid.server.build_events.storage): committing a key that exists is
// a *DuplicateStreamError unless the content is the same (Unchanged) or
// replace is asked (new_stream), and OpenAppend creates the stream it is
// asked for when there is none (get_stream).
//
// Unless a method says otherwise: a Backend is safe for concurrent use by
// several goroutines, and several Backends (in one process or many) may
// share the same data when the implementation says so (store/local does);
// ctx comes first, and a method returns ctx.Err() (possibly wrapped) when
// ctx is done; callbacks run in the caller's goroutine, once per item, and
// the first error a callback returns stops the method, which returns that
// error unchanged. Errors are tested with errors.Is and errors.As, never
// by their text.
type Backend interface {
	// Create starts writing a stream whole. st.IDBytes must be a valid
	// StreamId encoding whose key is st.Key (as bepfile produces them);
	// they and st.TypeURL are stored exactly. Anything else is an error,
	// and no Writer. Nothing of the stream is visible (listed, looked up,
	// read) before Writer.Commit; a Writer that is aborted, or abandoned
	// by a process that died, leaves nothing listed. The caller must end
	// the Writer with Commit or Abort (or CommitAll).
	Create(ctx context.Context, st *bepfile.Stream) (Writer, error)

	// CommitAll commits several Writers of this Backend at once, as each
	// one's Commit would, but as one catalog change. The outcomes are in
	// the order of ws; a stream's own failure (a *DuplicateStreamError,
	// ErrStreamBusy, a Writer that failed or was closed, a Writer of
	// another Backend) is in its outcome's Err, and the other streams are
	// committed all the same. Writers with the same key are committed one
	// after the other, in order. An error that concerns the whole batch
	// (I/O, the catalog) is returned as err, with no outcome: then no
	// stream of the batch is listed. After CommitAll every Writer is
	// closed.
	CommitAll(ctx context.Context, ws []Writer, source, format string, replace bool) ([]CommitOutcome, error)

	// OpenAppend opens the stream of st for appending, live: creating it
	// when it is not stored (BuildGrid's get_stream), listed at once with
	// no event; continuing it otherwise, and then returning its stored
	// events as well, as a Stream belonging to no Storage (nil for a new
	// stream). A stream that another Appender holds, in this process or
	// another, gives an error wrapping ErrStreamBusy. st is checked as
	// Create checks it; a stream that is continued keeps its stored
	// identity, Source and Format.
	OpenAppend(ctx context.Context, st *bepfile.Stream, opts AppendOptions) (Appender, *Stream, error)

	// Lookup returns the entries a user's reference names, by the one rule
	// of ResolveRef (a full key; else an invocation id, naming every
	// stream of the invocation; else a build id, naming its tool streams;
	// else a key prefix), in key order. No match is an error wrapping
	// ErrNotFound; a prefix of several builds' keys is an
	// *AmbiguousRefError; an empty ref is an error.
	Lookup(ctx context.Context, ref string) ([]*Entry, error)

	// List calls fn for every entry, in key order (byte-wise, as Go
	// compares strings), from the catalog alone: no stream is read. fn may
	// keep the *Entry. A new or empty Backend lists nothing. An entry
	// committed, opened for appending or deleted while List runs may or
	// may not be listed; every entry listed is listed once.
	List(ctx context.Context, fn func(*Entry) error) error

	// ListMatching is List for the entries whose key match accepts (e.g.
	// a regular expression's MatchString, as BuildGrid's
	// get_matching_streams searches keys). match runs before fn, in the
	// caller's goroutine; an implementation may call it on keys it does
	// not list afterwards (entries deleted meanwhile).
	ListMatching(ctx context.Context, match func(key string) bool, fn func(*Entry) error) error

	// Events calls fn for each event of the stream e describes, in the
	// order they were written, with the stream's identity (the same
	// pointer every time) and the event (fresh each time): encoding each
	// with Event.AppendEncoding gives back, byte for byte, the
	// OrderedBuildEvents that were written. fn may keep both but must not
	// change them. A stream an Appender is writing is read up to its last
	// Sync at least (e may be older than the stream: its counts then lag).
	// A stream that does not exist (any more) gives an error wrapping
	// ErrNotFound; damaged data an error naming where, after fn has seen
	// the events before the damage.
	Events(ctx context.Context, e *Entry, fn func(*bepfile.Stream, *bepfile.Event) error) error

	// Load reads the stream e describes into memory, as a Stream that
	// belongs to no Storage yet (add it with Storage.Add). Errors are
	// those of Events.
	Load(ctx context.Context, e *Entry) (*Stream, error)

	// Delete removes the stream with key, its entry and its events, so
	// that afterwards it is neither listed nor read, even after a crash
	// during Delete (an implementation says what a crash leaves and what
	// its repair does with it). A key that is not stored gives an error
	// wrapping ErrNotFound; a stream that an Appender holds, one wrapping
	// ErrStreamBusy, and nothing is removed. Readers already reading the
	// stream may finish reading it.
	Delete(ctx context.Context, key string) error

	// Location says where the Backend keeps its data, for messages (as
	// restic's Backend.Location): a directory, a URL, "memory".
	Location() string

	// Close releases what the Backend holds (open files, a database). The
	// caller must first end its Writers and Appenders; the Backend must
	// not be used after Close.
	Close() error
}

// Writer writes one stream whole (see Backend.Create). A Writer is not
// safe for concurrent use.
type Writer interface {
	// Stream returns the identity of the stream being written, as it will
	// be stored. It must not be changed.
	Stream() *bepfile.Stream

	// Append adds one event, as bepfile reads it (compact or Raw). After a
	// failed Append the Writer keeps failing; after Commit or Abort it
	// returns ErrWriterClosed.
	Append(ev *bepfile.Event) error

	// Meta returns the metadata gathered from the events appended so far.
	Meta() Meta

	// Commit makes the stream durable and lists it, atomically: either it
	// is listed with all its events or not at all. It returns the
	// stream's entry and what it did:
	//
	//   - Created when the key is new;
	//   - Unchanged, with the entry already stored, when the key exists
	//     with the same bytes; without replace, also when the stored
	//     stream holds every event of the new one (compared as multisets
	//     of canonical events, CompareEvents): the same events in other
	//     bytes (the .bep and .json of one Bazel run), or a part of them
	//     (a cut copy of a stored stream, complete or longer): nothing is
	//     written;
	//   - with replace, Replaced when the key exists with other content;
	//     without replace, Replaced when the stored stream is partial (not
	//     Entry.Complete) and the new one is complete and holds every one
	//     of its events (the whole .bep of a stream cut while received or
	//     ingested truncated first);
	//   - without replace, a *DuplicateStreamError when the key exists
	//     with other content (BuildGrid's new_stream): nothing changes.
	//
	// CommitExisting is that rule for a key stored with other bytes,
	// shared by the implementations.
	//
	// A stream an Appender holds is not replaced: an error wrapping
	// ErrStreamBusy. source and format are recorded in a new entry. After
	// Commit, successful or not, the Writer is closed; a closed Writer's
	// Commit returns ErrWriterClosed.
	Commit(ctx context.Context, source, format string, replace bool) (*Entry, CommitResult, error)

	// Abort discards the stream. It may be called after Commit (it then
	// does nothing) and more than once.
	Abort() error
}

// Appender writes a stream live, batch by batch (see Backend.OpenAppend).
// An Appender is not safe for concurrent use. After a failed write it
// keeps failing: close it and open the stream again, which cuts off
// anything not synced.
type Appender interface {
	// Stream returns the identity of the stream, as it is stored. It must
	// not be changed.
	Stream() *bepfile.Stream

	// Append buffers one event; the next Sync stores it.
	Append(ev *bepfile.Event) error

	// Sync stores every event appended so far: when it returns nil they
	// are durable and readable by Events and Load (this is what `bes
	// serve` acknowledges). The stream's entry may lag behind by up to
	// AppendOptions.IndexInterval.
	Sync(ctx context.Context) error

	// Flush brings the stream's entry up to date with the synced events.
	Flush(ctx context.Context) error

	// Events returns the number of events synced, those OpenAppend found
	// stored included.
	Events() int64

	// Meta returns the metadata of the events appended so far.
	Meta() Meta

	// Close syncs what is buffered, writes the final entry and releases
	// the stream (another Appender may then open it). It returns the
	// entry. Close may be called more than once; later calls do nothing
	// and return the entry of the first.
	Close(ctx context.Context) (*Entry, error)
}

// Reconciler is the optional interface of a Backend whose entries of live
// streams can lag behind their data after a crash (store/local: an
// Appender's entry is rewritten at most every IndexInterval). Reconcile
// brings every entry no live Appender holds up to date with its stream,
// and returns the keys it corrected; `bes serve` runs it at start.
type Reconciler interface {
	Reconcile(ctx context.Context) ([]string, error)
}

// ErrWriterClosed is returned by a Writer or an Appender used after it was
// committed, aborted or closed. Test for it with errors.Is.
var ErrWriterClosed = errors.New("store: stream writer already committed or aborted")
