package postgres

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"gocloud.dev/blob"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
	"github.com/bes-cli/bes/store/local"
)

// `bes store check` and `bes store gc` of the team store, by store/local's
// rules (store.CheckResult, store.GCOptions), on a catalog and a bucket.

// DefaultOrphanGrace is how old a blob that no catalog row names must be
// before Check reports it and GC deletes it: an upload in progress (a
// body uploaded, the transaction that lists it not yet committed) is
// younger. WithOrphanGrace changes it.
const DefaultOrphanGrace = time.Hour

// QuarantinePrefix is where Repair copies the blobs of a body whose
// content disagrees with its catalog row, under their own names
// (quarantine/streams/…), before it drops the row. Nothing of bes reads
// them, and GC never deletes them.
const QuarantinePrefix = "quarantine/"

// WithOrphanGrace sets the orphan blobs' grace period of Check and of a
// GC whose options do not say (DefaultOrphanGrace by default).
func WithOrphanGrace(d time.Duration) Option { return func(s *Store) { s.orphanGrace = d } }

// row is a stream's catalog row and its chunks, as Check read them.
type row struct {
	e      *store.Entry
	gen    string
	nchunk int // streams.chunks
	chunks []chunk
}

// same reports whether r and o are the same body (blobs never change:
// the same generation and chunks are the same bytes).
func (r *row) same(o *row) bool {
	return o != nil && r.gen == o.gen && r.nchunk == o.nchunk && len(r.chunks) == len(o.chunks) &&
		r.e.Digest == o.e.Digest && r.e.Size == o.e.Size
}

// found is what checking one stream found: the problem, if any, and what
// its body says, for Repair.
type found struct {
	p     *store.Problem
	body  *store.Entry // the entry made from the body
	facts *store.Facts // the facts of its events
	row   *row
}

// catalogRows reads every stream's row and chunks, and the blobs of the
// garbage, in one snapshot.
func (s *Store) catalogRows(ctx context.Context) (map[string]*row, map[string]bool, error) {
	rows := map[string]*row{}
	byKid := map[string]*row{}
	named := map[string]bool{}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		q, err := tx.Query(ctx, `SELECT `+entryColumns+`, gen, chunks FROM streams`)
		if err != nil {
			return err
		}
		for q.Next() {
			r := &row{}
			if r.e, err = scanEntry(scanTail{q, []any{&r.gen, &r.nchunk}}); err != nil {
				q.Close()
				return err
			}
			rows[r.e.Key] = r
			byKid[string(kidOf(r.e.Key))] = r
		}
		if err := q.Err(); err != nil {
			return err
		}
		q, err = tx.Query(ctx, `SELECT kid, blob, size, events FROM chunks ORDER BY kid, n`)
		if err != nil {
			return err
		}
		var kid []byte
		var c chunk
		if _, err := pgx.ForEachRow(q, []any{&kid, &c.blob, &c.size, &c.events}, func() error {
			named[c.blob] = true
			if r := byKid[string(kid)]; r != nil {
				r.chunks = append(r.chunks, c)
			}
			return nil
		}); err != nil {
			return err
		}
		q, err = tx.Query(ctx, `SELECT blob FROM garbage`)
		if err != nil {
			return err
		}
		var b string
		_, err = pgx.ForEachRow(q, []any{&b}, func() error { named[b] = true; return nil })
		return err
	})
	if err != nil {
		return nil, nil, catalogErr(ctx, err)
	}
	return rows, named, nil
}

// rowOf reads the row and chunks of key now; nil if it is not stored.
func (s *Store) rowOf(ctx context.Context, key string) (*row, error) {
	var r *row
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		var err error
		r, err = rowTx(ctx, tx, key, false)
		return err
	})
	return r, catalogErr(ctx, err)
}

// rowTx reads the row and chunks of key in tx, the row locked when lock
// is set; nil if it is not stored.
func rowTx(ctx context.Context, tx pgx.Tx, key string, lock bool) (*row, error) {
	q := `SELECT ` + entryColumns + `, gen, chunks FROM streams WHERE kid = $1`
	if lock {
		q += ` FOR UPDATE`
	}
	r := &row{}
	var err error
	r.e, err = scanEntry(scanTail{tx.QueryRow(ctx, q, kidOf(key)), []any{&r.gen, &r.nchunk}})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT blob, size, events FROM chunks WHERE kid = $1 ORDER BY n`, kidOf(key))
	if err != nil {
		return nil, err
	}
	var c chunk
	_, err = pgx.ForEachRow(rows, []any{&c.blob, &c.size, &c.events}, func() error {
		r.chunks = append(r.chunks, c)
		return nil
	})
	return r, err
}

// heldKeys returns the keys of keys whose appender lock a session holds
// (a live Appender, in any process).
func (s *Store) heldKeys(ctx context.Context, keys []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT classid::bigint, objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND objsubid = 1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	if err != nil {
		return nil, catalogErr(ctx, err)
	}
	locks := map[uint64]bool{}
	var hi, lo int64
	if _, err := pgx.ForEachRow(rows, []any{&hi, &lo}, func() error {
		locks[uint64(hi)<<32|uint64(lo)&0xffffffff] = true
		return nil
	}); err != nil {
		return nil, catalogErr(ctx, err)
	}
	held := map[string]bool{}
	for _, k := range keys {
		if locks[uint64(s.lockID('A', k))] {
			held[k] = true
		}
	}
	return held, nil
}

// blobInfo is one blob of the bucket.
type blobInfo struct {
	name string
	size int64
	mod  time.Time
}

// streamBlobs lists the blobs of stream bodies (streams/…): those of the
// catalog's rows and garbage, and any other.
func (s *Store) streamBlobs(ctx context.Context) ([]blobInfo, error) {
	var out []blobInfo
	it := s.blobs.b.List(&blob.ListOptions{Prefix: "streams/"})
	for {
		o, err := it.Next(ctx)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("store: list blobs %s: %w", s.blobs.display, err)
		}
		if !o.IsDir {
			out = append(out, blobInfo{o.Key, o.Size, o.ModTime})
		}
	}
}

// Check verifies that the catalog and the bucket agree, as store/local's
// Check does for a directory: every stream row has its chunks, each
// chunk's blob exists, has the chunk's size, and the blobs read in order
// are a store/bess body whose records pass their checksums, of the row's
// stream, size, digest (SHA-256), event count and outcome; the facts of a
// stream no Appender holds are store.FactsOf its events; and every blob
// under streams/ is named by a chunk or the garbage, but those younger
// than the orphan grace period (uploads in progress). A live stream (an
// Appender holds it, in any process) is checked up to its last Sync, and
// listed in Open; its facts, written when it closes, are not checked. It
// reads every blob whole and changes nothing. A stream that looks wrong
// is read again if its row changed meanwhile (a replace, a Sync, a
// compaction). The error is for Check itself failing.
func (s *Store) Check(ctx context.Context) (*store.CheckResult, error) {
	res, _, err := s.check(ctx)
	return res, err
}

func (s *Store) check(ctx context.Context) (*store.CheckResult, map[string]*found, error) {
	// The blobs first, then the catalog: a body committed between the
	// two is named in the catalog read.
	blobs, err := s.streamBlobs(ctx)
	if err != nil {
		return nil, nil, err
	}
	rows, named, err := s.catalogRows(ctx)
	if err != nil {
		return nil, nil, err
	}
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	res := &store.CheckResult{Entries: len(rows), Files: len(blobs)}
	bad := map[string]*found{}
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		f, err := s.checkRow(ctx, rows[k])
		if err != nil {
			return nil, nil, err
		}
		if f.p != nil {
			// Read again if it changed meanwhile.
			now, err := s.rowOf(ctx, k)
			if err != nil {
				return nil, nil, err
			}
			if now == nil {
				continue // deleted meanwhile
			}
			if !now.same(f.row) {
				if f, err = s.checkRow(ctx, now); err != nil {
					return nil, nil, err
				}
			}
		}
		if f.p != nil {
			res.Problems = append(res.Problems, *f.p)
			bad[k] = f
		}
	}
	held, err := s.heldKeys(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	for _, k := range keys {
		if held[k] {
			res.Open = append(res.Open, k)
		}
	}
	// Facts of live streams are written when they close.
	res.Problems = slices.DeleteFunc(res.Problems, func(p store.Problem) bool {
		return p.Kind == store.ProblemFacts && held[p.Key]
	})
	for _, o := range s.orphans(blobs, named, keys, held) {
		res.Problems = append(res.Problems, store.Problem{Kind: store.ProblemOrphanBlob, File: o.name,
			Detail: fmt.Sprintf("%d bytes, written %s: no catalog row names it (an upload killed before its catalog commit; bes store gc deletes it)",
				o.size, o.mod.UTC().Format(time.RFC3339))})
	}
	slices.SortStableFunc(res.Problems, func(a, b store.Problem) int { return cmp.Compare(a.File, b.File) })
	return res, bad, nil
}

// orphans returns the blobs of blobs that named does not name, older than
// the orphan grace period, but those in the directory of a stream an
// Appender holds.
func (s *Store) orphans(blobs []blobInfo, named map[string]bool, keys []string, held map[string]bool) []blobInfo {
	return s.orphansBefore(blobs, named, keys, held, s.now().Add(-s.orphanGrace))
}

func (s *Store) orphansBefore(blobs []blobInfo, named map[string]bool, keys []string, held map[string]bool, before time.Time) []blobInfo {
	live := map[string]bool{}
	for _, k := range keys {
		if held[k] {
			live[streamDir(k)] = true
		}
	}
	var out []blobInfo
	for _, b := range blobs {
		if named[b.name] || !b.mod.Before(before) {
			continue
		}
		if i := strings.Index(strings.TrimPrefix(b.name, "streams/"), "/"); i >= 0 && live[b.name[:len("streams/")+i]] {
			continue
		}
		out = append(out, b)
	}
	return out
}

// streamDir is the blob prefix of every body of key: streams/<32 hex
// digits of SHA-256(key)>.
func streamDir(key string) string {
	h := sha256.Sum256([]byte(key))
	return "streams/" + hex.EncodeToString(h[:16])
}

// checkRow checks one stream's row against its blobs. err is for ctx and
// the catalog only.
func (s *Store) checkRow(ctx context.Context, r *row) (*found, error) {
	e := r.e
	f := &found{row: r}
	problem := func(kind store.ProblemKind, file, format string, args ...any) (*found, error) {
		f.p = &store.Problem{Kind: kind, File: file, Key: e.Key, Detail: fmt.Sprintf(format, args...)}
		return f, nil
	}
	dir := bodyDir(e.Key, r.gen)
	if len(r.chunks) == 0 {
		return problem(store.ProblemMissing, dir, "the catalog lists no chunk of the stream's body")
	}
	var total, events int64
	for _, c := range r.chunks {
		total += c.size
		events += c.events
	}
	h := sha256.New()
	cr := &chunkReader{ctx: ctx, b: s.blobs, chunks: r.chunks}
	defer cr.Close()
	current := func(err error) string { // the blob err is about
		if b := missingBlob(err, r.chunks); b != "" {
			return b
		}
		if cr.name != "" {
			return cr.name
		}
		return r.chunks[0].blob
	}
	damaged := func(err error) (*found, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, errBlobMissing) {
			return problem(store.ProblemMissing, current(err), "%v", err)
		}
		return problem(store.ProblemMismatch, current(err), "the blobs the catalog row vouches for are damaged: %v", err)
	}
	rd, err := bess.NewReader(io.TeeReader(cr, h), dir, total)
	if err != nil {
		return damaged(err)
	}
	if k := rd.Stream().Key; k != e.Key {
		return problem(store.ProblemMismatch, r.chunks[0].blob, "the body holds stream %q", k)
	}
	var meta store.Meta
	var fb *store.FactsBuilder
	// The events of each chunk: those whose records start in its bytes
	// (an Appender's chunk holds whole records).
	ends := make([]int64, len(r.chunks))
	perChunk := make([]int64, len(r.chunks))
	var at int64
	for i, c := range r.chunks {
		at += c.size
		ends[i] = at
	}
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		start := rd.Offset()
		for n < len(ends)-1 && start >= ends[n] {
			n++
		}
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return damaged(err)
		}
		perChunk[n]++
		meta.Observe(ev)
		if fb == nil {
			fb = store.NewFactsBuilder(rd.Stream())
		}
		fb.Add(ev)
	}
	for i, c := range r.chunks {
		if perChunk[i] != c.events {
			return problem(store.ProblemMismatch, c.blob, "chunk %d holds %d events, the catalog says %d", i, perChunk[i], c.events)
		}
	}
	if meta.Events != events {
		return problem(store.ProblemMismatch, r.chunks[0].blob, "the body holds %d events, the catalog's chunks %d", meta.Events, events)
	}
	if total != e.Size {
		return problem(store.ProblemMismatch, r.chunks[0].blob, "the chunks hold %d bytes, the catalog row says %d", total, e.Size)
	}
	if d := hex.EncodeToString(h.Sum(nil)); d != e.Digest {
		return problem(store.ProblemMismatch, r.chunks[0].blob, "the %d bytes have digest %s, the catalog says %s", total, d, e.Digest)
	}
	f.body = local.NewEntry(rd.Stream(), &meta)
	f.body.File, f.body.Size, f.body.Digest = dir, e.Size, e.Digest
	f.body.Source, f.body.Format, f.body.Ingested = e.Source, e.Format, e.Ingested
	if fb != nil {
		f.facts = fb.Facts()
	}
	if e.File != dir {
		return problem(store.ProblemBadName, dir, "the row names %q, the body is %s", e.File, dir)
	}
	if diff := store.EntryDiff(e, f.body); diff != "" {
		return problem(store.ProblemMetadata, dir, "%s", diff)
	}
	if r.nchunk != len(r.chunks) {
		return problem(store.ProblemMetadata, dir, "the row counts %d chunks, the catalog lists %d", r.nchunk, len(r.chunks))
	}
	if diff, err := s.factsDiff(ctx, e.Key, f.facts); err != nil {
		return nil, err
	} else if diff != "" {
		return problem(store.ProblemFacts, dir, "%s", diff)
	}
	return f, nil
}

// missingBlob returns the blob of chunks that err names, "" if none.
func missingBlob(err error, chunks []chunk) string {
	for _, c := range chunks {
		if strings.Contains(err.Error(), c.blob) {
			return c.blob
		}
	}
	return ""
}

// factsDiff compares the facts the catalog holds of key with want, as the
// catalog would hold them: what differs only by pgText (invalid UTF-8,
// NUL) is told apart by writing want in a transaction that is rolled
// back, and reading it again.
func (s *Store) factsDiff(ctx context.Context, key string, want *store.Facts) (string, error) {
	var diff string
	errRollback := errors.New("rollback")
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		got, err := readFacts(ctx, tx, key)
		if err != nil {
			return err
		}
		if diff = store.FactsDiff(got, want); diff == "" || got == nil || want == nil {
			return errRollback
		}
		if err := putFacts(ctx, tx, key, want); err != nil {
			return err
		}
		stored, err := readFacts(ctx, tx, key)
		if err != nil {
			return err
		}
		if store.FactsDiff(got, stored) == "" {
			diff = ""
		}
		return errRollback
	})
	if err != nil && !errors.Is(err, errRollback) {
		return "", catalogErr(ctx, err)
	}
	return diff, nil
}

// Repair fixes what Check finds, by store/local's rules, and nothing
// else, each stream in a transaction that holds its catalog lock and
// finds no Appender holding it (a live stream is never touched), and only
// if its row is still the one checked:
//
//   - a row a blob of whose body is missing is dropped (its other blobs
//     go to the garbage);
//   - a body whose content disagrees with its row (sizes, digest,
//     checksums, another stream) is quarantined: its blobs are copied
//     under QuarantinePrefix, the row dropped, the blobs left to the
//     garbage; never listed as it is;
//   - a row whose file name, counts or outcome differ from its body is
//     written anew from the body; facts missing or wrong are written anew
//     from the events.
//
// Blobs no row names are left to GC. It then checks again. Each change is
// one Action.
func (s *Store) Repair(ctx context.Context) (*store.RepairResult, error) {
	before, bad, err := s.check(ctx)
	if err != nil {
		return nil, err
	}
	res := &store.RepairResult{Before: before}
	for _, p := range before.Problems {
		f := bad[p.Key]
		if p.Key == "" || f == nil || f.p == nil || f.p.Kind != p.Kind {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var action string
		err := s.tx(ctx, func(tx pgx.Tx) error {
			action = ""
			if err := s.lockKey(ctx, tx, p.Key); err != nil {
				if errors.Is(err, store.ErrStreamBusy) {
					return nil // a live writer holds it: left alone
				}
				return err
			}
			now, err := rowTx(ctx, tx, p.Key, true)
			if err != nil || now == nil || !now.same(f.row) {
				return err // changed meanwhile: Check will say
			}
			short := local.ShortKey(p.Key)
			switch p.Kind {
			case store.ProblemMissing:
				if err := s.dropRow(ctx, tx, p.Key); err != nil {
					return err
				}
				action = fmt.Sprintf("stream %s: dropped the row whose blob %s is missing", short, p.File)
			case store.ProblemMismatch:
				var moved []string
				for _, c := range now.chunks {
					to := QuarantinePrefix + c.blob
					if err := s.blobs.b.Copy(ctx, to, c.blob, nil); err != nil {
						if errors.Is(blobErr(c.blob, err), errBlobMissing) {
							continue
						}
						return fmt.Errorf("store: quarantine blob %s: %w", c.blob, err)
					}
					moved = append(moved, to)
				}
				if err := s.dropRow(ctx, tx, p.Key); err != nil {
					return err
				}
				action = fmt.Sprintf("quarantined the body of stream %s as %s: its content disagrees with the catalog row (%s); the row is dropped",
					short, strings.Join(moved, ", "), p.Detail)
			case store.ProblemBadName, store.ProblemMetadata:
				if err := putStream(ctx, tx, f.body, now.gen, len(now.chunks)); err != nil {
					return err
				}
				action = fmt.Sprintf("stream %s: row written anew from its body %s (%s)", short, f.body.File, p.Detail)
			case store.ProblemFacts:
				if err := putFacts(ctx, tx, p.Key, f.facts); err != nil {
					return err
				}
				action = fmt.Sprintf("stream %s: facts written anew from its body (%s)", short, p.Detail)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if action != "" {
			res.Actions = append(res.Actions, action)
		}
	}
	// A row written anew may show its facts wrong next.
	if mid, bad2, err := s.check(ctx); err != nil {
		return nil, err
	} else {
		for _, p := range mid.Problems {
			f := bad2[p.Key]
			if p.Kind != store.ProblemFacts || f == nil {
				continue
			}
			err := s.tx(ctx, func(tx pgx.Tx) error {
				if err := s.lockKey(ctx, tx, p.Key); err != nil {
					if errors.Is(err, store.ErrStreamBusy) {
						return nil
					}
					return err
				}
				now, err := rowTx(ctx, tx, p.Key, true)
				if err != nil || now == nil || !now.same(f.row) {
					return err
				}
				if err := putFacts(ctx, tx, p.Key, f.facts); err != nil {
					return err
				}
				res.Actions = append(res.Actions, fmt.Sprintf("stream %s: facts written anew from its body (%s)", local.ShortKey(p.Key), p.Detail))
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	if res.After, err = s.Check(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// dropRow deletes the row of key, its chunks' and facts' rows, moving its
// blobs to the garbage.
func (s *Store) dropRow(ctx context.Context, tx pgx.Tx, key string) error {
	if err := discard(ctx, tx, key); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `DELETE FROM streams WHERE kid = $1`, kidOf(key))
	return err
}

// Orphan is a blob GC found that no catalog row names.
type Orphan struct {
	Name    string
	Size    int64
	ModTime time.Time
	// Removed is set when GC deleted it (never with DryRun).
	Removed bool
}

// GC removes whole streams by age, as store/local's GC does (the same
// selection, store.SelectGC, and the same outcomes: a stream an Appender
// holds is kept, GCItem.Busy; one replaced or deleted meanwhile is left,
// GCItem.Gone), each in one transaction that drops its row and moves its
// blobs to the garbage. It then collects the bucket's garbage: the blobs
// of streams deleted or replaced more than the grace period ago
// (GraceAfterDelete), and the blobs no catalog row names (Orphans) older
// than opts.OrphanGrace (this Store's orphan grace period when 0), which
// uploads killed before their catalog commit leave: never a blob of a
// stream an Appender holds, nor one under QuarantinePrefix. With
// opts.DryRun nothing is removed.
func (s *Store) GC(ctx context.Context, opts store.GCOptions) ([]store.GCItem, []Orphan, error) {
	var all []*store.Entry
	if opts.Keep >= 0 || opts.OlderThan > 0 {
		if err := s.List(ctx, func(e *store.Entry) error {
			all = append(all, e)
			return nil
		}); err != nil {
			return nil, nil, err
		}
	}
	cut := store.SelectGC(all, opts)
	items := make([]store.GCItem, 0, cut)
	if opts.DryRun {
		keys := make([]string, cut)
		for i, e := range all[:cut] {
			keys[i] = e.Key
		}
		held, err := s.heldKeys(ctx, keys)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range all[:cut] {
			items = append(items, store.GCItem{Entry: e, Time: store.GCTime(e), Busy: held[e.Key]})
		}
	} else {
		var err error
		if items, err = store.RemoveGC(ctx, all[:cut], s.deleteIf); err != nil {
			return items, nil, err
		}
	}
	orphans, err := s.collectOrphans(ctx, opts)
	return items, orphans, err
}

// errChanged: the stream GC selected was replaced since GC listed it.
var errChanged = store.ErrChanged

// deleteIf deletes the stream of e as Delete does, unless its row changed
// since e was read (a stream replaced is a new stream, with a new time).
func (s *Store) deleteIf(ctx context.Context, e *store.Entry) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		if err := s.lockKey(ctx, tx, e.Key); err != nil {
			return err
		}
		now, _, _, err := getStream(ctx, tx, e.Key)
		if err != nil {
			return err
		}
		if now == nil {
			return store.ErrNotFound
		}
		if !now.Start.Equal(e.Start) || !now.Ingested.Equal(e.Ingested) || now.Digest != e.Digest {
			return errChanged
		}
		return s.dropRow(ctx, tx, e.Key)
	})
}

// collectOrphans sweeps the garbage whose grace period is over, then
// deletes the orphan blobs (see GC).
func (s *Store) collectOrphans(ctx context.Context, opts store.GCOptions) ([]Orphan, error) {
	grace := opts.OrphanGrace
	if grace <= 0 {
		grace = s.orphanGrace
	}
	now := opts.Now
	if now.IsZero() {
		now = s.now()
	}
	if !opts.DryRun {
		s.mu.Lock()
		s.lastSweep = time.Time{}
		s.mu.Unlock()
		s.sweep(ctx)
	}
	blobs, err := s.streamBlobs(ctx)
	if err != nil {
		return nil, err
	}
	rows, named, err := s.catalogRows(ctx)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	held, err := s.heldKeys(ctx, keys)
	if err != nil {
		return nil, err
	}
	var out []Orphan
	for _, b := range s.orphansBefore(blobs, named, keys, held, now.Add(-grace)) {
		o := Orphan{Name: b.name, Size: b.size, ModTime: b.mod}
		if !opts.DryRun {
			if err := s.blobs.remove(ctx, b.name); err != nil {
				return out, err
			}
			o.Removed = true
		}
		out = append(out, o)
	}
	return out, nil
}
