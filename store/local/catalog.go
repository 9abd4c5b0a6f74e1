package local

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The catalog is a SQLite database, catalog.db, in WAL mode, through the
// pure-Go driver modernc.org/sqlite (no cgo). It holds one row per stream
// (table streams, with the fields of Entry) and the schema version (table
// schema_version). SQLite does the locking: any number of readers, in this
// process or others, and one writer at a time; a writer waits for another
// (busy timeout, then again until its context is done). Every change is a
// transaction, durable when it commits (synchronous=FULL).
const (
	catalogName = "catalog.db"
	// legacyIndexName is the index of bes before the catalog: NDJSON, one
	// Entry per line after a header line. Open imports it and renames it
	// aside with migratedSuffix.
	legacyIndexName   = "index.ndjson"
	legacyIndexHeader = `{"bes_index":1}`
	migratedSuffix    = ".migrated"

	// busyTimeout is how long SQLite itself waits for another writer
	// before the store's own loop (which watches the context) tries again.
	busyTimeout = 2 * time.Second
)

// migrations are the catalog's schema, one step per version: the catalog
// at version v has had migrations[:v] applied, each in its own transaction
// with the update of schema_version. New versions are appended, never
// edited.
var migrations = []string{
	// 1: the streams. key, build_id and invocation_id are BLOBs, so that
	// they hold the bytes of the ids exactly (a StreamId may carry strings
	// that are not UTF-8) and sort bytewise, as keys always have. Times
	// are Unix seconds and nanoseconds, NULL for none.
	`CREATE TABLE streams (
		key           BLOB    NOT NULL UNIQUE,
		build_id      BLOB    NOT NULL,
		invocation_id BLOB    NOT NULL,
		component     INTEGER NOT NULL,
		events        INTEGER NOT NULL,
		complete      INTEGER NOT NULL,
		command       TEXT    NOT NULL,
		result        TEXT    NOT NULL,
		exit_code     INTEGER NOT NULL,
		has_exit_code INTEGER NOT NULL,
		start_sec     INTEGER, start_nsec    INTEGER,
		finish_sec    INTEGER, finish_nsec   INTEGER,
		file          TEXT    NOT NULL,
		size          INTEGER NOT NULL,
		digest        TEXT    NOT NULL,
		source        TEXT    NOT NULL,
		format        TEXT    NOT NULL,
		ingested_sec  INTEGER, ingested_nsec INTEGER
	);
	CREATE INDEX streams_invocation_id ON streams(invocation_id);
	CREATE INDEX streams_build_id ON streams(build_id);
	CREATE TABLE legacy_index (imported INTEGER NOT NULL);`,
	// 2: the facts of each stream's invocation (store.Facts; facts.go),
	// written with the stream's entry and deleted with it. start_sec is
	// repeated in targets and tests for the history of a label.
	factsSchema,
	// 3: what the history queries need (issue 15; history.go): metrics
	// and a failed attempt's log among the facts, and their indexes.
	historySchema,
	// 4: what bes tests and bes failures show without reading the stream
	// (facts.go).
	viewFactsSchema,
	// 5: the invocations by id (issue 15, history.go): an invocation
	// stored as several streams (a .bep and its BES capture) is one run.
	sameInvocationSchema,
	// 6: the invocation ids stored more than once, kept at write time
	// (history.go).
	sameInvocationsSchema,
	// 7: nothing here: store/postgres's version 7 indexes its labels
	// whole, as migration 3 already does here (history.go).
	`SELECT 1;`,
}

// IndexError reports a catalog that cannot be read (a damaged catalog.db),
// or, for the legacy index, a line of it: the file, the 1-based line (0 for
// the catalog), and the cause. `bes store check --repair` rebuilds the
// catalog from the stream files (Store.Repair). Test for it with errors.As.
type IndexError struct {
	File string
	Line int
	Err  error
}

func (e *IndexError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: corrupt store index (bes store check --repair rebuilds it): %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: corrupt store catalog (bes store check --repair rebuilds it): %v", e.File, e.Err)
}

func (e *IndexError) Unwrap() error { return e.Err }

// sqliteCode returns the primary SQLite result code of err, or 0.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return 0
}

func isBusy(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
}

// isCorrupt reports an error that means the catalog file is damaged.
func isCorrupt(err error) bool {
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CORRUPT || c == sqlite3.SQLITE_NOTADB
}

// catalogDSN returns the driver's name for the catalog in dir: a file: URI
// (so that no character of the path is taken for a parameter) with the
// connection's settings.
func catalogDSN(dir string) string {
	path := filepath.Join(dir, catalogName)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(path))
	return "file:" + esc + "?_txlock=immediate" +
		fmt.Sprintf("&_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()) +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=foreign_keys(1)"
}

// catalog returns the store's catalog, opening it (and migrating it) the
// first time. With create false, a store without a catalog (and without a
// legacy index to migrate) gives nil, nil: a reader of such a store finds
// nothing, and creates nothing. A damaged catalog gives an *IndexError.
func (s *Store) catalog(ctx context.Context, create bool) (*sql.DB, error) {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db != nil {
		return s.db, nil
	}
	if !create {
		_, err1 := os.Lstat(filepath.Join(s.dir, catalogName))
		_, err2 := os.Lstat(filepath.Join(s.dir, legacyIndexName))
		if errors.Is(err1, os.ErrNotExist) && errors.Is(err2, os.ErrNotExist) {
			return nil, nil
		}
	}
	db, err := s.openCatalog(ctx)
	if err != nil {
		return nil, err
	}
	s.db = db
	return db, nil
}

// openCatalog opens catalog.db, creating it, brings its schema up to date,
// and imports the legacy index if there is one.
func (s *Store) openCatalog(ctx context.Context) (*sql.DB, error) {
	if err := s.shareLock(ctx); err != nil {
		return nil, err
	}
	// Made here, owner-only, so that SQLite gives its write-ahead log and
	// shared-memory file the same mode, and never through a symbolic link.
	path := filepath.Join(s.dir, catalogName)
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|noFollow, 0o600); err != nil {
		s.unlockShared()
		return nil, fmt.Errorf("store: %w", err)
	} else {
		f.Close()
	}
	db, err := sql.Open("sqlite", catalogDSN(s.dir))
	if err != nil {
		s.unlockShared()
		return nil, fmt.Errorf("store: %w", err)
	}
	db.SetMaxIdleConns(2)
	db.SetConnMaxIdleTime(time.Minute)
	if err := s.migrate(ctx, db); err != nil {
		db.Close()
		s.unlockShared()
		if isCorrupt(err) {
			return nil, &IndexError{File: filepath.Join(s.dir, catalogName), Err: err}
		}
		return nil, err
	}
	return db, nil
}

// migrate applies the migrations the catalog lacks, each in a write
// transaction, then imports the legacy index if one is there.
func (s *Store) migrate(ctx context.Context, db *sql.DB) error {
	// The common case, read only: a catalog up to date and nothing to
	// import. (A reader never waits for a writer here.)
	var v int
	err := db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	if err == nil && v == len(migrations) && !fileExists(filepath.Join(s.dir, legacyIndexName)) {
		return nil
	}
	if isCorrupt(err) {
		return err
	}
	for {
		var done bool
		err := writeTx(ctx, db, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
				return err
			}
			var v int
			err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version(version) VALUES(0)`); err != nil {
					return err
				}
			case err != nil:
				return err
			}
			if v > len(migrations) {
				return fmt.Errorf("store: the catalog %s has schema version %d, written by a newer bes; this bes knows versions up to %d", filepath.Join(s.dir, catalogName), v, len(migrations))
			}
			if v == len(migrations) {
				done = true
				return nil
			}
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return fmt.Errorf("store: catalog migration to version %d: %w", v+1, err)
			}
			_, err = tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v+1)
			return err
		})
		if err != nil {
			return err
		}
		if done {
			break
		}
	}
	return s.importLegacy(ctx, db)
}

// importLegacy imports index.ndjson, the index of bes before the catalog,
// into the catalog in one transaction, then renames it aside as
// index.ndjson.migrated (it is never deleted). The transaction records the
// import, so that a crash between the commit and the rename only leaves
// the rename to do. Lines that cannot be read, and entries whose ids exceed
// the store's limits (see CheckStreamID), are left out: their stream files
// are then not indexed, which `bes store check` reports and --repair fixes.
func (s *Store) importLegacy(ctx context.Context, db *sql.DB) error {
	path := filepath.Join(s.dir, legacyIndexName)
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow|nonBlock, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	err = writeTx(ctx, db, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM legacy_index`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil // imported before a crash: only the rename is left
		}
		br := bufio.NewReaderSize(f, 64<<10)
		for line := 1; ; line++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			b, err := br.ReadBytes('\n')
			if len(b) > 0 && line > 1 {
				e := &Entry{}
				if json.Unmarshal(bytes.TrimSuffix(b, []byte("\n")), e) == nil && e.Key != "" &&
					checkIDs(e.Key, e.BuildID, e.InvocationID) == nil {
					if err := putEntryTx(ctx, tx, e); err != nil {
						return err
					}
					if err := s.putStreamFactsTx(ctx, tx, e); err != nil {
						return err
					}
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("store: read %s: %w", path, err)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO legacy_index(imported) VALUES(1)`)
		return err
	})
	if err != nil {
		return err
	}
	f.Close()
	aside := path + migratedSuffix
	for n := 1; fileExists(aside); n++ {
		aside = fmt.Sprintf("%s%s.%d", path, migratedSuffix, n)
	}
	if err := os.Rename(path, aside); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return s.syncDir()
}

// write runs fn in a write transaction of the catalog (BEGIN IMMEDIATE:
// the one writer of the store, across processes), committing if fn returns
// nil. It waits for other writers as long as ctx allows.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	db, err := s.catalog(ctx, true)
	if err != nil {
		return err
	}
	// This Store's writers queue here rather than in SQLite's busy loop.
	s.mu.Lock()
	defer s.mu.Unlock()
	return writeTx(ctx, db, fn)
}

// writeTx runs fn in a write transaction of db, waiting while another
// writer holds the catalog.
func writeTx(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	wait := time.Millisecond
	for {
		tx, err := db.BeginTx(ctx, nil)
		if err == nil {
			if err := fn(tx); err != nil {
				tx.Rollback()
				return err
			}
			// fn has run (and may have renamed files): its transaction is
			// not tried again.
			return catalogErr(tx.Commit())
		} else if !isBusy(err) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return catalogErr(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// catalogErr wraps a database error for the caller.
func catalogErr(err error) error {
	if err == nil {
		return nil
	}
	var ie *IndexError
	if errors.As(err, &ie) || strings.HasPrefix(err.Error(), "store: ") || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("store: catalog: %w", err)
}

// entryColumns are the columns of an entry, in the order of scanEntry and
// putEntryTx.
const entryColumns = `key, build_id, invocation_id, component, events, complete, command, result,
	exit_code, has_exit_code, start_sec, start_nsec, finish_sec, finish_nsec, file, size, digest,
	source, format, ingested_sec, ingested_nsec`

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// scanEntry reads one row of entryColumns.
func scanEntry(sc scanner) (*Entry, error) {
	e := &Entry{}
	var key, bid, iid []byte
	var t [6]sql.NullInt64
	err := sc.Scan(&key, &bid, &iid, &e.Component, &e.Events, &e.Complete, &e.Command, &e.Result,
		&e.ExitCode, &e.HasExitCode, &t[0], &t[1], &t[2], &t[3], &e.File, &e.Size, &e.Digest,
		&e.Source, &e.Format, &t[4], &t[5])
	if err != nil {
		return nil, err
	}
	e.Key, e.BuildID, e.InvocationID = string(key), string(bid), string(iid)
	e.Start, e.Finish, e.Ingested = fromUnix(t[0], t[1]), fromUnix(t[2], t[3]), fromUnix(t[4], t[5])
	return e, nil
}

func fromUnix(sec, nsec sql.NullInt64) time.Time {
	if !sec.Valid {
		return time.Time{}
	}
	return time.Unix(sec.Int64, nsec.Int64).UTC()
}

// unix returns t's Unix seconds and nanoseconds, NULL for the zero time.
func unix(t time.Time) (sec, nsec any) {
	if t.IsZero() {
		return nil, nil
	}
	return t.Unix(), int64(t.Nanosecond())
}

// putEntryTx stores e, in place of the entry of its key if there is one.
func putEntryTx(ctx context.Context, tx *sql.Tx, e *Entry) error {
	ss, sn := unix(e.Start)
	fs, fn := unix(e.Finish)
	is, in := unix(e.Ingested)
	_, err := tx.ExecContext(ctx, `INSERT INTO streams(`+entryColumns+`)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(key) DO UPDATE SET
			build_id=excluded.build_id, invocation_id=excluded.invocation_id, component=excluded.component,
			events=excluded.events, complete=excluded.complete, command=excluded.command, result=excluded.result,
			exit_code=excluded.exit_code, has_exit_code=excluded.has_exit_code,
			start_sec=excluded.start_sec, start_nsec=excluded.start_nsec,
			finish_sec=excluded.finish_sec, finish_nsec=excluded.finish_nsec,
			file=excluded.file, size=excluded.size, digest=excluded.digest,
			source=excluded.source, format=excluded.format,
			ingested_sec=excluded.ingested_sec, ingested_nsec=excluded.ingested_nsec`,
		[]byte(e.Key), []byte(e.BuildID), []byte(e.InvocationID), e.Component, e.Events, e.Complete,
		e.Command, e.Result, e.ExitCode, e.HasExitCode, ss, sn, fs, fn, e.File, e.Size, e.Digest,
		e.Source, e.Format, is, in)
	return err
}

// getEntryTx returns the entry of key, or nil.
func getEntryTx(ctx context.Context, tx *sql.Tx, key string) (*Entry, error) {
	e, err := scanEntry(tx.QueryRowContext(ctx, `SELECT `+entryColumns+` FROM streams WHERE key = ?`, []byte(key)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return e, err
}

// deleteEntryTx removes the entry of key, and its facts (facts.go).
func deleteEntryTx(ctx context.Context, tx *sql.Tx, key string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM streams WHERE key = ?`, []byte(key)); err != nil {
		return err
	}
	return deleteFactsTx(ctx, tx, key)
}

// query streams the entries a query selects to fn, in the caller's
// goroutine. A store without a catalog has none.
func (s *Store) query(ctx context.Context, fn func(*Entry) error, where string, args ...any) error {
	db, err := s.catalog(ctx, false)
	if err != nil {
		return err
	}
	if db == nil {
		return ctx.Err()
	}
	rows, err := db.QueryContext(ctx, `SELECT `+entryColumns+` FROM streams `+where, args...)
	if err != nil {
		return s.readErr(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := scanEntry(rows)
		if err != nil {
			return s.readErr(ctx, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return s.readErr(ctx, rows.Err())
}

// readErr wraps an error of a catalog read.
func (s *Store) readErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case isCorrupt(err):
		return &IndexError{File: filepath.Join(s.dir, catalogName), Err: err}
	}
	return catalogErr(err)
}

// prefixEnd returns the least byte string greater than every string that
// starts with p, or nil if there is none (p is all 0xff bytes).
func prefixEnd(p string) []byte {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return b[:i+1]
		}
	}
	return nil
}

// Close closes the store's catalog. A Store may be used again after Close:
// the catalog is opened again when needed.
func (s *Store) Close() error {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	s.unlockShared()
	return err
}
