package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
	"github.com/bes-cli/bes/store/local"
)

// uploadConcurrency is how many bodies a batch commit uploads at once.
const uploadConcurrency = 8

// spillSize is how much of an encoded body a Writer keeps in memory
// before it moves it to a temporary file.
const spillSize = 1 << 20

// Writer writes one stream whole (store.Writer): it encodes the events in
// the bess format into memory, then into a temporary file of the machine
// (os.TempDir) past spillSize, opened only while it writes. Nothing of it
// reaches the bucket or the catalog before Commit. A Writer is not safe
// for concurrent use.
type Writer struct {
	s       *Store
	stream  *bepfile.Stream
	buf     bytes.Buffer
	tmp     string // the temporary file, "" before the first spill
	spilled int64
	h       hash.Hash
	enc     *bess.Encoder
	meta    store.Meta
	facts   *store.FactsBuilder
	size    int64
	err     error
	closed  bool
}

var _ store.Writer = (*Writer)(nil)

// Create starts writing a stream whole (store.Backend). A stream whose
// identity exceeds store/local's limits (which this store shares) gives
// an error wrapping store.ErrLimit.
func (s *Store) Create(_ context.Context, st *bepfile.Stream) (store.Writer, error) {
	info, err := checkStream("create", st)
	if err != nil {
		return nil, err
	}
	w := &Writer{s: s, stream: info, h: sha256.New(), facts: store.NewFactsBuilder(info)}
	w.enc = bess.NewEncoder(io.MultiWriter(&w.buf, w.h))
	n, _ := w.enc.Header(info) // into memory: cannot fail
	w.size = int64(n)
	return w, nil
}

// Stream returns the stream being written.
func (w *Writer) Stream() *bepfile.Stream { return w.stream }

// Meta returns the metadata of the events appended so far.
func (w *Writer) Meta() store.Meta { return w.meta }

// Append encodes one event.
func (w *Writer) Append(ev *bepfile.Event) error {
	if w.closed {
		return store.ErrWriterClosed
	}
	if w.err != nil {
		return w.err
	}
	n, _ := w.enc.Record(ev) // into memory: cannot fail
	w.size += int64(n)
	w.meta.Observe(ev)
	w.facts.Add(ev)
	if w.buf.Len() >= spillSize {
		return w.spill()
	}
	return nil
}

// spill appends the buffer to the temporary file.
func (w *Writer) spill() error {
	var f *os.File
	var err error
	if w.tmp == "" {
		f, err = os.CreateTemp("", "bes-body-*.bess")
		if err == nil {
			w.tmp = f.Name()
		}
	} else {
		f, err = os.OpenFile(w.tmp, os.O_WRONLY|os.O_APPEND, 0)
	}
	if err != nil {
		w.err = fmt.Errorf("store: %w", err)
		return w.err
	}
	n, err := f.Write(w.buf.Bytes())
	w.spilled += int64(n)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		w.err = fmt.Errorf("store: write %s: %w", w.tmp, err)
		return w.err
	}
	w.buf.Reset()
	return nil
}

// body returns the encoded stream, to upload.
func (w *Writer) body() (io.Reader, func(), error) {
	if w.tmp == "" {
		return bytes.NewReader(w.buf.Bytes()), func() {}, nil
	}
	f, err := os.Open(w.tmp)
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	return io.MultiReader(io.NewSectionReader(f, 0, w.spilled), bytes.NewReader(w.buf.Bytes())), func() { f.Close() }, nil
}

// entry returns the stream's entry, for a body of generation gen.
func (w *Writer) entry(source, format, gen string) *store.Entry {
	e := local.NewEntry(w.stream, &w.meta)
	e.File = bodyDir(w.stream.Key, gen)
	e.Size = w.size
	e.Digest = hex.EncodeToString(w.h.Sum(nil))
	e.Source, e.Format = source, format
	e.Ingested = w.s.now().UTC()
	return e
}

// Commit makes the stream durable and lists it (store.Writer): the body
// is uploaded as one chunk, then one transaction writes its rows. The
// result is Created, Unchanged (the key stored with the same digest, or,
// without replace, the same events in other bytes or a part of the stored
// events, by store.CommitExisting as store/local: nothing is written),
// Replaced (with replace; without it, a complete stream holding all the
// events of a stored partial one), or, without replace, a
// *store.DuplicateStreamError for other content; an error wrapping
// store.ErrStreamBusy while an Appender holds the stream.
func (w *Writer) Commit(ctx context.Context, source, format string, replace bool) (*store.Entry, store.CommitResult, error) {
	if w.closed {
		return nil, 0, store.ErrWriterClosed
	}
	out, err := w.s.commitAll(ctx, []*Writer{w}, source, format, replace)
	if err != nil {
		return nil, 0, err
	}
	return out[0].Entry, out[0].Result, out[0].Err
}

// Abort discards the stream and its temporary file. It may be called
// after Commit (it then does nothing) and more than once.
func (w *Writer) Abort() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.buf = bytes.Buffer{}
	if w.tmp != "" {
		if err := os.Remove(w.tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: %w", err)
		}
	}
	return nil
}

// CommitAll commits several Writers of this Store in one transaction of
// the catalog (store.Backend); their bodies are uploaded first. A Writer
// of another Store gets an error in its outcome.
func (s *Store) CommitAll(ctx context.Context, ws []store.Writer, source, format string, replace bool) ([]store.CommitOutcome, error) {
	out := make([]store.CommitOutcome, len(ws))
	var mine []*Writer
	var at []int
	for i, w := range ws {
		pw, ok := w.(*Writer)
		if !ok || pw.s != s {
			out[i].Err = fmt.Errorf("store: commit %q: the writer belongs to another store", w.Stream().Key)
			w.Abort()
			continue
		}
		mine = append(mine, pw)
		at = append(at, i)
	}
	got, err := s.commitAll(ctx, mine, source, format, replace)
	if err != nil {
		return nil, err
	}
	for j, o := range got {
		out[at[j]] = o
	}
	return out, nil
}

// commitAll commits ws (store.Backend.CommitAll's rules). Every writer is
// closed after it.
func (s *Store) commitAll(ctx context.Context, ws []*Writer, source, format string, replace bool) ([]store.CommitOutcome, error) {
	out := make([]store.CommitOutcome, len(ws))
	defer func() {
		for _, w := range ws {
			w.Abort()
		}
	}()
	seen := map[string]bool{}
	for _, w := range ws {
		if seen[w.stream.Key] {
			// The same key twice: one by one, in order.
			for i, w := range ws {
				o, err := s.commitAll(ctx, []*Writer{w}, source, format, replace)
				if err != nil {
					out[i].Err = err
				} else {
					out[i] = o[0]
				}
			}
			return out, nil
		}
		seen[w.stream.Key] = true
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	type pending struct {
		i        int
		w        *Writer
		entry    *store.Entry
		facts    *store.Facts
		blob     string // the uploaded body, "" before the upload
		uploaded bool
	}
	var todo []*pending
	for i, w := range ws {
		switch {
		case w.closed:
			out[i].Err = store.ErrWriterClosed
			continue
		case w.err != nil:
			out[i].Err = w.err
			continue
		}
		gen := randomHex()
		e := w.entry(source, format, gen)
		todo = append(todo, &pending{i: i, w: w, entry: e, facts: w.facts.Facts(), blob: chunkName(e.File, 0)})
	}
	slices.SortFunc(todo, func(a, b *pending) int { return strings.Compare(a.entry.Key, b.entry.Key) })
	if len(todo) == 0 {
		return out, nil
	}

	// What the catalog holds now: a body that would be thrown away
	// (the same digest; other content without replace) is not uploaded.
	stored := map[string]string{}
	kids := make([][]byte, len(todo))
	for i, p := range todo {
		kids[i] = kidOf(p.entry.Key)
	}
	rows, err := s.pool.Query(ctx, `SELECT key, digest FROM streams WHERE kid = ANY($1)`, kids)
	if err != nil {
		return nil, catalogErr(ctx, err)
	}
	var k []byte
	var d string
	if _, err := pgx.ForEachRow(rows, []any{&k, &d}, func() error { stored[string(k)] = d; return nil }); err != nil {
		return nil, catalogErr(ctx, err)
	}
	upload := func(ctx context.Context, p *pending) error {
		if p.uploaded {
			return nil
		}
		r, done, err := p.w.body()
		if err != nil {
			return err
		}
		defer done()
		if err := s.blobs.put(ctx, p.blob, r); err != nil {
			return err
		}
		p.uploaded = true
		return nil
	}
	unused := func(keep func(p *pending) bool) {
		for _, p := range todo {
			if p.uploaded && !keep(p) {
				s.blobs.remove(context.WithoutCancel(ctx), p.blob)
			}
		}
	}
	// uploadAll uploads ps, uploadConcurrency at a time.
	uploadAll := func(ps []*pending) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		sem := make(chan struct{}, uploadConcurrency)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		for _, p := range ps {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := upload(ctx, p); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return first
	}
	var up []*pending
	for _, p := range todo {
		d, ok := stored[p.entry.Key]
		if ok && (d == p.entry.Digest || !replace) {
			continue
		}
		up = append(up, p)
	}
	if err := uploadAll(up); err != nil {
		unused(func(*pending) bool { return false })
		return nil, err
	}

	// One transaction; if it finds a body needed that was not uploaded
	// (the catalog changed meanwhile), it is uploaded and the transaction
	// run again.
	var anyReplaced bool
	for {
		var missing []*pending
		anyReplaced = false
		err := s.tx(ctx, func(tx pgx.Tx) error {
			missing = missing[:0]
			for _, p := range todo {
				out[p.i] = store.CommitOutcome{}
				if err := s.lockKey(ctx, tx, p.entry.Key); err != nil {
					if !errors.Is(err, store.ErrStreamBusy) {
						return err
					}
					out[p.i].Err = err
					continue
				}
				old, _, _, err := getStream(ctx, tx, p.entry.Key)
				if err != nil {
					return err
				}
				// Other bytes without replace: the events decide
				// (store.CommitExisting, store/local's rule too).
				res := store.Replaced
				if old != nil && old.Digest != p.entry.Digest && !replace {
					var err error
					res, err = store.CommitExisting(old, p.entry, s.overlap(ctx, p.entry.Key, p.w))
					if err != nil {
						out[p.i].Err = err
						continue
					}
				}
				switch {
				case old != nil && (old.Digest == p.entry.Digest || res == store.Unchanged):
					// The same bytes; or the same events in other bytes
					// (the .bep and the .json of one run), or fewer (a
					// cut copy).
					out[p.i] = store.CommitOutcome{Entry: old, Result: store.Unchanged}
					if err := putFactsIfAbsent(ctx, tx, p.entry.Key, p.facts); err != nil {
						return err
					}
					continue
				case !p.uploaded:
					missing = append(missing, p)
					continue
				case old != nil:
					out[p.i] = store.CommitOutcome{Entry: p.entry, Result: store.Replaced}
					anyReplaced = true
					if err := discard(ctx, tx, p.entry.Key); err != nil {
						return err
					}
				default:
					out[p.i] = store.CommitOutcome{Entry: p.entry, Result: store.Created}
				}
				if err := putStream(ctx, tx, p.entry, bodyGen(p.entry.File), 1); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO chunks(kid, n, blob, size, events) VALUES($1, 0, $2, $3, $4)`,
					kidOf(p.entry.Key), p.blob, p.entry.Size, p.entry.Events); err != nil {
					return err
				}
				if err := putFacts(ctx, tx, p.entry.Key, p.facts); err != nil {
					return err
				}
			}
			if len(missing) > 0 {
				return errRetry
			}
			return nil
		})
		if errors.Is(err, errRetry) {
			if err := uploadAll(missing); err != nil {
				unused(func(*pending) bool { return false })
				return nil, err
			}
			continue
		}
		if err != nil {
			unused(func(*pending) bool { return false })
			return nil, err
		}
		break
	}
	unused(func(p *pending) bool {
		r := out[p.i].Result
		return out[p.i].Err == nil && (r == store.Created || r == store.Replaced)
	})
	if anyReplaced {
		s.sweep(ctx)
	}
	return out, nil
}

// errRetry rolls back a commit that needs a body uploaded first.
var errRetry = errors.New("store: retry")

// bodyGen is the generation of a body directory (bodyDir).
func bodyGen(dir string) string { return dir[strings.LastIndexByte(dir, '/')+1:] }
