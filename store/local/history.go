package local

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bes-cli/bes/store"
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

// putHistoryFactsTx writes what migration 3 added of f, the facts of key
// that putFactsTx has just inserted.
func putHistoryFactsTx(ctx context.Context, tx *sql.Tx, key string, f *store.Facts) error {
	if f == nil {
		return nil
	}
	k := []byte(key)
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

// failingIn is FailingStatuses as an SQL list of literals (the statuses
// are constants: no injection).
var failingIn = sqlStrings(store.FailingStatuses)

// sqlStrings returns ss as SQL string literals separated by commas.
func sqlStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return strings.Join(q, ", ")
}

// window returns the SQL condition on col for since (none for the zero
// time) and its arguments.
func window(col string, since time.Time) (string, []any) {
	if since.IsZero() {
		return "", nil
	}
	return " AND " + col + " >= ?", []any{since.Unix()}
}

// readDB returns the catalog for a history query, nil for a store without
// one.
func (s *Store) readDB(ctx context.Context) (*sql.DB, error) {
	return s.catalog(ctx, false)
}

// The queries are standard SQL that PostgreSQL takes as well (with its
// placeholders): success is tested as a truth value (SQLite's integer,
// PostgreSQL's BOOLEAN), never compared with a number.

// LabelHistory returns the runs of label (store.HistoryReader). The runs
// come newest first from the index on (label, start_sec), which SQLite
// walks backwards and stops after q.Limit; the summary is an aggregate
// over the same index (covering: status and cached are in it), so that
// neither reads the label's other rows. With q.Match every run of the
// window is read, to filter by key.
func (s *Store) LabelHistory(ctx context.Context, label string, q store.HistoryQuery) (*store.LabelHistory, error) {
	h := &store.LabelHistory{Label: label, Runs: []store.LabelRun{}}
	db, err := s.readDB(ctx)
	if err != nil || db == nil {
		return h, err
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM tests WHERE label = ? LIMIT 1) AS one`, label).Scan(&n); err != nil {
		return nil, s.readErr(ctx, err)
	}
	h.Test = n > 0
	if err := s.labelRuns(ctx, tx, h, q); err != nil {
		return nil, s.readErr(ctx, err)
	}
	return h, nil
}

// labelRuns fills h.Runs and the summary.
func (s *Store) labelRuns(ctx context.Context, tx *sql.Tx, h *store.LabelHistory, q store.HistoryQuery) error {
	table, cols := "targets", `t.kind, '', t.success, t.abort_reason, 0, 0, 0, 0, 0, 0, ''`
	if h.Test {
		table, cols = "tests", `'', t.configuration, 0, t.status, t.attempts, t.shards, t.total_runs, t.runs, t.cached, t.duration_ns, t.failed_log`
	}
	cond, args := window("t.start_sec", q.Since)
	base := `SELECT t.key, i.invocation_id, i.start_sec, i.start_nsec, i.commit_id, i.branch, ` + cols + `
		FROM ` + table + ` t JOIN invocations i ON i.key = t.key WHERE t.label = ?` + cond
	args = append([]any{h.Label}, args...)
	scan := func(rows *sql.Rows) (store.LabelRun, error) {
		r := store.LabelRun{Label: h.Label, Test: h.Test}
		var key, iid []byte
		var ss, sn sql.NullInt64
		var kind string
		var success bool
		var dur int64
		err := rows.Scan(&key, &iid, &ss, &sn, &r.Commit, &r.Branch, &kind, &r.Configuration, &success, &r.Status,
			&r.Attempts, &r.Shards, &r.TotalRuns, &r.Runs, &r.Cached, &dur, &r.FailedLog)
		r.Key, r.InvocationID, r.Start, r.Duration = string(key), string(iid), fromUnix(ss, sn), time.Duration(dur)
		if !h.Test {
			r.AbortReason = r.Status
			switch {
			case success:
				r.Status = "BUILT"
			case r.AbortReason != "":
				r.Status = "ABORTED"
			default:
				r.Status = "FAILED"
			}
		}
		return r, err
	}
	newer := func(a, b store.LabelRun) int { // newest first, then key
		return cmp.Or(b.Start.Compare(a.Start), strings.Compare(a.Key, b.Key))
	}
	if q.Match != nil {
		rows, err := tx.QueryContext(ctx, base, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scan(rows)
			if err != nil {
				return err
			}
			if q.Match(r.Key) {
				h.Runs = append(h.Runs, r)
				count(h, r)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		slices.SortFunc(h.Runs, newer)
		if q.Limit > 0 && len(h.Runs) > q.Limit {
			h.Runs = h.Runs[:q.Limit]
		}
		return nil
	}
	// Newest first by the second (the index's order, read backwards;
	// NULLS LAST is SQLite's order, and PostgreSQL's when said);
	// the rows of the last second are then read whole, so that the order
	// within a second (by nanosecond, then key) is exact.
	lim := ""
	if q.Limit > 0 {
		lim = fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	read := func(query string, args ...any) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scan(rows)
			if err != nil {
				return err
			}
			h.Runs = append(h.Runs, r)
		}
		return rows.Err()
	}
	if err := read(base+` ORDER BY t.start_sec DESC NULLS LAST`+lim, args...); err != nil {
		return err
	}
	if q.Limit > 0 && len(h.Runs) == q.Limit && !h.Runs[q.Limit-1].Start.IsZero() {
		last := h.Runs[q.Limit-1].Start.Unix()
		i := slices.IndexFunc(h.Runs, func(r store.LabelRun) bool { return r.Start.Unix() == last })
		h.Runs = h.Runs[:i]
		if err := read(base+` AND t.start_sec = ?`, append(args, last)...); err != nil {
			return err
		}
	}
	slices.SortFunc(h.Runs, newer)
	if q.Limit > 0 && len(h.Runs) > q.Limit {
		h.Runs = h.Runs[:q.Limit]
	}
	return s.labelSummary(ctx, tx, h, q.Since)
}

// count adds r to h's summary.
func count(h *store.LabelHistory, r store.LabelRun) {
	h.Total++
	failed := false
	switch {
	case r.Status == "PASSED" || r.Status == "BUILT":
		h.Passed++
	case r.Status == "FLAKY":
		h.Flaky++
	case !h.Test || slices.Contains(store.FailingStatuses, r.Status):
		h.Failed++
		failed = true
	}
	if r.Cached > 0 {
		h.Cached++
	}
	if failed && !r.Start.IsZero() {
		if h.FirstFailure.IsZero() || r.Start.Before(h.FirstFailure) {
			h.FirstFailure = r.Start
		}
		if r.Start.After(h.LastFailure) {
			h.LastFailure = r.Start
		}
	}
}

// labelSummary counts the runs of h.Label in the window, from the index.
func (s *Store) labelSummary(ctx context.Context, tx *sql.Tx, h *store.LabelHistory, since time.Time) error {
	cond, args := window("start_sec", since)
	args = append([]any{h.Label}, args...)
	var query string
	if h.Test {
		query = `SELECT count(*),
			COALESCE(sum(CASE WHEN status = 'PASSED' THEN 1 ELSE 0 END), 0),
			COALESCE(sum(CASE WHEN status = 'FLAKY' THEN 1 ELSE 0 END), 0),
			COALESCE(sum(CASE WHEN status IN (` + failingIn + `) THEN 1 ELSE 0 END), 0),
			COALESCE(sum(CASE WHEN cached > 0 THEN 1 ELSE 0 END), 0),
			min(CASE WHEN status IN (` + failingIn + `) THEN start_sec END),
			max(CASE WHEN status IN (` + failingIn + `) THEN start_sec END)
			FROM tests WHERE label = ?` + cond
	} else {
		query = `SELECT count(*),
			COALESCE(sum(CASE WHEN success THEN 1 ELSE 0 END), 0), 0,
			COALESCE(sum(CASE WHEN success THEN 0 ELSE 1 END), 0), 0,
			min(CASE WHEN success THEN NULL ELSE start_sec END),
			max(CASE WHEN success THEN NULL ELSE start_sec END)
			FROM targets WHERE label = ?` + cond
	}
	var first, last sql.NullInt64
	if err := tx.QueryRowContext(ctx, query, args...).Scan(&h.Total, &h.Passed, &h.Flaky, &h.Failed, &h.Cached, &first, &last); err != nil {
		return err
	}
	// The index holds seconds: the failures' own start times to the
	// nanosecond are those of their streams.
	var err error
	if h.FirstFailure, err = s.failureStart(ctx, tx, h, first, "min"); err != nil {
		return err
	}
	h.LastFailure, err = s.failureStart(ctx, tx, h, last, "max")
	return err
}

// failureStart returns the exact start of the earliest (agg "min") or
// latest ("max") failed run of h.Label in the second sec.
func (s *Store) failureStart(ctx context.Context, tx *sql.Tx, h *store.LabelHistory, sec sql.NullInt64, agg string) (time.Time, error) {
	if !sec.Valid {
		return time.Time{}, nil
	}
	failed := `t.status IN (` + failingIn + `)`
	table := "tests"
	if !h.Test {
		failed, table = "NOT t.success", "targets"
	}
	var nsec sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT `+agg+`(i.start_nsec) FROM `+table+` t JOIN invocations i ON i.key = t.key
		WHERE t.label = ? AND t.start_sec = ? AND `+failed, h.Label, sec.Int64).Scan(&nsec)
	if err != nil {
		return time.Time{}, err
	}
	return fromUnix(sec, nsec), nil
}

// passedAtCommit is the subquery of FlakyTests that finds a passing run
// of the test t.label at the commit of the stream i: the streams of the
// commit first (CROSS JOIN keeps that order in SQLite; a commit has few),
// then the test in each by tests_key (key, label).
const passedAtCommit = `SELECT 1 FROM invocations pi CROSS JOIN tests p
	WHERE pi.commit_id <> '' AND pi.commit_id = i.commit_id AND p.key = pi.key AND p.label = t.label
	AND p.status IN ('PASSED', 'FLAKY')`

// FlakyTests returns the tests that flaked in the window
// (store.HistoryReader). It reads only the runs that did not pass, by
// the partial index tests_failing, each with its stream; a failed run
// with a commit looks for a passing run of the test at that commit through
// invocations_commit. Then it counts the runs of the tests that flaked,
// by tests_label_start. A store whose tests always pass costs it nothing.
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
	cond, args := window("t.start_sec", since)
	rows, err := tx.QueryContext(ctx, `SELECT t.label, t.key, i.invocation_id, i.start_sec, i.start_nsec, t.status, t.failed_log,
		CASE WHEN t.status = 'FLAKY' THEN (CASE WHEN t.cached = 0 THEN 1 ELSE 0 END)
		     WHEN i.commit_id <> '' AND EXISTS (`+passedAtCommit+`) THEN 1
		     ELSE 0 END
		FROM tests t JOIN invocations i ON i.key = t.key
		WHERE t.status <> 'PASSED' AND t.status IN ('FLAKY', `+failingIn+`)`+cond, args...)
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	byLabel := map[string]*store.FlakyTest{}
	for rows.Next() {
		var label, status, log string
		var key, iid []byte
		var ss, sn sql.NullInt64
		var flake bool
		if err := rows.Scan(&label, &key, &iid, &ss, &sn, &status, &log, &flake); err != nil {
			rows.Close()
			return nil, s.readErr(ctx, err)
		}
		f := byLabel[label]
		if f == nil {
			f = &store.FlakyTest{Label: label}
			byLabel[label] = f
		}
		if status != "FLAKY" {
			f.Failed++
		}
		if !flake {
			continue
		}
		f.Flakes++
		if status == "FLAKY" {
			f.FlakyStatus++
		}
		start := fromUnix(ss, sn)
		if f.LastKey == "" || start.After(f.Last) || start.Equal(f.Last) && string(key) > f.LastKey {
			f.LastKey, f.LastInvocationID, f.Last, f.LastLog = string(key), string(iid), start, log
		}
	}
	if err := rows.Close(); err != nil {
		return nil, s.readErr(ctx, err)
	}
	out := []store.FlakyTest{}
	cond, args = window("start_sec", since)
	for _, f := range byLabel {
		if f.Flakes == 0 {
			continue
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM tests WHERE label = ?`+cond, append([]any{f.Label}, args...)...).Scan(&f.Runs); err != nil {
			return nil, s.readErr(ctx, err)
		}
		if f.Runs >= minRuns {
			out = append(out, *f)
		}
	}
	slices.SortFunc(out, func(a, b store.FlakyTest) int {
		return cmp.Or(cmp.Compare(b.Flakes, a.Flakes), cmp.Compare(b.Rate(), a.Rate()), strings.Compare(a.Label, b.Label))
	})
	return out, nil
}

// InvocationTimings returns the invocations of the window, oldest first
// (store.HistoryReader), by the index on start_sec.
func (s *Store) InvocationTimings(ctx context.Context, since time.Time) ([]store.InvocationTiming, error) {
	out := []store.InvocationTiming{}
	db, err := s.readDB(ctx)
	if err != nil || db == nil {
		return out, err
	}
	cond, args := window("start_sec", since)
	rows, err := db.QueryContext(ctx, `SELECT key, invocation_id, command, verdict, start_sec, start_nsec, duration_ns,
		actions_created, actions_executed, critical_path_ns FROM invocations WHERE 1 = 1`+cond+`
		ORDER BY start_sec, start_nsec, key`, args...)
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var t store.InvocationTiming
		var key, iid []byte
		var ss, sn sql.NullInt64
		var dur, cp int64
		if err := rows.Scan(&key, &iid, &t.Command, &t.Verdict, &ss, &sn, &dur, &t.ActionsCreated, &t.ActionsExecuted, &cp); err != nil {
			return nil, s.readErr(ctx, err)
		}
		t.Key, t.InvocationID, t.Start, t.Duration, t.CriticalPath = string(key), string(iid), fromUnix(ss, sn), time.Duration(dur), time.Duration(cp)
		out = append(out, t)
	}
	return out, s.readErr(ctx, rows.Err())
}

// TestTimings returns the runs of the test label in the window, oldest
// first (store.HistoryReader), by tests_label_start. Start is the
// stream's, to the second.
func (s *Store) TestTimings(ctx context.Context, label string, since time.Time) ([]store.TestTiming, error) {
	out := []store.TestTiming{}
	db, err := s.readDB(ctx)
	if err != nil || db == nil {
		return out, err
	}
	cond, args := window("start_sec", since)
	rows, err := db.QueryContext(ctx, `SELECT key, start_sec, status, cached, total_runs, duration_ns FROM tests
		WHERE label = ?`+cond+` ORDER BY start_sec, key`, append([]any{label}, args...)...)
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var t store.TestTiming
		var key []byte
		var ss sql.NullInt64
		var cached, total int
		var dur int64
		if err := rows.Scan(&key, &ss, &t.Status, &cached, &total, &dur); err != nil {
			return nil, s.readErr(ctx, err)
		}
		t.Key, t.Start, t.Duration = string(key), fromUnix(ss, sql.NullInt64{Valid: ss.Valid}), time.Duration(dur)
		t.Cached = cached > 0 && cached >= total
		out = append(out, t)
	}
	return out, s.readErr(ctx, rows.Err())
}

// DurationGrowth compares the tests' mean durations before and after
// split (store.HistoryReader): one aggregate over the tests of the
// window, grouped by label.
func (s *Store) DurationGrowth(ctx context.Context, since, split time.Time, limit int) ([]store.TestGrowth, error) {
	out := []store.TestGrowth{}
	db, err := s.readDB(ctx)
	if err != nil || db == nil {
		return out, err
	}
	cond, args := window("start_sec", since)
	sp := split.Unix()
	rows, err := db.QueryContext(ctx, `SELECT label,
		COALESCE(sum(CASE WHEN start_sec < ? THEN duration_ns ELSE 0 END), 0),
		COALESCE(sum(CASE WHEN start_sec < ? THEN 1 ELSE 0 END), 0),
		COALESCE(sum(CASE WHEN start_sec >= ? THEN duration_ns ELSE 0 END), 0),
		COALESCE(sum(CASE WHEN start_sec >= ? THEN 1 ELSE 0 END), 0)
		FROM tests WHERE cached = 0 AND start_sec IS NOT NULL`+cond+` GROUP BY label`,
		append([]any{sp, sp, sp, sp}, args...)...)
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var g store.TestGrowth
		var before, after int64
		if err := rows.Scan(&g.Label, &before, &g.RunsBefore, &after, &g.RunsAfter); err != nil {
			return nil, s.readErr(ctx, err)
		}
		if g.RunsBefore == 0 || g.RunsAfter == 0 {
			continue
		}
		g.Before, g.After = time.Duration(before/int64(g.RunsBefore)), time.Duration(after/int64(g.RunsAfter))
		if g.After > g.Before {
			out = append(out, g)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr(ctx, err)
	}
	slices.SortFunc(out, func(a, b store.TestGrowth) int {
		return cmp.Or(cmp.Compare(b.After-b.Before, a.After-a.Before), strings.Compare(a.Label, b.Label))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
