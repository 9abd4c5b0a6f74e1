// Package postgres is the team store (issue 14): a store.Backend whose
// catalog is a PostgreSQL database and whose stream bodies are blobs in a
// bucket opened with gocloud.dev/blob (a directory, file:///path, or any
// S3-compatible server, s3://bucket/prefix?endpoint=…&region=…). Any number
// of processes on any number of machines (bes ingest, several bes serve
// replicas, readers) share one such store; store/storetest checks it.
//
// # Catalog
//
// The tables mirror store/local's SQLite catalog (catalog.go, facts.go)
// where SQL allows, with one set of numbered migrations applied at Open
// under an advisory lock (schema_version): streams holds one row per
// stream with the fields of store.Entry; invocations, targets and tests
// hold its store.Facts. What differs, and why:
//
//   - Strings that come from the input (ids, key, command, result, source,
//     format) are BYTEA, because PostgreSQL's TEXT holds neither NUL nor
//     bytes that are not UTF-8 and a StreamId may carry both; BYTEA sorts
//     bytewise, as keys always have. The facts' strings are TEXT, with
//     invalid UTF-8 and NUL replaced by U+FFFD (pgText).
//   - A B-tree entry is at most 2,704 bytes and a key up to 8 KiB (two ids
//     of store/local's 4 KiB limit): rows are identified by kid, the
//     SHA-256 of the key; key order comes from an index on the key's first
//     256 bytes (ties sorted by the full key), and build and invocation ids
//     have hash indexes.
//   - Each stream row names its body: gen, a random generation, and chunks,
//     the number of its rows in the chunks table.
//
// # Bodies
//
// A stream's body is the store/bess codec's stream file, cut into chunks:
// chunk 0 starts with the bess header, and the chunks, concatenated in
// order, are the file. Each chunk is one blob, written once and never
// changed, named streams/<32 hex digits of SHA-256(key)>/<gen>/<n>-<random>.bess
// (Entry.File is the streams/…/<gen> part), and one row of chunks (kid, n,
// blob, size, events). A stream committed whole (Writer.Commit) is one
// chunk. A live stream (Appender) gets one chunk per Sync: the blob is
// uploaded first (and, for file:// buckets, fsynced), then one transaction
// adds its row and brings the stream's entry up to date, on the condition
// that the row still has the gen and chunk count the Appender last wrote
// (compare-and-set). So what Sync acknowledged is durable in both the
// bucket and the catalog, the entry never lags its events, and two writers
// can never interleave chunks: the second one's condition fails. Close
// compacts the chunks into one blob (Appender.compact), so that a finished
// stream is read with one request. A process killed mid-stream leaves
// every acknowledged chunk; the next Appender of the stream, in any
// process, reads them, continues the bess encoder after the last one, and
// appends chunk n+1. bes serve (store/server) then acknowledges the events
// a client re-sends without storing them again, by their sequence numbers.
//
// Replacing or deleting a stream records its old blobs in the garbage
// table, in the same transaction; they are deleted GraceAfterDelete later
// (by this process or another), so that readers that had started reading
// them finish. A process killed between a blob's upload and the
// transaction that names it leaves a blob no row names: it is never read,
// and costs its bytes.
//
// # Locks
//
// An Appender holds its stream with a session-level advisory lock, taken
// on a connection of its own per Store (one connection for all of a
// Store's Appenders): a process that dies loses its connection, and
// PostgreSQL releases its locks at once (on a machine that vanishes, when
// TCP keepalives notice; set tcp_keepalives_idle on the server). Commits,
// deletes and OpenAppend serialise per stream with a transaction-level
// advisory lock, and commits and deletes refuse a stream whose appender
// lock is held (store.ErrStreamBusy). Lock ids are 64 bits of the SHA-256
// of the schema and the key.
//
// # Check and gc
//
// Check, Repair and GC (check.go) are store/local's, by its rules and
// with its types (store.CheckResult, store.GCOptions): every row's blobs
// read back whole, through their bess checksums, and agree with the row
// (sizes, digest, events, outcome) and its facts; Repair drops a row a
// blob of which is missing, quarantines a damaged body (its blobs copied
// under quarantine/, the row dropped), writes rows and facts anew from
// their bodies, each under the stream's lock and never for a stream an
// Appender holds. Blobs no row names (an upload killed before its
// transaction) are reported once older than DefaultOrphanGrace, an hour,
// so that an upload in progress never is, and GC deletes them then, with
// the garbage whose grace is over and the streams retention selects.
//
// # Questions across invocations
//
// The store answers bes history, flaky, trends and diff
// (store.HistoryReader, issue 15) with store/local's queries, shared in
// store/catalogsql in its PostgreSQL dialect, on the indexes of
// migration 3 (history.go); ManyFacts (store.FactsLister) reads the
// facts of many streams in one transaction.
//
// # Matching
//
// ListMatching pages through the catalog in key order and calls match, in
// Go, on each key: a regular expression keeps Go's RE2 semantics whatever
// PostgreSQL's regular expressions would do. Lookup narrows in SQL (the
// keys the reference starts, by the key index; the ids by their hash
// indexes) and applies store.ResolveRef to the candidates.
package postgres
