package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/catalogsql"
	"github.com/bes-cli/bes/store/local"
)

var (
	_ store.HistoryReader = (*Store)(nil)
	_ store.FactsLister   = (*Store)(nil)
)

// The history queries (store.HistoryReader, issue 15) are store/local's,
// shared in store/catalogsql and run here in its PostgreSQL dialect
// (catalogsql.PostgreSQL: $n placeholders, rows tied to their invocation
// by kid, labels matched through the index on their first 512
// characters), on the indexes of migration 3. They read the pool through
// pgx's database/sql adapter (stdlib.OpenDBFromPool), which borrows the
// pool's connections and keeps none of its own.

// historyTx runs fn in a read-only REPEATABLE READ transaction, so that
// the several queries of one answer see one state of the catalog.
func (s *Store) historyTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return catalogErr(ctx, err)
	}
	defer tx.Rollback()
	return catalogErr(ctx, fn(tx))
}

// LabelHistory returns the runs of label (store.HistoryReader), in one
// read-only transaction: catalogsql.Dialect.LabelHistory.
func (s *Store) LabelHistory(ctx context.Context, label string, q store.HistoryQuery) (*store.LabelHistory, error) {
	var h *store.LabelHistory
	err := s.historyTx(ctx, func(tx *sql.Tx) (err error) {
		h, err = catalogsql.PostgreSQL.LabelHistory(ctx, tx, label, q)
		return err
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// FlakyTests returns the tests that flaked in the window
// (store.HistoryReader), in one read-only transaction:
// catalogsql.Dialect.FlakyTests.
func (s *Store) FlakyTests(ctx context.Context, since time.Time, minRuns int) ([]store.FlakyTest, error) {
	var out []store.FlakyTest
	err := s.historyTx(ctx, func(tx *sql.Tx) (err error) {
		out, err = catalogsql.PostgreSQL.FlakyTests(ctx, tx, since, minRuns)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// InvocationTimings returns the invocations of the window, oldest first
// (store.HistoryReader), by the index on start_sec.
func (s *Store) InvocationTimings(ctx context.Context, since time.Time) ([]store.InvocationTiming, error) {
	var out []store.InvocationTiming
	err := s.historyTx(ctx, func(tx *sql.Tx) (err error) {
		out, err = catalogsql.PostgreSQL.InvocationTimings(ctx, tx, since)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// TestTimings returns the runs of the test label in the window, oldest
// first (store.HistoryReader), by tests_label (migration 7). Start is
// the stream's, to the second.
func (s *Store) TestTimings(ctx context.Context, label string, since time.Time) ([]store.TestTiming, error) {
	var out []store.TestTiming
	err := s.historyTx(ctx, func(tx *sql.Tx) (err error) {
		out, err = catalogsql.PostgreSQL.TestTimings(ctx, tx, label, since)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DurationGrowth compares the tests' mean durations before and after
// split (store.HistoryReader): one aggregate over the tests of the
// window, grouped by label.
func (s *Store) DurationGrowth(ctx context.Context, since, split time.Time, limit int) ([]store.TestGrowth, error) {
	var out []store.TestGrowth
	err := s.historyTx(ctx, func(tx *sql.Tx) (err error) {
		out, err = catalogsql.PostgreSQL.DurationGrowth(ctx, tx, since, split, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ManyFacts returns the facts of the streams with keys, in their order
// (store.FactsLister): what Facts returns for each. The catalog's facts
// of all keys are read in one read-only REPEATABLE READ transaction (each
// by its kid); a stream whose facts the catalog lacks (an Appender has
// not closed it, or they predate migration 4) gets them from its events,
// read afterwards by Facts. A key not stored is an error wrapping
// store.ErrNotFound.
func (s *Store) ManyFacts(ctx context.Context, keys []string) ([]*store.Facts, error) {
	out := make([]*store.Facts, len(keys))
	lacking := make([]bool, len(keys))
	err := catalogErr(ctx, pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		for i, k := range keys {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM streams WHERE kid = $1)`, kidOf(k)).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return fmt.Errorf("store: %s: %w", local.ShortKey(k), store.ErrNotFound)
			}
			f, err := readFacts(ctx, tx, k)
			if err != nil {
				return err
			}
			out[i], lacking[i] = f, f == nil
		}
		return nil
	}))
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		if lacking[i] {
			if out[i], err = s.Facts(ctx, k); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
