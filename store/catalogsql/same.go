package catalogsql

import "context"

// One invocation, one run (issue 15). A Bazel invocation may be stored as
// several streams: the .bep file Bazel wrote and the BES capture of the
// same run have different keys and one invocation id. The history
// queries count each invocation once, by the facts of one of its streams,
// its representative: a complete stream before an incomplete one, then
// the one ingested last, then the greatest key. The others are shadowed:
// their rows are left out of every answer. The invocations of a catalog
// are found by id on the index invocations_invocation_id (migration 5 of
// store/local and store/postgres); those stored more than once are listed
// in same_invocations (migration 6), kept as facts are written.

// rank is the SQL row value by which the representative of an invocation
// is the greatest of its streams: the streams row s.
func rank(s string) string {
	return rankCols(s) + `, ` + s + `.key`
}

// rankCols is rank but the key: three integers.
func rankCols(s string) string {
	return `CASE WHEN ` + s + `.complete THEN 1 ELSE 0 END, COALESCE(` + s + `.ingested_sec, 0), COALESCE(` + s + `.ingested_nsec, 0)`
}

// Shadowed returns the query of the Ref column of the invocations rows
// whose invocation another stream represents (with facts, and a greater
// rank): usually none. It reads the invocations stored more than once
// from same_invocations, then ranks the streams of those only, found by
// id on invocations_invocation_id.
func (d Dialect) Shadowed() string {
	r := d.Ref
	return `SELECT i.` + r + ` FROM invocations i JOIN streams s ON s.` + r + ` = i.` + r + `
		WHERE i.invocation_id IN (SELECT invocation_id FROM same_invocations)
		AND EXISTS (SELECT 1 FROM invocations o JOIN streams os ON os.` + r + ` = o.` + r + `
			WHERE o.invocation_id = i.invocation_id AND o.` + r + ` <> i.` + r + `
			AND (` + rank("os") + `) > (` + rank("s") + `))`
}

// same is what one answer knows of the invocations stored more than once:
// whether any stream is shadowed (read once, at the answer's start).
type same struct {
	d   Dialect
	any bool
}

// sameOf reads whether the catalog has shadowed streams: first whether
// same_invocations (migration 6 of store/local and store/postgres, kept
// as facts are written) names any invocation, then, only if it does,
// whether a stream is shadowed.
func (d Dialect) sameOf(ctx context.Context, q Queryer) (same, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM same_invocations LIMIT 1) AS two`).Scan(&n); err != nil || n == 0 {
		return same{d: d}, err
	}
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM (`+d.Shadowed()+`) AS sh`).Scan(&n)
	return same{d: d, any: n > 0}, err
}

// not returns the condition (with a leading AND) that the row whose Ref
// column is col is not shadowed; "" when no stream is.
func (s same) not(col string) string {
	if !s.any {
		return ""
	}
	return ` AND ` + col + ` NOT IN (` + s.d.Shadowed() + `)`
}

// from returns the FROM clause of the rows of table whose streams are
// shadowed, the table aliased t: the shadowed streams first (few), then
// their rows by the table's index on Ref.
func (s same) from(table string) string {
	return `(` + s.d.Shadowed() + `) sh CROSS JOIN ` + table + ` t WHERE t.` + s.d.Ref + ` = sh.` + s.d.Ref + ` AND `
}
