// Package catalogsql holds the SQL that the catalogs of store/local
// (SQLite) and store/postgres (PostgreSQL) share, and the Go that scans
// its rows into store types: the history queries of store.HistoryReader
// (issue 15). Both catalogs have the same facts tables (invocations,
// targets, tests); a Dialect says the few ways they differ, so that one
// text of each query serves both (its author checked every query on
// SQLite and with PREPARE on PostgreSQL 15).
//
// The functions take a Queryer (a *sql.Tx or *sql.DB: store/postgres
// reaches its pool through pgx's database/sql adapter) and return the
// driver's errors unwrapped: each backend wraps them as its own catalog
// errors. They are safe for concurrent use as their Queryer is.
package catalogsql
