package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/local"
)

// pgText is s as PostgreSQL's TEXT holds it: bytes that are not UTF-8,
// and NUL, become U+FFFD.
func pgText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// putFacts replaces the facts of key with f (none when f is nil).
func putFacts(ctx context.Context, tx pgx.Tx, key string, f *store.Facts) error {
	k := kidOf(key)
	for _, q := range []string{`DELETE FROM invocations WHERE kid = $1`, `DELETE FROM targets WHERE kid = $1`, `DELETE FROM tests WHERE kid = $1`} {
		if _, err := tx.Exec(ctx, q, k); err != nil {
			return err
		}
	}
	if f == nil {
		return nil
	}
	pats := make([]string, len(f.Patterns))
	for i, p := range f.Patterns {
		pats[i] = pgText(p)
	}
	pj, err := json.Marshal(pats)
	if err != nil {
		return err
	}
	ss, sn := unix(f.Start)
	if _, err := tx.Exec(ctx, `INSERT INTO invocations(kid, key, invocation_id, command, patterns, result,
		exit_code, has_exit_code, verdict, start_sec, start_nsec, duration_ns, "user", host, commit_id, branch,
		actions_created, actions_executed, critical_path_ns, failures, damaged)
		VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21)`,
		k, []byte(key), []byte(f.InvocationID), pgText(f.Command), string(pj), pgText(f.Result), f.ExitCode, f.HasExitCode,
		pgText(f.Verdict), ss, sn, int64(f.Duration), pgText(f.User), pgText(f.Host), pgText(f.Commit), pgText(f.Branch),
		f.ActionsCreated, f.ActionsExecuted, int64(f.CriticalPath), int32(f.Failures), f.Damaged); err != nil {
		return err
	}
	if err := markSame(ctx, tx, f.InvocationID); err != nil {
		return err
	}
	if len(f.Targets) > 0 {
		rows := make([][]any, len(f.Targets))
		for i, t := range f.Targets {
			rows[i] = []any{k, pgText(t.Label), pgText(t.Kind), t.Success, pgText(t.AbortReason), ss}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"targets"}, []string{"kid", "label", "kind", "success", "abort_reason", "start_sec"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
	}
	if len(f.Tests) > 0 {
		rows := make([][]any, len(f.Tests))
		for i, t := range f.Tests {
			logs := make([]string, len(t.Logs))
			for j, l := range t.Logs {
				logs[j] = pgText(l)
			}
			lj, err := json.Marshal(logs)
			if err != nil {
				return err
			}
			rows[i] = []any{k, pgText(t.Label), pgText(t.Configuration), pgText(t.Status), int32(t.Attempts), int32(t.Shards),
				int32(t.Runs), int32(t.TotalRuns), int32(t.Cached), int64(t.Duration), t.DidNotReport, ss, pgText(t.FailedLog),
				pgText(t.Kind), pgText(t.Size), pgText(t.AbortReason), string(lj)}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"tests"}, []string{"kid", "label", "configuration", "status", "attempts", "shards",
			"runs", "total_runs", "cached", "duration_ns", "did_not_report", "start_sec", "failed_log", "kind", "size", "abort_reason", "logs"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
	}
	return nil
}

// putFactsIfAbsent stores f as the facts of key unless the catalog has
// facts for key already: for a stream committed again unchanged.
// markSame records invocationID in same_invocations (migration 6) when
// the facts of more than one stream have it, as the facts of one more have
// just been inserted in tx (store/catalogsql's one run per invocation). A
// lock on the id, held until tx ends, makes a concurrent writer of the
// same invocation wait: the second of two sees the row of the first.
func markSame(ctx context.Context, tx pgx.Tx, invocationID string) error {
	id := []byte(invocationID)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended(encode($1::bytea, 'hex'), 15))`, id); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO same_invocations(invocation_id) SELECT invocation_id FROM invocations
		WHERE invocation_id = $1 GROUP BY invocation_id HAVING count(*) > 1 ON CONFLICT DO NOTHING`, id)
	return err
}

func putFactsIfAbsent(ctx context.Context, tx pgx.Tx, key string, f *store.Facts) error {
	if f == nil {
		return nil
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM invocations WHERE kid = $1 AND damaged IS NOT NULL`, kidOf(key)).Scan(&n); err != nil || n > 0 {
		return err
	}
	return putFacts(ctx, tx, key, f)
}

// Facts returns the facts of the stream with key (store.FactsReader), from
// the catalog, in one read-only transaction; a stream that has none there
// (one an Appender has not closed yet) gets them from its events, read
// now. A stream without Bazel events has none: nil, nil. A key not stored
// is an error wrapping store.ErrNotFound. Strings are as pgText stored
// them.
func (s *Store) Facts(ctx context.Context, key string) (*store.Facts, error) {
	var f *store.Facts
	var exists bool
	err := catalogErr(ctx, pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM streams WHERE kid = $1)`, kidOf(key)).Scan(&exists); err != nil || !exists {
			return err
		}
		var err error
		f, err = readFacts(ctx, tx, key)
		return err
	}))
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("store: %s: %w", local.ShortKey(key), store.ErrNotFound)
	}
	if f != nil {
		return f, nil
	}
	var fb *store.FactsBuilder
	err = s.read(ctx, key, func(st *bepfile.Stream, ev *bepfile.Event) error {
		if fb == nil {
			fb = store.NewFactsBuilder(st)
		}
		fb.Add(ev)
		return nil
	})
	if err != nil || fb == nil {
		return nil, err
	}
	return fb.Facts(), nil
}

// readFacts reads the facts of key, nil if the catalog has none.
func readFacts(ctx context.Context, tx pgx.Tx, key string) (*store.Facts, error) {
	k := kidOf(key)
	f := &store.Facts{Key: key, Targets: []store.TargetFacts{}, Tests: []store.TestFacts{}}
	var iid []byte
	var pats string
	var ss, sn *int64
	var dur, cp int64
	var failures *int32
	var damaged *bool
	err := tx.QueryRow(ctx, `SELECT invocation_id, command, patterns, result, exit_code, has_exit_code,
		verdict, start_sec, start_nsec, duration_ns, "user", host, commit_id, branch,
		actions_created, actions_executed, critical_path_ns, failures, damaged FROM invocations WHERE kid = $1`, k).
		Scan(&iid, &f.Command, &pats, &f.Result, &f.ExitCode, &f.HasExitCode, &f.Verdict, &ss, &sn, &dur,
			&f.User, &f.Host, &f.Commit, &f.Branch, &f.ActionsCreated, &f.ActionsExecuted, &cp, &failures, &damaged)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if failures == nil || damaged == nil {
		return nil, nil // written before version 4: as none
	}
	f.Failures, f.Damaged = int(*failures), *damaged
	f.InvocationID, f.Start, f.Duration, f.CriticalPath = string(iid), fromUnix(ss, sn), time.Duration(dur), time.Duration(cp)
	if err := json.Unmarshal([]byte(pats), &f.Patterns); err != nil {
		return nil, fmt.Errorf("invocations.patterns of %s: %w", local.ShortKey(key), err)
	}
	rows, err := tx.Query(ctx, `SELECT label, kind, success, abort_reason FROM targets WHERE kid = $1 ORDER BY label COLLATE "C"`, k)
	if err != nil {
		return nil, err
	}
	var t store.TargetFacts
	if _, err := pgx.ForEachRow(rows, []any{&t.Label, &t.Kind, &t.Success, &t.AbortReason}, func() error {
		f.Targets = append(f.Targets, t)
		return nil
	}); err != nil {
		return nil, err
	}
	rows, err = tx.Query(ctx, `SELECT label, configuration, status, attempts, shards, runs, total_runs,
		cached, duration_ns, did_not_report, failed_log, kind, size, abort_reason, logs
		FROM tests WHERE kid = $1 ORDER BY label COLLATE "C", configuration COLLATE "C"`, k)
	if err != nil {
		return nil, err
	}
	var tt store.TestFacts
	var d int64
	var a, sh, r, tr, c int32
	var kind, size, reason, logs *string
	old := false
	if _, err := pgx.ForEachRow(rows, []any{&tt.Label, &tt.Configuration, &tt.Status, &a, &sh, &r, &tr, &c, &d, &tt.DidNotReport,
		&tt.FailedLog, &kind, &size, &reason, &logs}, func() error {
		if logs == nil {
			old = true
			return nil
		}
		t := tt
		t.Attempts, t.Shards, t.Runs, t.TotalRuns, t.Cached = int(a), int(sh), int(r), int(tr), int(c)
		t.Duration = time.Duration(d)
		t.Kind, t.Size, t.AbortReason = deref(kind), deref(size), deref(reason)
		if err := json.Unmarshal([]byte(*logs), &t.Logs); err != nil {
			return fmt.Errorf("tests.logs of %s: %w", local.ShortKey(key), err)
		}
		f.Tests = append(f.Tests, t)
		return nil
	}); err != nil {
		return nil, err
	}
	if old {
		return nil, nil // written before version 4: as none
	}
	return f, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
