package catalogsql

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

// The history queries (store.HistoryReader, issue 15) run on the indexes
// of store/local's catalog migration 3 and store/postgres's migrations 3
// and 7: tests_label_start (label, start_sec, status, cached),
// targets_label_start (PostgreSQL: tests_label and targets_label, or the
// _long ones for a label over Dialect.LabelBytes),
// tests_failing (status, start_sec) WHERE status <> 'PASSED',
// invocations_commit and the tests' index on their invocation. Success is
// tested as a truth value (SQLite's integer, PostgreSQL's BOOLEAN), never
// compared with a number.

// LabelHistory returns the runs of label (store.HistoryReader.LabelHistory),
// read with q, which should be one read-only transaction. The runs come
// newest first from the index on (label, start_sec), read backwards and
// stopped after hq.Limit; the summary is an aggregate over the same index
// (covering: status and cached are in it). With hq.Match every run of the
// window is read, to filter by key.
func (d Dialect) LabelHistory(ctx context.Context, q Queryer, label string, hq store.HistoryQuery) (*store.LabelHistory, error) {
	h := &store.LabelHistory{Label: label, Runs: []store.LabelRun{}}
	cond, args := d.labelIs("label", label)
	var n int
	if err := q.QueryRowContext(ctx, d.Rebind(`SELECT count(*) FROM (SELECT 1 FROM tests WHERE `+cond+` LIMIT 1) AS one`), args...).Scan(&n); err != nil {
		return nil, err
	}
	h.Test = n > 0
	sm, err := d.sameOf(ctx, q)
	if err != nil {
		return nil, err
	}
	if err := d.labelRuns(ctx, q, h, hq, sm); err != nil {
		return nil, err
	}
	return h, nil
}

// labelRuns fills h.Runs and the summary, one run per invocation (sm).
func (d Dialect) labelRuns(ctx context.Context, q Queryer, h *store.LabelHistory, hq store.HistoryQuery, sm same) error {
	table, cols := "targets", `t.kind, '', t.success, t.abort_reason, 0, 0, 0, 0, 0, 0, ''`
	if h.Test {
		table, cols = "tests", `'', t.configuration, 0, t.status, t.attempts, t.shards, t.total_runs, t.runs, t.cached, t.duration_ns, t.failed_log`
	}
	lcond, args := d.labelIs("t.label", h.Label)
	cond, wargs := window("t.start_sec", hq.Since)
	base := `SELECT i.key, i.invocation_id, i.start_sec, i.start_nsec, i.commit_id, i.branch, ` + cols + `
		FROM ` + table + ` t JOIN invocations i ON ` + d.join("i", "t") + ` WHERE ` + lcond + cond + sm.not("i."+d.Ref)
	args = append(args, wargs...)
	var rk [3]int64 // the rank of the row's stream, in the query of Match
	scan := func(rows *sql.Rows) (store.LabelRun, error) {
		r := store.LabelRun{Label: h.Label, Test: h.Test}
		var key, iid []byte
		var ss, sn sql.NullInt64
		var kind string
		var success bool
		var dur int64
		dest := []any{&key, &iid, &ss, &sn, &r.Commit, &r.Branch, &kind, &r.Configuration, &success, &r.Status,
			&r.Attempts, &r.Shards, &r.TotalRuns, &r.Runs, &r.Cached, &dur, &r.FailedLog}
		if hq.Match != nil {
			dest = append(dest, &rk[0], &rk[1], &rk[2])
		}
		err := rows.Scan(dest...)
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
	if hq.Match != nil {
		// Every run of the streams Match keeps, one invocation's
		// represented by the greatest of its streams that Match keeps.
		rows, err := q.QueryContext(ctx, d.Rebind(`SELECT i.key, i.invocation_id, i.start_sec, i.start_nsec, i.commit_id, i.branch, `+cols+`,
			`+rankCols("s")+` FROM `+table+` t JOIN invocations i ON `+d.join("i", "t")+` JOIN streams s ON `+d.join("s", "i")+`
			WHERE `+lcond+cond), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		type ranked struct {
			rank [3]int64
			key  string
		}
		best := map[string]ranked{} // by invocation id
		for rows.Next() {
			r, err := scan(rows)
			if err != nil {
				return err
			}
			if !hq.Match(r.Key) {
				continue
			}
			h.Runs = append(h.Runs, r)
			b, ok := best[r.InvocationID]
			if c := (ranked{rk, r.Key}); !ok || cmp.Or(slices.Compare(c.rank[:], b.rank[:]), strings.Compare(c.key, b.key)) > 0 {
				best[r.InvocationID] = c
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		h.Runs = slices.DeleteFunc(h.Runs, func(r store.LabelRun) bool { return best[r.InvocationID].key != r.Key })
		for _, r := range h.Runs {
			count(h, r)
		}
		slices.SortFunc(h.Runs, newer)
		if hq.Limit > 0 && len(h.Runs) > hq.Limit {
			h.Runs = h.Runs[:hq.Limit]
		}
		return nil
	}
	// Newest first by the second (the index's order, read backwards and
	// stopped by LIMIT), the runs of a known start only: an index in
	// ascending order read backwards gives NULLs first, so PostgreSQL
	// would sort every run of the label for NULLS LAST. The rows of the
	// last second are then read whole, so that the order within a second
	// (by nanosecond, then key) is exact; the runs whose start is unknown
	// (rare: streams without BuildStarted) are read whole after them.
	lim := ""
	if hq.Limit > 0 {
		lim = fmt.Sprintf(" LIMIT %d", hq.Limit)
	}
	read := func(query string, args ...any) error {
		rows, err := q.QueryContext(ctx, d.Rebind(query), args...)
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
	if err := read(base+` AND t.start_sec IS NOT NULL ORDER BY t.start_sec DESC`+lim, args...); err != nil {
		return err
	}
	if hq.Since.IsZero() && (hq.Limit == 0 || len(h.Runs) < hq.Limit) {
		if err := read(base+` AND t.start_sec IS NULL`, args...); err != nil {
			return err
		}
	}
	if hq.Limit > 0 && len(h.Runs) >= hq.Limit && !h.Runs[hq.Limit-1].Start.IsZero() {
		last := h.Runs[hq.Limit-1].Start.Unix()
		i := slices.IndexFunc(h.Runs, func(r store.LabelRun) bool { return r.Start.Unix() == last })
		h.Runs = h.Runs[:i]
		if err := read(base+` AND t.start_sec = ?`, append(args, last)...); err != nil {
			return err
		}
	}
	slices.SortFunc(h.Runs, newer)
	if hq.Limit > 0 && len(h.Runs) > hq.Limit {
		h.Runs = h.Runs[:hq.Limit]
	}
	return d.labelSummary(ctx, q, h, hq.Since, sm)
}

// count adds r to h's summary.
func count(h *store.LabelHistory, r store.LabelRun) {
	h.Total++
	failed := false
	switch {
	case r.Status == "PASSED" || r.Status == "BUILT" || r.CachedPass():
		h.Passed++
	case r.Status == "FLAKY":
		h.Flaky++
	case !h.Test || slices.Contains(store.FailingStatuses, r.Status):
		h.Failed++
		failed = true
	}
	if r.CachedPass() {
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

// CachedPass is the SQL condition, on a tests row's status and cached,
// of a run whose result a cache served and that passed
// (store.CachedPass): PASSED or FLAKY with total_num_cached > 0.
const CachedPass = `(cached > 0 AND status IN ('PASSED', 'FLAKY'))`

// labelSummary counts the runs of h.Label in the window, from the index:
// those of every stream, less those of the shadowed streams (sm), which
// are few.
func (d Dialect) labelSummary(ctx context.Context, q Queryer, h *store.LabelHistory, since time.Time, sm same) error {
	lcond, args := d.labelIs("label", h.Label)
	cond, wargs := window("start_sec", since)
	args = append(args, wargs...)
	var query string
	if h.Test {
		query = `SELECT count(*),
			COALESCE(sum(CASE WHEN status = 'PASSED' OR ` + CachedPass + ` THEN 1 ELSE 0 END), 0),
			COALESCE(sum(CASE WHEN status = 'FLAKY' AND cached = 0 THEN 1 ELSE 0 END), 0),
			COALESCE(sum(CASE WHEN status IN (` + FailingIn + `) THEN 1 ELSE 0 END), 0),
			COALESCE(sum(CASE WHEN ` + CachedPass + ` THEN 1 ELSE 0 END), 0),
			min(CASE WHEN status IN (` + FailingIn + `) THEN start_sec END),
			max(CASE WHEN status IN (` + FailingIn + `) THEN start_sec END)
			FROM %s` + lcond + cond
	} else {
		query = `SELECT count(*),
			COALESCE(sum(CASE WHEN success THEN 1 ELSE 0 END), 0), 0,
			COALESCE(sum(CASE WHEN success THEN 0 ELSE 1 END), 0), 0,
			min(CASE WHEN success THEN NULL ELSE start_sec END),
			max(CASE WHEN success THEN NULL ELSE start_sec END)
			FROM %s` + lcond + cond
	}
	table := "targets"
	if h.Test {
		table = "tests"
	}
	var first, last sql.NullInt64
	if err := q.QueryRowContext(ctx, d.Rebind(fmt.Sprintf(query, table+` WHERE `)), args...).Scan(&h.Total, &h.Passed, &h.Flaky, &h.Failed, &h.Cached, &first, &last); err != nil {
		return err
	}
	if sm.any {
		var o store.LabelHistory
		var ofirst, olast sql.NullInt64
		if err := q.QueryRowContext(ctx, d.Rebind(fmt.Sprintf(query, sm.from(table))), args...).Scan(&o.Total, &o.Passed, &o.Flaky, &o.Failed, &o.Cached, &ofirst, &olast); err != nil {
			return err
		}
		h.Total, h.Passed, h.Flaky, h.Failed, h.Cached = h.Total-o.Total, h.Passed-o.Passed, h.Flaky-o.Flaky, h.Failed-o.Failed, h.Cached-o.Cached
		if o.Failed > 0 { // the failures of the representatives only
			failed := `status IN (` + FailingIn + `)`
			if !h.Test {
				failed = `NOT success`
			}
			if err := q.QueryRowContext(ctx, d.Rebind(`SELECT min(start_sec), max(start_sec) FROM `+table+` WHERE `+lcond+cond+
				` AND `+failed+sm.not(d.Ref)), args...).Scan(&first, &last); err != nil {
				return err
			}
		}
	}
	// The index holds seconds: the failures' own start times to the
	// nanosecond are those of their streams.
	var err error
	if h.FirstFailure, err = d.failureStart(ctx, q, h, first, "min", sm); err != nil {
		return err
	}
	h.LastFailure, err = d.failureStart(ctx, q, h, last, "max", sm)
	return err
}

// failureStart returns the exact start of the earliest (agg "min") or
// latest ("max") failed run of h.Label in the second sec.
func (d Dialect) failureStart(ctx context.Context, q Queryer, h *store.LabelHistory, sec sql.NullInt64, agg string, sm same) (time.Time, error) {
	if !sec.Valid {
		return time.Time{}, nil
	}
	failed := `t.status IN (` + FailingIn + `)`
	table := "tests"
	if !h.Test {
		failed, table = "NOT t.success", "targets"
	}
	lcond, args := d.labelIs("t.label", h.Label)
	var nsec sql.NullInt64
	err := q.QueryRowContext(ctx, d.Rebind(`SELECT `+agg+`(i.start_nsec) FROM `+table+` t JOIN invocations i ON `+d.join("i", "t")+`
		WHERE `+lcond+` AND t.start_sec = ? AND `+failed+sm.not("i."+d.Ref)), append(args, sec.Int64)...).Scan(&nsec)
	if err != nil {
		return time.Time{}, err
	}
	return fromUnix(sec, nsec), nil
}

// PassedAtCommit is the subquery of FlakyTests that finds a passing run
// of the test t.label at the commit of the stream i: the streams of the
// commit first (CROSS JOIN keeps that order in SQLite; a commit has few),
// then the test in each by the tests' index on their invocation.
func (d Dialect) PassedAtCommit() string {
	return `SELECT 1 FROM invocations pi CROSS JOIN tests p
	WHERE pi.commit_id <> '' AND pi.commit_id = i.commit_id AND ` + d.join("pi", "p") + ` AND p.label = t.label
	AND p.status IN ('PASSED', 'FLAKY')`
}

// FlakyTests returns the tests that flaked in the window
// (store.HistoryReader.FlakyTests), read with q, which should be one
// read-only transaction. It reads only the runs that did not pass, by the
// partial index tests_failing, each with its stream; a failed run with a
// commit looks for a passing run of the test at that commit through
// invocations_commit. Then it counts the runs of the tests that flaked,
// by tests_label_start. A store whose tests always pass costs it nothing.
func (d Dialect) FlakyTests(ctx context.Context, q Queryer, since time.Time, minRuns int) ([]store.FlakyTest, error) {
	sm, err := d.sameOf(ctx, q)
	if err != nil {
		return nil, err
	}
	cond, args := window("t.start_sec", since)
	rows, err := q.QueryContext(ctx, d.Rebind(`SELECT t.label, i.key, i.invocation_id, i.start_sec, i.start_nsec, t.status, t.failed_log,
		CASE WHEN t.status = 'FLAKY' THEN (CASE WHEN t.cached = 0 THEN 1 ELSE 0 END)
		     WHEN i.commit_id <> '' AND EXISTS (`+d.PassedAtCommit()+`) THEN 1
		     ELSE 0 END
		FROM tests t JOIN invocations i ON `+d.join("i", "t")+`
		WHERE t.status <> 'PASSED' AND t.status IN ('FLAKY', `+FailingIn+`)`+cond+sm.not("i."+d.Ref)), args...)
	if err != nil {
		return nil, err
	}
	byLabel := map[string]*store.FlakyTest{}
	for rows.Next() {
		var label, status, log string
		var key, iid []byte
		var ss, sn sql.NullInt64
		var flake bool
		if err := rows.Scan(&label, &key, &iid, &ss, &sn, &status, &log, &flake); err != nil {
			rows.Close()
			return nil, err
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
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := []store.FlakyTest{}
	cond, wargs := window("start_sec", since)
	for _, f := range byLabel {
		if f.Flakes == 0 {
			continue
		}
		lcond, args := d.labelIs("label", f.Label)
		args = append(args, wargs...)
		if err := q.QueryRowContext(ctx, d.Rebind(`SELECT count(*) FROM tests WHERE `+lcond+cond), args...).Scan(&f.Runs); err != nil {
			return nil, err
		}
		if sm.any { // less the runs of the shadowed streams
			var n int
			if err := q.QueryRowContext(ctx, d.Rebind(`SELECT count(*) FROM `+sm.from("tests")+lcond+cond), args...).Scan(&n); err != nil {
				return nil, err
			}
			f.Runs -= n
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
// (store.HistoryReader.InvocationTimings), by the index on start_sec.
func (d Dialect) InvocationTimings(ctx context.Context, q Queryer, since time.Time) ([]store.InvocationTiming, error) {
	out := []store.InvocationTiming{}
	sm, err := d.sameOf(ctx, q)
	if err != nil {
		return nil, err
	}
	cond, args := window("start_sec", since)
	rows, err := q.QueryContext(ctx, d.Rebind(`SELECT key, invocation_id, command, verdict, start_sec, start_nsec, duration_ns,
		actions_created, actions_executed, critical_path_ns FROM invocations WHERE 1 = 1`+cond+sm.not(d.Ref)+`
		ORDER BY start_sec, start_nsec, key`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var t store.InvocationTiming
		var key, iid []byte
		var ss, sn sql.NullInt64
		var dur, cp int64
		if err := rows.Scan(&key, &iid, &t.Command, &t.Verdict, &ss, &sn, &dur, &t.ActionsCreated, &t.ActionsExecuted, &cp); err != nil {
			return nil, err
		}
		t.Key, t.InvocationID, t.Start, t.Duration, t.CriticalPath = string(key), string(iid), fromUnix(ss, sn), time.Duration(dur), time.Duration(cp)
		out = append(out, t)
	}
	return out, rows.Err()
}

// TestTimings returns the runs of the test label in the window, oldest
// first (store.HistoryReader.TestTimings), by tests_label_start. Start is
// the stream's, to the second.
func (d Dialect) TestTimings(ctx context.Context, q Queryer, label string, since time.Time) ([]store.TestTiming, error) {
	out := []store.TestTiming{}
	sm, err := d.sameOf(ctx, q)
	if err != nil {
		return nil, err
	}
	lcond, args := d.labelIs("t.label", label)
	cond, wargs := window("t.start_sec", since)
	rows, err := q.QueryContext(ctx, d.Rebind(`SELECT i.key, t.start_sec, t.status, t.cached, t.total_runs, t.duration_ns
		FROM tests t JOIN invocations i ON `+d.join("i", "t")+`
		WHERE `+lcond+cond+sm.not("i."+d.Ref)+` ORDER BY t.start_sec, i.key`), append(args, wargs...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var t store.TestTiming
		var key []byte
		var ss sql.NullInt64
		var cached, total int
		var dur int64
		if err := rows.Scan(&key, &ss, &t.Status, &cached, &total, &dur); err != nil {
			return nil, err
		}
		t.Key, t.Start, t.Duration = string(key), fromUnix(ss, sql.NullInt64{Valid: ss.Valid}), time.Duration(dur)
		t.Cached = cached > 0 && cached >= total
		out = append(out, t)
	}
	return out, rows.Err()
}

// DurationGrowth compares the tests' mean durations before and after
// split (store.HistoryReader.DurationGrowth): one aggregate over the
// tests of the window, grouped by label.
func (d Dialect) DurationGrowth(ctx context.Context, q Queryer, since, split time.Time, limit int) ([]store.TestGrowth, error) {
	out := []store.TestGrowth{}
	sm, err := d.sameOf(ctx, q)
	if err != nil {
		return nil, err
	}
	cond, args := window("start_sec", since)
	sp := split.Unix()
	rows, err := q.QueryContext(ctx, d.Rebind(`SELECT label,
		COALESCE(sum(CASE WHEN start_sec < ? THEN duration_ns ELSE 0 END), 0),
		COALESCE(sum(CASE WHEN start_sec < ? THEN 1 ELSE 0 END), 0),
		COALESCE(sum(CASE WHEN start_sec >= ? THEN duration_ns ELSE 0 END), 0),
		COALESCE(sum(CASE WHEN start_sec >= ? THEN 1 ELSE 0 END), 0)
		FROM tests WHERE cached = 0 AND start_sec IS NOT NULL`+cond+sm.not(d.Ref)+` GROUP BY label`),
		append([]any{sp, sp, sp, sp}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var g store.TestGrowth
		var before, after int64
		if err := rows.Scan(&g.Label, &before, &g.RunsBefore, &after, &g.RunsAfter); err != nil {
			return nil, err
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
		return nil, err
	}
	slices.SortFunc(out, func(a, b store.TestGrowth) int {
		return cmp.Or(cmp.Compare(b.After-b.Before, a.After-a.Before), strings.Compare(a.Label, b.Label))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
