package local

import (
	"context"
	"database/sql"
	"time"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/catalogsql"
)

var _ store.HistoryReader = (*Store)(nil)

// historySchema is migration 3 (issue 15): what the history queries need
// beyond migration 2's facts, and the indexes they run on. Standard SQL
// that PostgreSQL also takes (partial indexes included).
//
//   - invocations: the build's metrics (store.Facts.ActionsCreated,
//     ActionsExecuted, CriticalPath), for bes trends; the commit, indexed
//     where known, for "failed at a commit at which it also passed".
//   - tests: a failed attempt's test.log (store.TestFacts.FailedLog), for
//     bes flaky. Streams stored before version 3 have "" and 0 here until
//     stored again.
//   - tests_key (key) becomes (key, label), to find a test in a stream;
//     tests_label_start (label, start_sec) becomes (label, start_sec,
//     status, cached), and targets_label_start (label, start_sec)
//     (label, start_sec, success), so that a label's summary is read from
//     the index alone; tests_failing holds only the runs that did not pass (a small
//     fraction), so that bes flaky never reads the passing ones.
const historySchema = `ALTER TABLE invocations ADD COLUMN actions_created INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE invocations ADD COLUMN actions_executed INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE invocations ADD COLUMN critical_path_ns INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE tests ADD COLUMN failed_log TEXT NOT NULL DEFAULT '';
	CREATE INDEX invocations_commit ON invocations(commit_id) WHERE commit_id <> '';
	DROP INDEX tests_label_start;
	CREATE INDEX tests_label_start ON tests(label, start_sec, status, cached);
	CREATE INDEX tests_failing ON tests(status, start_sec) WHERE status <> 'PASSED';
	DROP INDEX tests_key;
	CREATE INDEX tests_key ON tests(key, label);
	DROP INDEX targets_label_start;
	CREATE INDEX targets_label_start ON targets(label, start_sec, success);`

// sameInvocationSchema is migration 5 (issue 15): the invocations by
// their id, on which store/catalogsql finds the invocations stored as
// several streams (a run's .bep and its BES capture), to count each once.
const sameInvocationSchema = `CREATE INDEX invocations_invocation_id ON invocations(invocation_id);`

// sameInvocationsSchema is migration 6 (issue 15): the invocation ids
// that the facts of more than one stream have, kept as facts are written
// (putHistoryFactsTx; a stale id, whose other streams are gone, is
// harmless), so that a history query asks this small table whether any
// invocation is stored twice instead of reading the whole index of
// migration 5 (40 ms at 100,000 invocations).
const sameInvocationsSchema = `CREATE TABLE same_invocations (invocation_id BLOB NOT NULL PRIMARY KEY);
	INSERT INTO same_invocations SELECT invocation_id FROM invocations GROUP BY invocation_id HAVING count(*) > 1;`

// putHistoryFactsTx writes what migration 3 added of f, the facts of key
// that putFactsTx has just inserted.
func putHistoryFactsTx(ctx context.Context, tx *sql.Tx, key string, f *store.Facts) error {
	if f == nil {
		return nil
	}
	k := []byte(key)
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO same_invocations(invocation_id) SELECT invocation_id FROM invocations
		WHERE invocation_id = ? GROUP BY invocation_id HAVING count(*) > 1`, []byte(f.InvocationID)); err != nil {
		return err
	}
	if f.ActionsCreated != 0 || f.ActionsExecuted != 0 || f.CriticalPath != 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE invocations SET actions_created = ?, actions_executed = ?,
			critical_path_ns = ? WHERE key = ?`, f.ActionsCreated, f.ActionsExecuted, int64(f.CriticalPath), k); err != nil {
			return err
		}
	}
	for _, t := range f.Tests {
		if t.FailedLog == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, `UPDATE tests SET failed_log = ? WHERE key = ? AND label = ? AND configuration = ?`,
			t.FailedLog, k, t.Label, t.Configuration); err != nil {
			return err
		}
	}
	return nil
}

// readHistoryFactsTx reads into f, the facts of f.Key that readFactsTx has
// read, what migration 3 added.
func readHistoryFactsTx(ctx context.Context, tx *sql.Tx, f *store.Facts) error {
	k := []byte(f.Key)
	var cp int64
	if err := tx.QueryRowContext(ctx, `SELECT actions_created, actions_executed, critical_path_ns FROM invocations WHERE key = ?`, k).
		Scan(&f.ActionsCreated, &f.ActionsExecuted, &cp); err != nil {
		return err
	}
	f.CriticalPath = time.Duration(cp)
	rows, err := tx.QueryContext(ctx, `SELECT label, configuration, failed_log FROM tests WHERE key = ? AND failed_log <> ''`, k)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var label, conf, log string
		if err := rows.Scan(&label, &conf, &log); err != nil {
			return err
		}
		for i := range f.Tests {
			if f.Tests[i].Label == label && f.Tests[i].Configuration == conf {
				f.Tests[i].FailedLog = log
			}
		}
	}
	return rows.Err()
}

// failingIn and passedAtCommit are the shared queries' parts
// (store/catalogsql) as this catalog has them.
var (
	failingIn      = catalogsql.FailingIn
	passedAtCommit = catalogsql.SQLite.PassedAtCommit()
)

// readDB returns the catalog for a history query, nil for a store without
// one.
func (s *Store) readDB(ctx context.Context) (*sql.DB, error) {
	return s.catalog(ctx, false)
}

// The queries are store/catalogsql's, shared with store/postgres: standard
// SQL that PostgreSQL takes as well, on this catalog's indexes of
// migration 3 (see catalogsql.Dialect.LabelHistory and the others for
// the index each one reads).

// LabelHistory returns the runs of label (store.HistoryReader), in one
// read transaction: catalogsql.Dialect.LabelHistory.
func (s *Store) LabelHistory(ctx context.Context, label string, q store.HistoryQuery) (*store.LabelHistory, error) {
	db, err := s.readDB(ctx)
	if err != nil || db == nil {
		return &store.LabelHistory{Label: label, Runs: []store.LabelRun{}}, err
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	defer tx.Rollback()
	h, err := catalogsql.SQLite.LabelHistory(ctx, tx, label, q)
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	return h, nil
}

// FlakyTests returns the tests that flaked in the window
// (store.HistoryReader), in one read transaction:
// catalogsql.Dialect.FlakyTests. A store whose tests always pass costs it
// nothing.
func (s *Store) FlakyTests(ctx context.Context, since time.Time, minRuns int) ([]store.FlakyTest, error) {
	db, err := s.readDB(ctx)
	if err != nil || db == nil {
		return []store.FlakyTest{}, err
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	defer tx.Rollback()
	out, err := catalogsql.SQLite.FlakyTests(ctx, tx, since, minRuns)
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	return out, nil
}

// InvocationTimings returns the invocations of the window, oldest first
// (store.HistoryReader), by the index on start_sec.
func (s *Store) InvocationTimings(ctx context.Context, since time.Time) ([]store.InvocationTiming, error) {
	db, err := s.readDB(ctx)
	if err != nil || db == nil {
		return []store.InvocationTiming{}, err
	}
	out, err := catalogsql.SQLite.InvocationTimings(ctx, db, since)
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	return out, nil
}

// TestTimings returns the runs of the test label in the window, oldest
// first (store.HistoryReader), by tests_label_start. Start is the
// stream's, to the second.
func (s *Store) TestTimings(ctx context.Context, label string, since time.Time) ([]store.TestTiming, error) {
	db, err := s.readDB(ctx)
	if err != nil || db == nil {
		return []store.TestTiming{}, err
	}
	out, err := catalogsql.SQLite.TestTimings(ctx, db, label, since)
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	return out, nil
}

// DurationGrowth compares the tests' mean durations before and after
// split (store.HistoryReader): one aggregate over the tests of the
// window, grouped by label.
func (s *Store) DurationGrowth(ctx context.Context, since, split time.Time, limit int) ([]store.TestGrowth, error) {
	db, err := s.readDB(ctx)
	if err != nil || db == nil {
		return []store.TestGrowth{}, err
	}
	out, err := catalogsql.SQLite.DurationGrowth(ctx, db, since, split, limit)
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	return out, nil
}
