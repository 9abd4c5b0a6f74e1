package catalogsql

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"time"

	"github.com/bes-cli/bes/store"
)

// Dialect is how a catalog's facts tables differ from SQLite's.
type Dialect struct {
	// Ref is the column by which rows of targets and tests name the row
	// of invocations they belong to: "key" (the stream's key, as a BLOB)
	// in store/local, "kid" (the SHA-256 of the key) in store/postgres.
	// invocations has both key and Ref.
	Ref string
	// Dollar says placeholders are numbered ($1, $2, …, PostgreSQL's)
	// rather than ?. Queries are written with ?; Rebind numbers them.
	Dollar bool
	// LabelPrefix, when not 0, says labels are indexed by their first
	// LabelPrefix characters (substring(label from 1 for LabelPrefix),
	// store/postgres: a B-tree entry holds at most 2,704 bytes): a
	// condition on a label then names that expression too, so that the
	// index serves it.
	LabelPrefix int
	// LabelBytes, when not 0, says labels of at most LabelBytes bytes are
	// indexed whole, in partial indexes WHERE octet_length(label) <=
	// LabelBytes, and only longer ones by their first LabelPrefix
	// characters (WHERE octet_length(label) > LabelBytes; store/postgres's
	// migration 7): a condition on a label then names the predicate of
	// the index that holds it, so that the planner may read that one
	// alone (an index-only scan). Bytes as the database counts them: the
	// same as Go's len in a UTF-8 database.
	LabelBytes int
}

// SQLite is store/local's catalog (store/local/facts.go, history.go).
var SQLite = Dialect{Ref: "key"}

// PostgreSQL is store/postgres's catalog (store/postgres/schema.go).
var PostgreSQL = Dialect{Ref: "kid", Dollar: true, LabelPrefix: 512, LabelBytes: 1024}

// Queryer is what the queries run on: a *sql.Tx or a *sql.DB.
type Queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Rebind returns query with d's placeholders: each ? becomes $1, $2, …
// in order when d.Dollar. The queries of this package have no ? in
// their literals.
func (d Dialect) Rebind(query string) string {
	if !d.Dollar || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// LabelIs returns the condition, with ? placeholders, that the column
// col is label, and its arguments: the condition the history queries put
// on a label, which names the predicate of the index that holds label
// (LabelBytes).
func (d Dialect) LabelIs(col, label string) (string, []any) { return d.labelIs(col, label) }

// labelIs returns the condition that col is label, and its arguments.
func (d Dialect) labelIs(col, label string) (string, []any) {
	if d.LabelPrefix == 0 {
		return col + " = ?", []any{label}
	}
	if d.LabelBytes > 0 && len(label) <= d.LabelBytes {
		return col + " = ? AND octet_length(" + col + ") <= " + strconv.Itoa(d.LabelBytes), []any{label}
	}
	long := ""
	if d.LabelBytes > 0 {
		long = " AND octet_length(" + col + ") > " + strconv.Itoa(d.LabelBytes)
	}
	n := strconv.Itoa(d.LabelPrefix)
	return "substring(" + col + " from 1 for " + n + ") = substring(CAST(? AS TEXT) from 1 for " + n + ") AND " + col + " = ?" + long, []any{label, label}
}

// join returns the condition that joins the invocation i to the row t
// of targets or tests.
func (d Dialect) join(i, t string) string {
	return i + "." + d.Ref + " = " + t + "." + d.Ref
}

// FailingIn is store.FailingStatuses as an SQL list of literals (the
// statuses are constants: no injection).
var FailingIn = sqlStrings(store.FailingStatuses)

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

// fromUnix returns the time of Unix seconds and nanoseconds, the zero
// time for NULL seconds.
func fromUnix(sec, nsec sql.NullInt64) time.Time {
	if !sec.Valid {
		return time.Time{}
	}
	return time.Unix(sec.Int64, nsec.Int64).UTC()
}
