package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
	"github.com/bes-cli/bes/store/local"
)

// Store is the team store: a PostgreSQL catalog and a bucket of stream
// bodies (see the package doc). It implements store.Backend and
// store.FactsReader. A Store is safe for concurrent use, and any number of
// Stores, in any number of processes and machines, may share one catalog
// and bucket.
type Store struct {
	pool    *pgxpool.Pool
	blobs   *bucket
	schema  string // current_schema() of the catalog, part of every lock id
	display string
	now     func() time.Time
	grace   time.Duration
	// orphanGrace is how old a blob no row names must be for Check to
	// report it and GC to delete it (check.go).
	orphanGrace time.Duration

	mu        sync.Mutex
	held      map[string]bool // keys this Store's Appenders hold
	lockConn  *pgx.Conn       // the session of the appender locks; see appendLock
	lastSweep time.Time
}

var (
	_ store.Backend     = (*Store)(nil)
	_ store.FactsReader = (*Store)(nil)
)

// GraceAfterDelete is how long the blobs of a deleted or replaced stream
// stay in the bucket, for the readers that had started reading them.
const GraceAfterDelete = time.Minute

// Option configures Open.
type Option func(*Store)

// WithClock makes the Store stamp Entry.Ingested with now (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithGrace sets how long the blobs of deleted streams are kept
// (GraceAfterDelete by default).
func WithGrace(d time.Duration) Option { return func(s *Store) { s.grace = d } }

// IsURL reports whether a --store value names a PostgreSQL catalog
// (postgres:// or postgresql://) rather than a directory.
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open opens the team store whose catalog is the PostgreSQL database at
// catalogURL (postgres://user@host:port/db?sslmode=…; pgx's parameters,
// search_path among them; a password is better in PGPASSWORD or
// ~/.pgpass than in the URL) and whose bodies are in the bucket blobsURL
// names (see BlobsURL). It brings the catalog's schema up to date,
// creating it in an empty database. The caller must Close the Store.
func Open(ctx context.Context, catalogURL, blobsURL string, opts ...Option) (*Store, error) {
	if !IsURL(catalogURL) {
		return nil, fmt.Errorf("store: %q is no postgres:// URL", catalogURL)
	}
	cfg, err := pgxpool.ParseConfig(catalogURL)
	if err != nil {
		return nil, fmt.Errorf("store: catalog %s: %w", redact(catalogURL), err)
	}
	if !strings.Contains(catalogURL, "pool_max_conns") {
		// pgxpool's default is 4 (or the CPUs): too few for a server
		// syncing many streams at once.
		cfg.MaxConns = 16
	}
	s := &Store{now: time.Now, grace: GraceAfterDelete, orphanGrace: DefaultOrphanGrace, held: map[string]bool{}}
	for _, o := range opts {
		o(s)
	}
	s.blobs, err = openBucket(ctx, blobsURL)
	if err != nil {
		return nil, err
	}
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		s.blobs.b.Close()
		return nil, fmt.Errorf("store: catalog %s: %w", redact(catalogURL), err)
	}
	s.display = redact(catalogURL) + " " + s.blobs.display
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// redact drops the password from a URL, for messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "postgres://…"
	}
	return u.Redacted()
}

// migrate applies the migrations the catalog lacks, each in a
// transaction that holds an advisory lock, so that processes opening the
// store at once migrate it once.
func (s *Store) migrate(ctx context.Context) error {
	if err := s.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&s.schema); err != nil {
		return catalogErr(ctx, err)
	}
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v); err == nil && v == len(migrations) {
		return nil
	}
	for {
		done := false
		err := s.tx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockID('M', "")); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
				return err
			}
			var v int
			err := tx.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				if _, err := tx.Exec(ctx, `INSERT INTO schema_version(version) VALUES(0)`); err != nil {
					return err
				}
			case err != nil:
				return err
			}
			if v > len(migrations) {
				return fmt.Errorf("store: the catalog has schema version %d, written by a newer bes; this bes knows versions up to %d", v, len(migrations))
			}
			if v == len(migrations) {
				done = true
				return nil
			}
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("store: catalog migration to version %d: %w", v+1, err)
			}
			_, err = tx.Exec(ctx, `UPDATE schema_version SET version = $1`, v+1)
			return err
		})
		if err != nil || done {
			return err
		}
	}
}

// tx runs fn in a transaction of the catalog, committing when fn returns
// nil.
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return catalogErr(ctx, pgx.BeginFunc(ctx, s.pool, fn))
}

// catalogErr wraps a database error for the caller.
func catalogErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && !strings.HasPrefix(err.Error(), "store: "):
		return ctx.Err()
	case strings.HasPrefix(err.Error(), "store: "):
		return err
	}
	var dup *store.DuplicateStreamError
	if errors.As(err, &dup) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrStreamBusy) {
		return err
	}
	return fmt.Errorf("store: catalog: %w", err)
}

// lockID is the advisory lock id of key in the namespace ns: 64 bits of
// the SHA-256 of the schema, ns and the key. 'A' is an Appender's hold of
// a stream, 'K' the short lock of catalog changes to it, 'M' migrations.
func (s *Store) lockID(ns byte, key string) int64 {
	h := sha256.New()
	h.Write([]byte(s.schema))
	h.Write([]byte{0, ns})
	h.Write([]byte(key))
	return int64(binary.BigEndian.Uint64(h.Sum(nil)))
}

// lockKey takes the transaction's lock of key's catalog changes (waiting
// for the transaction that holds it), then checks that no Appender, in any
// session, holds the stream: an error wrapping store.ErrStreamBusy if one
// does. The check reads pg_locks rather than taking the appender lock, so
// that an OpenAppend waiting for the short lock never finds the appender
// lock still held by the commit that just released the short one.
func (s *Store) lockKey(ctx context.Context, tx pgx.Tx, key string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockID('K', key)); err != nil {
		return err
	}
	a := uint64(s.lockID('A', key))
	var held bool
	// A bigint advisory lock is classid (high half), objid (low half),
	// objsubid 1, in the current database.
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1)`,
		int64(a>>32), int64(a&0xffffffff)).Scan(&held); err != nil {
		return err
	}
	if held {
		return fmt.Errorf("store: stream %s: %w", local.ShortKey(key), store.ErrStreamBusy)
	}
	return nil
}

// kidOf is the row id of key: its SHA-256.
func kidOf(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// bodyDir is the blob prefix of a body of key: streams/<32 hex digits of
// SHA-256(key)>/<gen>, Entry.File.
func bodyDir(key, gen string) string {
	h := sha256.Sum256([]byte(key))
	return "streams/" + hex.EncodeToString(h[:16]) + "/" + gen
}

// chunkName is the blob of chunk n of the body in dir.
func chunkName(dir string, n int) string {
	return fmt.Sprintf("%s/%06d-%s.bess", dir, n, randomHex())
}

func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// checkStream checks the identity of a stream to be written, as
// store/local does (a valid StreamId encoding whose key is st.Key, within
// store/local's limits, which this store shares), and returns a copy.
func checkStream(op string, st *bepfile.Stream) (*bepfile.Stream, error) {
	if st == nil {
		return nil, fmt.Errorf("store: %s: nil stream", op)
	}
	if err := local.CheckStreamID(st); err != nil {
		return nil, err
	}
	id := &buildpb.StreamId{}
	if err := proto.Unmarshal(st.IDBytes, id); err != nil {
		return nil, fmt.Errorf("store: %s %s: bad stream id bytes: %w", op, local.ShortKey(st.Key), err)
	}
	if k := bepfile.Key(id); k != st.Key {
		return nil, fmt.Errorf("store: %s %s: stream id bytes have key %s", op, local.ShortKey(st.Key), local.ShortKey(k))
	}
	return &bepfile.Stream{ID: id, Key: st.Key, IDBytes: bytes.Clone(st.IDBytes), TypeURL: st.TypeURL}, nil
}

// Location returns the catalog's URL, without its password, and the
// blobs' (store.Backend).
func (s *Store) Location() string { return s.display }

// Close closes the catalog's connections and the bucket. The caller must
// first close its Writers and Appenders.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.lockConn != nil {
		s.lockConn.Close(context.Background())
		s.lockConn = nil
	}
	s.mu.Unlock()
	if s.pool != nil {
		s.pool.Close()
	}
	return s.blobs.b.Close()
}

// --- entries ---

// entryColumns are the columns of an entry, in the order of scanEntry.
const entryColumns = `key, build_id, invocation_id, component, events, complete, command, result,
	exit_code, has_exit_code, start_sec, start_nsec, finish_sec, finish_nsec, file, size, digest,
	source, format, ingested_sec, ingested_nsec`

// keyOrder is the ORDER BY of key order (bytewise): the indexed prefix,
// then the whole key.
const keyOrder = `ORDER BY substring(key from 1 for 256), key`

func scanEntry(row pgx.Row) (*store.Entry, error) {
	e := &store.Entry{}
	var key, bid, iid, cmd, res, src, fmt_ []byte
	var t [6]*int64
	err := row.Scan(&key, &bid, &iid, &e.Component, &e.Events, &e.Complete, &cmd, &res,
		&e.ExitCode, &e.HasExitCode, &t[0], &t[1], &t[2], &t[3], &e.File, &e.Size, &e.Digest,
		&src, &fmt_, &t[4], &t[5])
	if err != nil {
		return nil, err
	}
	e.Key, e.BuildID, e.InvocationID = string(key), string(bid), string(iid)
	e.Command, e.Result, e.Source, e.Format = string(cmd), string(res), string(src), string(fmt_)
	e.Start, e.Finish, e.Ingested = fromUnix(t[0], t[1]), fromUnix(t[2], t[3]), fromUnix(t[4], t[5])
	return e, nil
}

func fromUnix(sec, nsec *int64) time.Time {
	if sec == nil {
		return time.Time{}
	}
	var n int64
	if nsec != nil {
		n = *nsec
	}
	return time.Unix(*sec, n).UTC()
}

// unix returns t's Unix seconds and nanoseconds, NULL for the zero time.
func unix(t time.Time) (sec, nsec *int64) {
	if t.IsZero() {
		return nil, nil
	}
	a, b := t.Unix(), int64(t.Nanosecond())
	return &a, &b
}

// putStream writes the row of e, whose body is the generation gen with
// chunks chunks, in place of the row of its key if there is one.
func putStream(ctx context.Context, tx pgx.Tx, e *store.Entry, gen string, chunks int) error {
	ss, sn := unix(e.Start)
	fs, fn := unix(e.Finish)
	is, in := unix(e.Ingested)
	_, err := tx.Exec(ctx, `INSERT INTO streams(kid, `+entryColumns+`, gen, chunks)
		VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24)
		ON CONFLICT(kid) DO UPDATE SET
			key=excluded.key, build_id=excluded.build_id, invocation_id=excluded.invocation_id,
			component=excluded.component, events=excluded.events, complete=excluded.complete,
			command=excluded.command, result=excluded.result, exit_code=excluded.exit_code,
			has_exit_code=excluded.has_exit_code, start_sec=excluded.start_sec, start_nsec=excluded.start_nsec,
			finish_sec=excluded.finish_sec, finish_nsec=excluded.finish_nsec,
			file=excluded.file, size=excluded.size, digest=excluded.digest,
			source=excluded.source, format=excluded.format,
			ingested_sec=excluded.ingested_sec, ingested_nsec=excluded.ingested_nsec,
			gen=excluded.gen, chunks=excluded.chunks`,
		kidOf(e.Key), []byte(e.Key), []byte(e.BuildID), []byte(e.InvocationID), e.Component, e.Events, e.Complete,
		[]byte(e.Command), []byte(e.Result), e.ExitCode, e.HasExitCode, ss, sn, fs, fn, e.File, e.Size, e.Digest,
		[]byte(e.Source), []byte(e.Format), is, in, gen, chunks)
	return err
}

// getStream returns the entry of key, its generation and chunk count, the
// row locked for the transaction; nil if there is none.
func getStream(ctx context.Context, tx pgx.Tx, key string) (e *store.Entry, gen string, chunks int, err error) {
	row := tx.QueryRow(ctx, `SELECT `+entryColumns+`, gen, chunks FROM streams WHERE kid = $1 FOR UPDATE`, kidOf(key))
	e, err = scanEntry(scanTail{row, []any{&gen, &chunks}})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, "", 0, nil
	}
	return e, gen, chunks, err
}

// scanTail scans a row with more columns after the entry's.
type scanTail struct {
	row  pgx.Row
	tail []any
}

func (s scanTail) Scan(dest ...any) error { return s.row.Scan(append(dest, s.tail...)...) }

// discard moves the blobs of key's chunks to the garbage and deletes the
// chunks' rows.
func discard(ctx context.Context, tx pgx.Tx, key string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO garbage(blob) SELECT blob FROM chunks WHERE kid = $1`, kidOf(key)); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM chunks WHERE kid = $1`, kidOf(key))
	return err
}

// chunk is one row of chunks.
type chunk struct {
	blob   string
	size   int64
	events int64
}

// --- reading ---

// pageSize is how many entries List reads per query: no connection is
// held while fn runs.
const pageSize = 500

// List calls fn for every entry in key order (store.Backend), from the
// catalog alone, page by page: each page is one query, so that fn may use
// the Store, and an entry is listed once even while others are written.
func (s *Store) List(ctx context.Context, fn func(*store.Entry) error) error {
	return s.ListMatching(ctx, func(string) bool { return true }, fn)
}

// ListMatching is List for the entries whose key match accepts
// (store.Backend): match, a Go regular expression's MatchString say,
// runs in Go on every key, so that it keeps Go's semantics.
func (s *Store) ListMatching(ctx context.Context, match func(key string) bool, fn func(*store.Entry) error) error {
	var last []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var rows pgx.Rows
		var err error
		if last == nil {
			rows, err = s.pool.Query(ctx, `SELECT `+entryColumns+` FROM streams `+keyOrder+` LIMIT $1`, pageSize)
		} else {
			p := last[:min(len(last), 256)]
			rows, err = s.pool.Query(ctx, `SELECT `+entryColumns+` FROM streams
				WHERE substring(key from 1 for 256) >= $1 AND (substring(key from 1 for 256), key) > ($1, $2) `+keyOrder+` LIMIT $3`,
				p, last, pageSize)
		}
		if err != nil {
			return catalogErr(ctx, err)
		}
		page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Entry, error) { return scanEntry(r) })
		if err != nil {
			return catalogErr(ctx, err)
		}
		for _, e := range page {
			if err := ctx.Err(); err != nil {
				return err
			}
			if !match(e.Key) {
				continue
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
		last = []byte(page[len(page)-1].Key)
	}
}

// Lookup returns the entries a reference names, by store.ResolveRef
// (store.Backend). The candidates are narrowed in SQL: the keys ref
// starts (by the key index), the streams whose invocation id or build id
// is ref (by their hash indexes).
func (s *Store) Lookup(ctx context.Context, ref string) ([]*store.Entry, error) {
	if ref == "" {
		return nil, errors.New("store: empty stream reference")
	}
	p := ref[:min(len(ref), 256)]
	where := `(substring(key from 1 for 256) >= $1 AND key >= $2`
	args := []any{[]byte(p), []byte(ref)}
	if end := prefixEnd(p); end != nil {
		where += ` AND substring(key from 1 for 256) < $3`
		args = append(args, end)
	} else {
		where += ` AND $3::bytea IS NULL`
		args = append(args, nil)
	}
	if end := prefixEnd(ref); end != nil {
		where += ` AND key < $4)`
		args = append(args, end)
	} else {
		where += ` AND $4::bytea IS NULL)`
		args = append(args, nil)
	}
	where += ` OR invocation_id = $2 OR build_id = $2`
	rows, err := s.pool.Query(ctx, `SELECT `+entryColumns+` FROM streams WHERE `+where+` `+keyOrder, args...)
	if err != nil {
		return nil, catalogErr(ctx, err)
	}
	cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*store.Entry, error) { return scanEntry(r) })
	if err != nil {
		return nil, catalogErr(ctx, err)
	}
	rc := make([]store.RefCandidate, len(cands))
	for i, e := range cands {
		rc[i] = e.Candidate()
	}
	sel, err := store.ResolveRef(ref, rc)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	out := make([]*store.Entry, len(sel))
	for i, j := range sel {
		out[i] = cands[j]
	}
	return out, nil
}

// prefixEnd returns the least byte string greater than every string that
// starts with p, or nil if there is none (p is all 0xff bytes).
func prefixEnd(p string) []byte {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return b[:i+1]
		}
	}
	return nil
}

// body returns the chunks of key's body, in order, and its generation,
// read in one query; an error wrapping store.ErrNotFound if key is not
// stored.
func (s *Store) body(ctx context.Context, key string) ([]chunk, string, error) {
	rows, err := s.pool.Query(ctx, `SELECT s.gen, c.blob, c.size, c.events FROM streams s JOIN chunks c ON c.kid = s.kid
		WHERE s.kid = $1 ORDER BY c.n`, kidOf(key))
	if err != nil {
		return nil, "", catalogErr(ctx, err)
	}
	var gen string
	var out []chunk
	var c chunk
	_, err = pgx.ForEachRow(rows, []any{&gen, &c.blob, &c.size, &c.events}, func() error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, "", catalogErr(ctx, err)
	}
	if len(out) == 0 {
		return nil, "", fmt.Errorf("store: stream %s: %w", local.ShortKey(key), store.ErrNotFound)
	}
	return out, gen, nil
}

// read calls fn with the stream of key and each of its events, reading
// its chunks' blobs in order.
func (s *Store) read(ctx context.Context, key string, fn func(*bepfile.Stream, *bepfile.Event) error) error {
	chunks, gen, err := s.body(ctx, key)
	if err != nil {
		return err
	}
	var total, events, seen int64
	for _, c := range chunks {
		total += c.size
		events += c.events
	}
	cr := &chunkReader{ctx: ctx, b: s.blobs, chunks: chunks}
	defer cr.Close()
	err = s.decode(ctx, cr, bodyDir(key, gen), total, key, func(st *bepfile.Stream, ev *bepfile.Event) error {
		seen++
		return fn(st, ev)
	})
	if err == nil && seen != events {
		// Whole blobs of the right sizes, but not the events the catalog
		// counted: a body that is not the one listed.
		return &bess.CorruptError{File: bodyDir(key, gen), Offset: total,
			Err: fmt.Errorf("the body holds %d events, the catalog's chunks %d", seen, events)}
	}
	if errors.Is(err, errBlobMissing) {
		// Deleted or replaced since the chunks were read, and its blobs
		// collected: the stream read is gone.
		if _, now, err2 := s.body(ctx, key); err2 != nil || now != gen {
			return fmt.Errorf("store: stream %s was deleted or replaced while read: %w", local.ShortKey(key), store.ErrNotFound)
		}
	}
	return err
}

// decode reads a bess body of size bytes from r.
func (s *Store) decode(ctx context.Context, r *chunkReader, name string, size int64, key string, fn func(*bepfile.Stream, *bepfile.Event) error) error {
	rd, err := bess.NewReader(r, name, size)
	if err != nil {
		return err
	}
	st := rd.Stream()
	if st.Key != key {
		return &bess.CorruptError{File: name, Err: fmt.Errorf("body holds stream %q, the catalog says %q", st.Key, key)}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ev, err := rd.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(st, ev); err != nil {
			return err
		}
	}
}

// Events calls fn for each event of the stream e describes (store.Backend):
// the stream as the catalog has it when Events starts (a live stream up to
// its last Sync).
func (s *Store) Events(ctx context.Context, e *store.Entry, fn func(*bepfile.Stream, *bepfile.Event) error) error {
	return s.read(ctx, e.Key, fn)
}

// Load reads the stream e describes into memory (store.Backend).
func (s *Store) Load(ctx context.Context, e *store.Entry) (*store.Stream, error) {
	var out *store.Stream
	err := s.read(ctx, e.Key, func(st *bepfile.Stream, ev *bepfile.Event) error {
		if out == nil {
			out = store.NewStreamFromInfo(st)
		}
		out.Append(*ev)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		// No event: the identity from the header alone.
		chunks, _, err := s.body(ctx, e.Key)
		if err != nil {
			return nil, err
		}
		r, err := s.blobs.open(ctx, chunks[0].blob)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		rd, err := bess.NewReader(r, chunks[0].blob, -1)
		if err != nil {
			return nil, err
		}
		out = store.NewStreamFromInfo(rd.Stream())
	}
	return out, nil
}

// --- deleting ---

// Delete removes the stream with key (store.Backend): its row, its
// chunks' and facts' rows, in one transaction, which moves its blobs to
// the garbage (deleted GraceAfterDelete later). A crash leaves the stream
// either whole or deleted. A stream an Appender holds, in any process, is
// not deleted: an error wrapping store.ErrStreamBusy.
func (s *Store) Delete(ctx context.Context, key string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := s.lockKey(ctx, tx, key); err != nil {
			return fmt.Errorf("store: delete %s: %w", local.ShortKey(key), err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO garbage(blob) SELECT blob FROM chunks WHERE kid = $1`, kidOf(key)); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM streams WHERE kid = $1`, kidOf(key)) // chunks and facts cascade
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("store: delete %s: %w", local.ShortKey(key), store.ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.sweep(ctx)
	return nil
}

// sweep deletes the blobs of the garbage older than the grace period, a
// few hundred at a time, at most once per half grace period per Store.
// Its errors are left for the next sweep.
func (s *Store) sweep(ctx context.Context) {
	s.mu.Lock()
	if s.now().Sub(s.lastSweep) < s.grace/2 {
		s.mu.Unlock()
		return
	}
	s.lastSweep = s.now()
	s.mu.Unlock()
	s.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT blob FROM garbage WHERE since < now() - make_interval(secs => $1)
			LIMIT 500 FOR UPDATE SKIP LOCKED`, s.grace.Seconds())
		if err != nil {
			return err
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		var gone []string
		for _, n := range names {
			if s.blobs.remove(ctx, n) == nil {
				gone = append(gone, n)
			}
		}
		_, err = tx.Exec(ctx, `DELETE FROM garbage WHERE blob = ANY($1)`, gone)
		return err
	})
}
