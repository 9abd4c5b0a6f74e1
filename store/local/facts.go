package local

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

var _ store.FactsReader = (*Store)(nil)

// factsSchema is migration 2: the facts of the streams' invocations
// (store.Facts), one row in invocations per stream with Bazel events, and
// its targets and tests. key is the stream's key, as in streams. Times are
// Unix seconds and nanoseconds, durations nanoseconds.
const factsSchema = `CREATE TABLE invocations (
		key           BLOB    NOT NULL PRIMARY KEY,
		invocation_id BLOB    NOT NULL,
		command       TEXT    NOT NULL,
		patterns      TEXT    NOT NULL, -- a JSON array of strings
		result        TEXT    NOT NULL,
		exit_code     INTEGER NOT NULL,
		has_exit_code INTEGER NOT NULL,
		verdict       TEXT    NOT NULL,
		start_sec     INTEGER, start_nsec INTEGER,
		duration_ns   INTEGER NOT NULL,
		user          TEXT    NOT NULL,
		host          TEXT    NOT NULL,
		commit_id     TEXT    NOT NULL,
		branch        TEXT    NOT NULL
	);
	CREATE INDEX invocations_start ON invocations(start_sec, start_nsec);
	CREATE TABLE targets (
		key           BLOB    NOT NULL,
		label         TEXT    NOT NULL,
		kind          TEXT    NOT NULL,
		success       INTEGER NOT NULL,
		abort_reason  TEXT    NOT NULL,
		start_sec     INTEGER
	);
	CREATE INDEX targets_key ON targets(key);
	CREATE INDEX targets_label_start ON targets(label, start_sec);
	CREATE TABLE tests (
		key            BLOB    NOT NULL,
		label          TEXT    NOT NULL,
		configuration  TEXT    NOT NULL,
		status         TEXT    NOT NULL,
		attempts       INTEGER NOT NULL,
		shards         INTEGER NOT NULL,
		runs           INTEGER NOT NULL,
		total_runs     INTEGER NOT NULL,
		cached         INTEGER NOT NULL,
		duration_ns    INTEGER NOT NULL,
		did_not_report INTEGER NOT NULL,
		start_sec      INTEGER
	);
	CREATE INDEX tests_key ON tests(key);
	CREATE INDEX tests_label_start ON tests(label, start_sec);`

// viewFactsSchema is migration 4: what bes tests and bes failures show of
// a stored invocation without reading its stream (store.Facts.Failures,
// Damaged; store.TestFacts.Kind, Size, AbortReason, Logs: a JSON array).
// The facts of streams stored before version 4 have NULL there: they read
// as no facts (the views then read the stream, bes store check says so
// and --repair writes them anew).
const viewFactsSchema = `ALTER TABLE invocations ADD COLUMN failures INTEGER;
	ALTER TABLE invocations ADD COLUMN damaged INTEGER;
	ALTER TABLE tests ADD COLUMN kind TEXT;
	ALTER TABLE tests ADD COLUMN size TEXT;
	ALTER TABLE tests ADD COLUMN abort_reason TEXT;
	ALTER TABLE tests ADD COLUMN logs TEXT;`

// putFactsTx replaces the facts of key with f (none when f is nil).
func putFactsTx(ctx context.Context, tx *sql.Tx, key string, f *store.Facts) error {
	if err := deleteFactsTx(ctx, tx, key); err != nil || f == nil {
		return err
	}
	pats, err := json.Marshal(f.Patterns)
	if err != nil {
		return err
	}
	ss, sn := unix(f.Start)
	k := []byte(key)
	if _, err := tx.ExecContext(ctx, `INSERT INTO invocations(key, invocation_id, command, patterns, result,
		exit_code, has_exit_code, verdict, start_sec, start_nsec, duration_ns, user, host, commit_id, branch,
		failures, damaged)
		VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		k, []byte(f.InvocationID), f.Command, string(pats), f.Result, f.ExitCode, f.HasExitCode, f.Verdict,
		ss, sn, int64(f.Duration), f.User, f.Host, f.Commit, f.Branch, f.Failures, f.Damaged); err != nil {
		return err
	}
	if len(f.Targets) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT INTO targets(key, label, kind, success, abort_reason, start_sec) VALUES(?,?,?,?,?,?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, t := range f.Targets {
			if _, err := st.ExecContext(ctx, k, t.Label, t.Kind, t.Success, t.AbortReason, ss); err != nil {
				return err
			}
		}
	}
	if len(f.Tests) > 0 {
		st, err := tx.PrepareContext(ctx, `INSERT INTO tests(key, label, configuration, status, attempts, shards,
			runs, total_runs, cached, duration_ns, did_not_report, start_sec, kind, size, abort_reason, logs)
			VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, t := range f.Tests {
			logs := t.Logs
			if logs == nil {
				logs = []string{}
			}
			lj, err := json.Marshal(logs)
			if err != nil {
				return err
			}
			if _, err := st.ExecContext(ctx, k, t.Label, t.Configuration, t.Status, t.Attempts, t.Shards,
				t.Runs, t.TotalRuns, t.Cached, int64(t.Duration), t.DidNotReport, ss, t.Kind, t.Size, t.AbortReason, string(lj)); err != nil {
				return err
			}
		}
	}
	return putHistoryFactsTx(ctx, tx, key, f)
}

// putFactsIfAbsentTx stores f as the facts of key unless the catalog has
// facts for key already: for a stream committed again unchanged.
func putFactsIfAbsentTx(ctx context.Context, tx *sql.Tx, key string, f *store.Facts) error {
	if f == nil {
		return nil
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM invocations WHERE key = ? AND damaged IS NOT NULL`, []byte(key)).Scan(&n); err != nil || n > 0 {
		return err
	}
	return putFactsTx(ctx, tx, key, f)
}

// deleteFactsTx removes the facts of key.
func deleteFactsTx(ctx context.Context, tx *sql.Tx, key string) error {
	for _, q := range []string{`DELETE FROM invocations WHERE key = ?`, `DELETE FROM targets WHERE key = ?`, `DELETE FROM tests WHERE key = ?`} {
		if _, err := tx.ExecContext(ctx, q, []byte(key)); err != nil {
			return err
		}
	}
	return nil
}

// Facts returns the facts of the stream with key (store.FactsReader), from
// the catalog, in one read transaction, once its stream file is seen to be
// there with at least the entry's size (streamThere). A stream that has none there (one
// stored by a bes before catalog version 2, one a killed server left open,
// one indexed again by Repair) gets them from its events, read now: Facts
// never writes the catalog. A stream without Bazel events has none: nil,
// nil. A key not stored is an error wrapping store.ErrNotFound.
func (s *Store) Facts(ctx context.Context, key string) (*store.Facts, error) {
	db, err := s.catalog(ctx, false)
	if err != nil {
		return nil, err
	}
	if db == nil {
		return nil, fmt.Errorf("store: %s: %w", ShortKey(key), store.ErrNotFound)
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	defer tx.Rollback()
	e, err := getEntryTx(ctx, tx, key)
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	if e == nil {
		return nil, fmt.Errorf("store: %s: %w", ShortKey(key), store.ErrNotFound)
	}
	f, err := readFactsTx(ctx, tx, key)
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	if f != nil {
		if err := s.streamThere(e); err != nil {
			return nil, err
		}
		return f, nil
	}
	tx.Rollback()
	return s.streamFacts(ctx, e)
}

// streamThere reports a stream file that is not there to hold what e
// says, as reading it would (Events): missing (an error wrapping
// store.ErrNotFound), or shorter than e.Size (a *CorruptError wrapping
// io.ErrUnexpectedEOF). Facts read from the catalog are then not served:
// a damaged store is an error, whatever a command reads of it (issue 13).
// It reads nothing of the file.
func (s *Store) streamThere(e *Entry) error {
	path, err := s.streamPath(e)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: stream %q: file %s is missing (bes store check --repair): %w", e.Key, e.File, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if fi.Size() < e.Size {
		return &CorruptError{File: path, Offset: fi.Size(), Err: fmt.Errorf("the file has %d bytes, the catalog %d: %w", fi.Size(), e.Size, io.ErrUnexpectedEOF)}
	}
	return nil
}

// streamFacts builds the facts of e's stream from its events, read now
// (every event the file holds, as Events reads them): nil for a stream
// without Bazel events.
func (s *Store) streamFacts(ctx context.Context, e *Entry) (*store.Facts, error) {
	var fb *store.FactsBuilder
	err := s.Events(ctx, e, func(st *bepfile.Stream, ev *bepfile.Event) error {
		if fb == nil {
			fb = store.NewFactsBuilder(st)
		}
		fb.Add(ev)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if fb == nil {
		return nil, nil
	}
	return fb.Facts(), nil
}

// putStreamFactsTx stores the facts of e's stream, built from its file,
// in tx: for the writers of entries that saw no events (the import of an
// index.ndjson store, Rebuild). A file that cannot be read leaves the
// stream without facts, which bes store check reports.
func (s *Store) putStreamFactsTx(ctx context.Context, tx *sql.Tx, e *Entry) error {
	f, err := s.streamFacts(ctx, e)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return nil
	}
	return putFactsTx(ctx, tx, e.Key, f)
}

// factsDiff describes how got, the facts the catalog holds, differ from
// want, those of the stream's events; "" if they do not (store.FactsDiff,
// which store/postgres's check shares).
func factsDiff(got, want *store.Facts) string { return store.FactsDiff(got, want) }

// queryer is what *sql.DB and *sql.Tx share.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// orphanFacts returns the keys, in order, of the facts rows whose stream
// the catalog does not list.
func orphanFacts(ctx context.Context, q queryer) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT key FROM invocations WHERE key NOT IN (SELECT key FROM streams)
		UNION SELECT key FROM targets WHERE key NOT IN (SELECT key FROM streams)
		UNION SELECT key FROM tests WHERE key NOT IN (SELECT key FROM streams) ORDER BY key`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []string
	for rows.Next() {
		var k []byte
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		keys = append(keys, string(k))
	}
	return keys, rows.Err()
}

// readFactsTx reads the facts of key, nil if the catalog has none.
func readFactsTx(ctx context.Context, tx *sql.Tx, key string) (*store.Facts, error) {
	k := []byte(key)
	f := &store.Facts{Key: key, Targets: []store.TargetFacts{}, Tests: []store.TestFacts{}}
	var iid []byte
	var pats string
	var ss, sn, failures sql.NullInt64
	var damaged sql.NullBool
	var dur int64
	err := tx.QueryRowContext(ctx, `SELECT invocation_id, command, patterns, result, exit_code, has_exit_code,
		verdict, start_sec, start_nsec, duration_ns, user, host, commit_id, branch, failures, damaged
		FROM invocations WHERE key = ?`, k).
		Scan(&iid, &f.Command, &pats, &f.Result, &f.ExitCode, &f.HasExitCode, &f.Verdict, &ss, &sn, &dur,
			&f.User, &f.Host, &f.Commit, &f.Branch, &failures, &damaged)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !failures.Valid || !damaged.Valid {
		return nil, nil // written before migration 4: incomplete
	}
	f.Failures, f.Damaged = int(failures.Int64), damaged.Bool
	f.InvocationID, f.Start, f.Duration = string(iid), fromUnix(ss, sn), time.Duration(dur)
	if err := json.Unmarshal([]byte(pats), &f.Patterns); err != nil {
		return nil, fmt.Errorf("invocations.patterns of %s: %w", ShortKey(key), err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT label, kind, success, abort_reason FROM targets WHERE key = ? ORDER BY label`, k)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var t store.TargetFacts
		if err := rows.Scan(&t.Label, &t.Kind, &t.Success, &t.AbortReason); err != nil {
			rows.Close()
			return nil, err
		}
		f.Targets = append(f.Targets, t)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	rows, err = tx.QueryContext(ctx, `SELECT label, configuration, status, attempts, shards, runs, total_runs,
		cached, duration_ns, did_not_report, kind, size, abort_reason, logs FROM tests WHERE key = ? ORDER BY label, configuration`, k)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var t store.TestFacts
		var d int64
		var kind, size, reason, logs sql.NullString
		if err := rows.Scan(&t.Label, &t.Configuration, &t.Status, &t.Attempts, &t.Shards, &t.Runs,
			&t.TotalRuns, &t.Cached, &d, &t.DidNotReport, &kind, &size, &reason, &logs); err != nil {
			return nil, err
		}
		if !logs.Valid {
			return nil, nil // written before migration 4
		}
		t.Duration = time.Duration(d)
		t.Kind, t.Size, t.AbortReason = kind.String, size.String, reason.String
		if err := json.Unmarshal([]byte(logs.String), &t.Logs); err != nil {
			return nil, fmt.Errorf("tests.logs of %s: %w", ShortKey(key), err)
		}
		f.Tests = append(f.Tests, t)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return f, readHistoryFactsTx(ctx, tx, f)
}
