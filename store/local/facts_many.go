package local

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/bes-cli/bes/store"
)

var _ store.FactsLister = (*Store)(nil)

// manyFactsPerKey is how many keys ManyFacts reads one by one (through
// the indexes on key); beyond it, it reads the facts tables whole, in key
// order, once each.
var manyFactsPerKey = 64

// ManyFacts returns the facts of the streams with keys, in their order
// (store.FactsLister): what Facts returns for each, read in one read
// transaction. For more than a few keys the invocations, tests, targets
// and streams tables are each read once, in key order (the rows of other
// keys are skipped). As Facts, it gives an error for a stream file that is
// missing or shorter than its entry (streamThere). A stream whose facts the catalog lacks, or holds from before
// catalog version 4, gets them from its events, read after the
// transaction, as Facts does. A key not stored is an error wrapping
// store.ErrNotFound.
func (s *Store) ManyFacts(ctx context.Context, keys []string) ([]*store.Facts, error) {
	if len(keys) <= manyFactsPerKey {
		out := make([]*store.Facts, len(keys))
		for i, k := range keys {
			f, err := s.Facts(ctx, k)
			if err != nil {
				return nil, err
			}
			out[i] = f
		}
		return out, nil
	}
	db, err := s.catalog(ctx, false)
	if err != nil {
		return nil, err
	}
	if db == nil {
		return nil, fmt.Errorf("store: %s: %w", ShortKey(keys[0]), store.ErrNotFound)
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	defer tx.Rollback()
	got := make(map[string]*store.Facts, len(keys))
	for _, k := range keys {
		got[k] = nil
	}
	if err := scanManyFacts(ctx, tx, got); err != nil {
		return nil, s.readErr(ctx, err)
	}
	// Every key's entry: those the catalog has no (whole) facts of get
	// them from their events; the others' stream files must be there.
	entries := make(map[string]*Entry, len(keys))
	err = eachEntryTx(ctx, tx, func(e *Entry) error {
		if _, ok := got[e.Key]; ok {
			entries[e.Key] = e
		}
		return nil
	})
	if err != nil {
		return nil, s.readErr(ctx, err)
	}
	var lacking []*Entry
	for _, k := range keys {
		e := entries[k]
		switch {
		case e == nil:
			return nil, fmt.Errorf("store: %s: %w", ShortKey(k), store.ErrNotFound)
		case got[k] == nil:
			lacking = append(lacking, e)
		default:
			if err := s.streamThere(e); err != nil {
				return nil, err
			}
		}
	}
	tx.Rollback()
	for _, e := range lacking {
		f, err := s.streamFacts(ctx, e)
		if err != nil {
			return nil, err
		}
		got[e.Key] = f
	}
	out := make([]*store.Facts, len(keys))
	for i, k := range keys {
		out[i] = got[k]
	}
	return out, nil
}

// scanManyFacts fills got, whose keys are those wanted, with the facts of
// the catalog, reading each facts table once in key order: the columns
// readFactsTx and readHistoryFactsTx read. A key whose facts predate
// catalog version 4 is left nil.
func scanManyFacts(ctx context.Context, tx *sql.Tx, got map[string]*store.Facts) error {
	rows, err := tx.QueryContext(ctx, `SELECT key, invocation_id, command, patterns, result, exit_code, has_exit_code,
		verdict, start_sec, start_nsec, duration_ns, user, host, commit_id, branch, failures, damaged,
		actions_created, actions_executed, critical_path_ns FROM invocations ORDER BY key`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var key, iid []byte
		var pats string
		var ss, sn, failures sql.NullInt64
		var damaged sql.NullBool
		var dur, cp int64
		f := &store.Facts{Targets: []store.TargetFacts{}, Tests: []store.TestFacts{}}
		if err := rows.Scan(&key, &iid, &f.Command, &pats, &f.Result, &f.ExitCode, &f.HasExitCode, &f.Verdict, &ss, &sn, &dur,
			&f.User, &f.Host, &f.Commit, &f.Branch, &failures, &damaged, &f.ActionsCreated, &f.ActionsExecuted, &cp); err != nil {
			rows.Close()
			return err
		}
		if _, ok := got[string(key)]; !ok || !failures.Valid || !damaged.Valid {
			continue
		}
		f.Key, f.InvocationID, f.Start, f.Duration = string(key), string(iid), fromUnix(ss, sn), time.Duration(dur)
		f.Failures, f.Damaged, f.CriticalPath = int(failures.Int64), damaged.Bool, time.Duration(cp)
		if err := json.Unmarshal([]byte(pats), &f.Patterns); err != nil {
			rows.Close()
			return fmt.Errorf("invocations.patterns of %s: %w", ShortKey(f.Key), err)
		}
		got[f.Key] = f
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}

	incomplete := map[string]bool{}
	rows, err = tx.QueryContext(ctx, `SELECT key, label, configuration, status, attempts, shards, runs, total_runs,
		cached, duration_ns, did_not_report, kind, size, abort_reason, logs, failed_log FROM tests ORDER BY key, label, configuration`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var key []byte
		var t store.TestFacts
		var d int64
		var kind, size, reason, logs sql.NullString
		if err := rows.Scan(&key, &t.Label, &t.Configuration, &t.Status, &t.Attempts, &t.Shards, &t.Runs,
			&t.TotalRuns, &t.Cached, &d, &t.DidNotReport, &kind, &size, &reason, &logs, &t.FailedLog); err != nil {
			rows.Close()
			return err
		}
		f := got[string(key)]
		if f == nil {
			continue
		}
		if !logs.Valid {
			incomplete[f.Key] = true // written before migration 4
			continue
		}
		t.Duration = time.Duration(d)
		t.Kind, t.Size, t.AbortReason = kind.String, size.String, reason.String
		if err := json.Unmarshal([]byte(logs.String), &t.Logs); err != nil {
			rows.Close()
			return fmt.Errorf("tests.logs of %s: %w", ShortKey(f.Key), err)
		}
		f.Tests = append(f.Tests, t)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for k := range incomplete {
		got[k] = nil
	}

	rows, err = tx.QueryContext(ctx, `SELECT key, label, kind, success, abort_reason FROM targets ORDER BY key, label`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var key []byte
		var t store.TargetFacts
		if err := rows.Scan(&key, &t.Label, &t.Kind, &t.Success, &t.AbortReason); err != nil {
			return err
		}
		if f := got[string(key)]; f != nil {
			f.Targets = append(f.Targets, t)
		}
	}
	return rows.Err()
}
