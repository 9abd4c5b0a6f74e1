// Package local is bes's persistent stream store: a directory holding one
// compact file per stream and a SQLite catalog that lists them all.
//
// Layout of a store directory (created 0700, files 0600):
//
//	catalog.db          the catalog: one row per stream (an Entry), in SQLite (WAL mode;
//	catalog.db-wal      with its write-ahead log and shared-memory index while open);
//	catalog.db-shm      see catalog.go for the schema and its migrations
//	lock                every process using the store holds a shared flock on it; only
//	                    Repair of a damaged catalog takes it exclusively
//	<32 hex>.bess       one stream file per stream (format: package store/bess), named by
//	                    the first 128 bits of the SHA-256 of the stream key, never by the ids
//	tmp/.*.tmp          files being written, renamed into place when complete; what a
//	                    killed writer left is removed by the next Open (a bes before
//	                    issue 13 wrote them in the directory itself: Repair removes those)
//	index.ndjson.migrated  the index of a bes before the catalog, once imported
//
// A stream file written whole is put in place atomically (write a temporary
// file, fsync, rename) inside the catalog transaction that lists it, so
// readers never see partial files. A stream received live (Appender) is
// appended to in place, under an exclusive flock that tells every other
// writer, and Check and Repair, to leave it alone. The catalog serialises
// writers across processes (several `bes ingest` runs and a `bes serve`):
// one write transaction at a time, readers never blocked.
//
// Limits, checked before anything is stored (CheckStreamID): a build id or
// invocation id of at most MaxIDBytes bytes, a StreamId encoding of at most
// MaxStreamIDBytes, a type URL of at most MaxTypeURLBytes.
package local

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
)

const (
	lockName   = "lock"
	fileSuffix = ".bess"
	tmpSuffix  = ".tmp"
)

// streamFileRE matches the names of stream files.
var streamFileRE = regexp.MustCompile(`^[0-9a-f]{32}\.bess$`)

// Entry describes one stored stream: store.Entry, what the catalog holds,
// one per stream, so that listing streams opens no stream file.
type Entry = store.Entry

// CommitResult says what StreamWriter.Commit did (store.CommitResult).
type CommitResult = store.CommitResult

// The values of CommitResult, from package store.
const (
	Created   = store.Created
	Replaced  = store.Replaced
	Unchanged = store.Unchanged
)

// Store is a store directory. It is safe for concurrent use, and several
// Stores (in one process or many) may share a directory.
type Store struct {
	dir string
	now func() time.Time
	mu  sync.Mutex // serialises this Store's catalog writers

	dbMu     sync.Mutex // guards db and lockFile
	db       *sql.DB    // the catalog, once opened
	lockFile *os.File   // the lock file, flocked shared while db is open

	temps tempOwner // the owner of this Store's temporary files
}

// Option configures Open.
type Option func(*Store)

// WithClock sets the clock that stamps Entry.Ingested (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// DefaultDir returns the default store directory: $BES_STORE if set, else
// $XDG_DATA_HOME/bes if XDG_DATA_HOME is an absolute path, else
// ~/Library/Application Support/bes on macOS and ~/.local/share/bes
// elsewhere.
func DefaultDir() (string, error) {
	return defaultDir(os.Getenv, runtime.GOOS, os.UserHomeDir)
}

func defaultDir(getenv func(string) string, goos string, home func() (string, error)) (string, error) {
	if d := getenv("BES_STORE"); d != "" {
		return d, nil
	}
	if d := getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "bes"), nil
	}
	h, err := home()
	if err != nil {
		return "", fmt.Errorf("store: no default directory (set BES_STORE): %w", err)
	}
	if goos == "darwin" {
		return filepath.Join(h, "Library", "Application Support", "bes"), nil
	}
	return filepath.Join(h, ".local", "share", "bes"), nil
}

// ErrUnsafeDir is wrapped by the error of Open and OpenExisting for a store
// directory that another user owns, or that its group or anyone may write
// (on Unix): bes refuses it, as ssh refuses such files, since whoever can
// write the directory can plant files and symbolic links in it (issue 13).
// Test for it with errors.Is.
var ErrUnsafeDir = errors.New("unsafe store directory")

// Open opens the store in dir, creating the directory (mode 0700, parents
// included) if it does not exist, and removes the temporary files that
// writers killed earlier left in its tmp/ (no live writer's). An existing
// directory keeps its mode; one another user owns or others may write is
// refused (ErrUnsafeDir).
func Open(dir string, opts ...Option) (*Store, error) {
	if dir == "" {
		return nil, errors.New("store: empty directory name")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("store: %s is not a directory", dir)
	}
	if err := checkDirSafe(dir, fi); err != nil {
		return nil, err
	}
	s := &Store{dir: dir, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	// Open the catalog now (creating it, migrating an old store), so that
	// a store that cannot be written fails here. A damaged catalog is
	// left for Check and Repair to see: every use of it will say so.
	if _, err := s.catalog(context.Background(), true); err != nil {
		var ie *IndexError
		if !errors.As(err, &ie) {
			return nil, err
		}
	}
	// What writers killed earlier left in tmp/ (issue 13: it stayed until
	// a repair). Best effort: a file that cannot be removed is one Check
	// reports.
	s.removeStaleTemps(context.Background(), false)
	return s, nil
}

// Dir returns the store directory.
func (s *Store) Dir() string { return s.dir }

// FileName returns the name of the stream file for key: the first 32 hex
// digits of the SHA-256 of the key, and ".bess". It never contains
// anything taken from the key itself.
func FileName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16]) + fileSuffix
}

// List calls fn for every entry of the catalog, in key order (bytewise),
// in the caller's goroutine. It streams the rows (a read transaction of the
// catalog: writers go on meanwhile, and List sees the catalog as it was when
// it started) and opens no stream file. It stops at the first error fn
// returns and returns that error unchanged; it also stops with ctx.Err()
// when ctx is done. An empty or new store lists nothing. fn may keep the
// *Entry. A damaged catalog gives an *IndexError.
func (s *Store) List(ctx context.Context, fn func(*Entry) error) error {
	return s.query(ctx, fn, `ORDER BY key`)
}

// ListMatching is List for the entries whose key match accepts (a Go
// regular expression's MatchString, say: RE2, applied here rather than in
// SQL). match runs in the caller's goroutine, before fn.
func (s *Store) ListMatching(ctx context.Context, match func(key string) bool, fn func(*Entry) error) error {
	return s.query(ctx, func(e *Entry) error {
		if !match(e.Key) {
			return nil
		}
		return fn(e)
	}, `ORDER BY key`)
}

// Lookup finds the entries a user's reference names, by the rule of
// store.ResolveRef (a full key; else an invocation id, naming every stream
// of the invocation; else a build id, naming its tool streams; else a key
// prefix), in key order. The candidates are narrowed in the catalog, by
// its indexes (the keys the reference starts, by a range of the key index;
// the streams of that invocation id or build id), and the rule is applied to
// them. No match is an error wrapping store.ErrNotFound; a prefix of several
// builds' keys is a *store.AmbiguousRefError.
func (s *Store) Lookup(ctx context.Context, ref string) ([]*Entry, error) {
	if ref == "" {
		return nil, errors.New("store: empty stream reference")
	}
	var cands []*Entry
	add := func(e *Entry) error {
		cands = append(cands, e)
		return nil
	}
	var err error
	if end := prefixEnd(ref); end != nil {
		err = s.query(ctx, add, `WHERE (key >= ? AND key < ?) OR invocation_id = ? OR build_id = ? ORDER BY key`,
			[]byte(ref), end, []byte(ref), []byte(ref))
	} else {
		err = s.query(ctx, add, `WHERE key >= ? OR invocation_id = ? OR build_id = ? ORDER BY key`,
			[]byte(ref), []byte(ref), []byte(ref))
	}
	if err != nil {
		return nil, err
	}
	rc := make([]store.RefCandidate, len(cands))
	for i, e := range cands {
		rc[i] = e.Candidate()
	}
	sel, err := store.ResolveRef(ref, rc)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	out := make([]*Entry, len(sel))
	for i, j := range sel {
		out[i] = cands[j]
	}
	return out, nil
}

// Events reads the stream file of e and calls fn for each event, in order,
// in the caller's goroutine, with the stream (the same pointer every time)
// and the event (fresh each time; fn may keep both). It stops at the first
// error fn returns and returns it unchanged, and with ctx.Err() when ctx is
// done. A missing file gives an error wrapping store.ErrNotFound.
//
// What is read is checked against the file's checksums and its catalog
// entry (issue 13: a damaged stream was served as data): a file that is not
// a regular file, a record whose CRC-32C does not match (bess.ErrChecksum),
// a file that ends before the entry's Size, or whose first Size bytes hold
// another number of events than the entry's Events (a stream cut short or
// spliced), and, for a file of format version 1 (no checksums), first Size
// bytes whose SHA-256 is not the entry's Digest, each give a *CorruptError
// naming the file and the offset, after fn has seen the events before the
// damage (for a version 1 file, before the end of the Size bytes). A
// stream that bes serve is writing is read as far as it is synced: a
// record being written past the size the entry records ends it, without an
// error.
func (s *Store) Events(ctx context.Context, e *Entry, fn func(*bepfile.Stream, *bepfile.Event) error) error {
	rd, f, h, err := s.open(e)
	if err != nil {
		return err
	}
	defer f.Close()
	return eachSynced(ctx, rd, e, h, func(ev *bepfile.Event) error { return fn(rd.Stream(), ev) })
}

// Load reads the stream of e into memory, as a store.Stream that belongs to
// no Storage yet (add it with store.Storage.Add). Errors are those of Events.
func (s *Store) Load(ctx context.Context, e *Entry) (*store.Stream, error) {
	rd, f, h, err := s.open(e)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := store.NewStreamFromInfo(rd.Stream())
	err = eachSynced(ctx, rd, e, h, func(ev *bepfile.Event) error {
		out.Append(*ev)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// open opens e's stream file, never through a symbolic link (nor a named
// pipe's open waiting), checks that it is a regular file, and reads its
// header; a file shorter than e.Size is left for eachSynced to report. For
// a file of format version 1 (no checksums), h is fed the first e.Size
// bytes as they are read, for eachSynced to compare with e.Digest; nil for
// later versions.
func (s *Store) open(e *Entry) (rd *Reader, f *os.File, h hash.Hash, err error) {
	path, err := s.streamPath(e)
	if err != nil {
		return nil, nil, nil, err
	}
	f, err = os.OpenFile(path, os.O_RDONLY|noFollow|nonBlock, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, nil, fmt.Errorf("store: stream %q: file %s is missing (bes store check --repair): %w", e.Key, e.File, store.ErrNotFound)
		}
		if fi, lerr := os.Lstat(path); lerr == nil && !fi.Mode().IsRegular() {
			return nil, nil, nil, &CorruptError{File: path, Err: fmt.Errorf("not a regular file but %s (bes store check --repair)", fileType(fi.Mode()))}
		}
		return nil, nil, nil, fmt.Errorf("store: %w", err)
	}
	fail := func(err error) (*Reader, *os.File, hash.Hash, error) {
		f.Close()
		return nil, nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(fmt.Errorf("store: %w", err))
	}
	if !fi.Mode().IsRegular() {
		return fail(&CorruptError{File: path, Err: fmt.Errorf("not a regular file but %s (bes store check --repair)", fileType(fi.Mode()))})
	}
	// The file as it is now: bes serve may be appending to it. A file
	// shorter than the entry says is read as far as it goes (the events
	// before the cut are seen), and eachSynced reports the cut.
	size := fi.Size()
	var src io.Reader = io.NewSectionReader(f, 0, size)
	var head [len(magic) + 1]byte
	if n, _ := f.ReadAt(head[:], 0); n == len(head) && head[len(magic)] == bess.Version1 && size >= e.Size {
		h = sha256.New()
		src = io.MultiReader(io.TeeReader(io.NewSectionReader(f, 0, e.Size), h), io.NewSectionReader(f, e.Size, size-e.Size))
	}
	rd, err = NewReader(src, path, size)
	if err != nil {
		return fail(err)
	}
	if k := rd.Stream().Key; k != e.Key {
		return fail(&CorruptError{File: path, Err: fmt.Errorf("file holds stream %q, the catalog says %q (bes store check --repair)", k, e.Key)})
	}
	return rd, f, h, nil
}

// fileType names the type of a file that is not a regular file.
func fileType(m os.FileMode) string {
	switch {
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "a " + m.Type().String() + " file"
}

// each calls fn for each remaining event of rd, checking ctx before each.
func each(ctx context.Context, rd *Reader, fn func(*bepfile.Event) error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ev, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// eachSynced is each for the stream file of e, which bes serve may be
// appending to while it is read, checked against e: the first e.Size bytes
// must end on a record boundary and hold e.Events events (and, when h is
// not nil, have the SHA-256 e.Digest), else a *CorruptError. A record cut
// off by the end of the file that starts at or after e.Size, the size the
// catalog entry vouches for, is a write in progress rather than damage, and
// ends the events cleanly. The events before it are every event the server
// had synced when the file was opened.
func eachSynced(ctx context.Context, rd *Reader, e *Entry, h hash.Hash, fn func(*bepfile.Event) error) error {
	synced := e.Size
	var events int64
	vouched := false // the first e.Size bytes are read and checked
	vouch := func() error {
		vouched = true
		if events != e.Events {
			return &CorruptError{File: rd.Name(), Offset: synced, Err: fmt.Errorf("the first %d bytes hold %d events, the catalog entry says %d (bes store check --repair)", synced, events, e.Events)}
		}
		if h != nil {
			if d := hex.EncodeToString(h.Sum(nil)); d != e.Digest {
				return &CorruptError{File: rd.Name(), Err: fmt.Errorf("the first %d bytes have SHA-256 %s, the catalog entry says %s (bes store check --repair quarantines it)", synced, d, e.Digest)}
			}
		}
		return nil
	}
	if rd.Offset() == synced {
		if err := vouch(); err != nil {
			return err
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := rd.Offset()
		ev, err := rd.Next()
		if err == io.EOF {
			if !vouched && rd.EndOffset() >= 0 && rd.Offset() == synced {
				// The end record of a file written whole.
				return vouch()
			}
			if !vouched {
				return &CorruptError{File: rd.Name(), Offset: start, Err: fmt.Errorf("the file ends at %d, its catalog entry says %d bytes: %w", start, synced, io.ErrUnexpectedEOF)}
			}
			return nil
		}
		if err != nil {
			if vouched && start >= synced && torn(err) {
				return nil
			}
			return err
		}
		if !vouched {
			events++
			if end := rd.Offset(); end > synced {
				return &CorruptError{File: rd.Name(), Offset: start, Err: fmt.Errorf("the record at %d ends at %d, past the %d bytes of its catalog entry", start, end, synced)}
			}
		}
		if err := fn(ev); err != nil {
			return err
		}
		if !vouched && rd.Offset() == synced {
			if err := vouch(); err != nil {
				return err
			}
		}
	}
}

// streamPath returns the path of e's stream file, refusing names that are
// not stream file names (the catalog is a file a user could edit).
func (s *Store) streamPath(e *Entry) (string, error) {
	if !streamFileRE.MatchString(e.File) {
		return "", fmt.Errorf("store: stream %q: bad file name %q in the catalog (bes store check --repair)", e.Key, e.File)
	}
	return filepath.Join(s.dir, e.File), nil
}

// syncDir fsyncs the store directory so that renames in it are durable.
func (s *Store) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
