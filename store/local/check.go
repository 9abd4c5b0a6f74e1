package local

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
)

// The problems Check reports, and what Repair does of them, are the
// store package's (store/check.go), shared with store/postgres.
type (
	ProblemKind  = store.ProblemKind
	Problem      = store.Problem
	CheckResult  = store.CheckResult
	RepairResult = store.RepairResult
)

// The problems Check reports (see store's ProblemKind constants). Repair
// fixes all of them, moving aside, never deleting, what it cannot index: a
// stream file that cannot be read at all (NAME.corrupt), and one whose
// content disagrees with its committed entry (NAME.quarantine).
const (
	ProblemIndex       = store.ProblemIndex
	ProblemBadName     = store.ProblemBadName
	ProblemMissing     = store.ProblemMissing
	ProblemMismatch    = store.ProblemMismatch
	ProblemMetadata    = store.ProblemMetadata
	ProblemCorrupt     = store.ProblemCorrupt
	ProblemBehind      = store.ProblemBehind
	ProblemUnindexed   = store.ProblemUnindexed
	ProblemTemp        = store.ProblemTemp
	ProblemNotRegular  = store.ProblemNotRegular
	ProblemFacts       = store.ProblemFacts
	ProblemFactsOrphan = store.ProblemFactsOrphan
)

// Check verifies that the catalog and the stream files agree: each entry's
// file exists, is its stream file, has the entry's size and digest (for a
// stream a live writer is appending to: its first Size bytes do) and the
// entry's event count and outcome; each stream no live writer holds has
// the facts of its events (store.FactsOf of the first Size bytes), and
// every facts row its stream; every stream file is indexed; no temporary
// file is left by a dead writer. It reads every stream file whole. It
// changes nothing.
//
// Check takes no lock at first, so that writers go on meanwhile; what looks
// wrong is checked again inside a write transaction of the catalog, which
// rules out a writer caught in the middle of a commit. The error is for
// Check itself failing (ctx done, the directory unreadable); a damaged
// catalog is a Problem.
func (s *Store) Check(ctx context.Context) (*CheckResult, error) {
	res, err := s.check(ctx, nil, nil)
	if err != nil || res.OK() {
		return res, err
	}
	suspect := map[string]bool{}
	for _, p := range res.Problems {
		if p.Kind == ProblemIndex {
			return res, nil // no transaction to be had
		}
		suspect[p.File] = true
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		res, err = s.check(ctx, tx, suspect)
		return err
	})
	return res, err
}

// check is one pass of Check. With tx, the caller holds the catalog's
// write transaction: no commit is half done, and a stream file's flock
// tells whether an Appender holds it (OpenAppend takes it only inside a
// write transaction). only, if not nil, limits the pass to those file
// names, but for the counts.
func (s *Store) check(ctx context.Context, tx *sql.Tx, only map[string]bool) (*CheckResult, error) {
	locked := tx != nil
	res := &CheckResult{}
	want := func(name string) bool { return only == nil || only[name] }
	named := map[string]bool{}
	indexOK := true
	// stored reads the facts the catalog holds of a key.
	stored := func(key string) (*store.Facts, error) {
		if tx != nil {
			return readFactsTx(ctx, tx, key)
		}
		db, err := s.catalog(ctx, false)
		if err != nil || db == nil {
			return nil, err
		}
		rtx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return nil, err
		}
		defer rtx.Rollback()
		return readFactsTx(ctx, rtx, key)
	}
	visit := func(e *Entry) error {
		res.Entries++
		named[e.File] = true
		if !want(e.File) {
			return nil
		}
		p, open, err := s.checkEntry(ctx, e, locked, stored)
		switch {
		case err != nil:
			return err
		case p != nil:
			res.Problems = append(res.Problems, *p)
		case open:
			res.Open = append(res.Open, e.Key)
		}
		return nil
	}
	var err error
	if tx != nil {
		err = eachEntryTx(ctx, tx, visit)
	} else {
		err = s.List(ctx, visit)
	}
	var ie *IndexError
	switch {
	case errors.As(err, &ie):
		indexOK = false
		res.Entries = 0
		res.Problems = append(res.Problems[:0], Problem{Kind: ProblemIndex, File: catalogName, Detail: ie.Error()})
		res.Open = nil
	case err != nil:
		return nil, err
	}

	if indexOK && want(catalogName) {
		var q queryer
		if tx != nil {
			q = tx
		} else if db, err := s.catalog(ctx, false); err != nil {
			return nil, err
		} else if db != nil {
			q = db
		}
		if q != nil {
			keys, err := orphanFacts(ctx, q)
			if err != nil {
				return nil, err
			}
			for _, k := range keys {
				res.Problems = append(res.Problems, Problem{Kind: ProblemFactsOrphan, File: catalogName, Key: k,
					Detail: "the catalog holds facts of a stream it does not list"})
			}
		}
	}

	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var files, temps []string
	for _, de := range des {
		name := de.Name()
		switch {
		case name == tempDirName && de.IsDir():
			// The temporary files' directory: its files are below.
		case !de.Type().IsRegular():
			if want(name) && !slices.ContainsFunc(res.Problems, func(p Problem) bool { return p.File == name }) {
				res.Problems = append(res.Problems, Problem{Kind: ProblemNotRegular, File: name, Detail: s.notRegular(name)})
			}
		case streamFileRE.MatchString(name):
			files = append(files, name)
		case isTemp(name):
			temps = append(temps, name)
		}
	}
	res.Files = len(files)
	inTemp, err := s.tempNames(false)
	if err != nil {
		return nil, err
	}
	temps = append(temps, inTemp...)

	if indexOK {
		for _, name := range files {
			if named[name] || !want(name) {
				continue
			}
			// Probed only inside the transaction, where no Appender can be
			// taking its flock (so the probe never makes it fail).
			if locked && fileHeld(filepath.Join(s.dir, name)) {
				continue
			}
			res.Problems = append(res.Problems, Problem{Kind: ProblemUnindexed, File: name, Key: s.headerKey(name),
				Detail: "no catalog entry names this stream file (a writer died before the catalog listed it)"})
		}
	}
	for _, name := range temps {
		if want(name) && s.staleTemp(name) {
			res.Problems = append(res.Problems, Problem{Kind: ProblemTemp, File: name, Detail: "left by a writer that died"})
		}
	}
	slices.SortStableFunc(res.Problems, func(a, b Problem) int { return cmp.Compare(a.File, b.File) })
	return res, nil
}

// eachEntryTx calls fn for every entry, in key order, within tx.
func eachEntryTx(ctx context.Context, tx *sql.Tx, fn func(*Entry) error) error {
	rows, err := tx.QueryContext(ctx, `SELECT `+entryColumns+` FROM streams ORDER BY key`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// checkEntry checks one entry against its stream file, and the facts
// stored holds of it against the file's first Size bytes. open reports a
// file that a live Appender holds and that is ahead of its entry. err is
// for ctx and the catalog only.
func (s *Store) checkEntry(ctx context.Context, e *Entry, locked bool, stored func(key string) (*store.Facts, error)) (p *Problem, open bool, err error) {
	problem := func(kind ProblemKind, format string, args ...any) (*Problem, bool, error) {
		return &Problem{Kind: kind, File: e.File, Key: e.Key, Detail: fmt.Sprintf(format, args...)}, false, nil
	}
	if !streamFileRE.MatchString(e.File) || e.File != FileName(e.Key) {
		return problem(ProblemBadName, "the entry names file %q, the stream's file is %s", e.File, FileName(e.Key))
	}
	path := filepath.Join(s.dir, e.File)
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return problem(ProblemNotRegular, "%s; the stream's file should be here", s.notRegular(e.File))
	}
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow|nonBlock, 0)
	if errors.Is(err, os.ErrNotExist) {
		return problem(ProblemMissing, "the stream file does not exist")
	}
	if err != nil {
		return problem(ProblemCorrupt, "%v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return problem(ProblemCorrupt, "%v", err)
	}
	if fi.Size() < e.Size {
		return problem(ProblemMismatch, "the file has %d bytes, the catalog says %d", fi.Size(), e.Size)
	}
	// The entry describes the first e.Size bytes; a live Appender only
	// ever adds after them.
	h := sha256.New()
	rd, err := bess.NewReader(io.TeeReader(io.NewSectionReader(f, 0, e.Size), h), path, e.Size)
	if err != nil {
		return problem(ProblemCorrupt, "%v", err)
	}
	if k := rd.Stream().Key; k != e.Key {
		return problem(ProblemMismatch, "the file holds stream %q", k)
	}
	var meta store.Meta
	var fb *store.FactsBuilder
	if err := each(ctx, rd, func(ev *bepfile.Event) error {
		meta.Observe(ev)
		if fb == nil {
			fb = store.NewFactsBuilder(rd.Stream())
		}
		fb.Add(ev)
		return nil
	}); err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		// Records the entry vouches for that cannot be read (a checksum
		// that fails, a record cut short): the content is not what was
		// committed, so it is quarantined, never indexed as it is.
		return problem(ProblemMismatch, "the bytes the catalog entry vouches for are damaged: %v", err)
	}
	if d := hex.EncodeToString(h.Sum(nil)); d != e.Digest {
		return problem(ProblemMismatch, "the first %d bytes have digest %s, the catalog says %s", e.Size, d, e.Digest)
	}
	if diff := metaDiff(e, NewEntry(rd.Stream(), &meta)); diff != "" {
		return problem(ProblemMetadata, "%s", diff)
	}
	if fi.Size() > e.Size {
		if locked && fileHeld(path) {
			return nil, true, nil
		}
		// The records past the entry were synced (acknowledged) by a
		// server that stopped before it updated the entry: a last one cut
		// short is a write it never finished (Repair cuts it off), any
		// other fault is damage, which Repair must not index.
		if err := checkTail(ctx, f, path, e.Size, fi.Size()); err != nil {
			if ctx.Err() != nil {
				return nil, false, ctx.Err()
			}
			return problem(ProblemMismatch, "the records after the %d bytes the catalog entry vouches for are damaged: %v", e.Size, err)
		}
		return problem(ProblemBehind, "the file has %d bytes, the catalog says %d: a server stopped before updating the catalog", fi.Size(), e.Size)
	}
	var want *store.Facts
	if fb != nil {
		want = fb.Facts()
	}
	got, err := stored(e.Key)
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		return nil, false, fmt.Errorf("store: facts of %s: %w", ShortKey(e.Key), err)
	}
	if diff := factsDiff(got, want); diff != "" {
		// A live Appender writes the facts when it closes the stream.
		if locked && fileHeld(path) {
			return nil, false, nil
		}
		return problem(ProblemFacts, "%s", diff)
	}
	return nil, false, nil
}

// checkTail reads the records of the stream file f (of size bytes) that
// start at or after vouched, the size its catalog entry vouches for, and
// returns the first fault among them but a last record cut short.
func checkTail(ctx context.Context, f *os.File, path string, vouched, size int64) error {
	rd, err := bess.NewReader(io.NewSectionReader(f, 0, size), path, size)
	if err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := rd.Offset()
		_, err := rd.Next()
		switch {
		case err == io.EOF:
			return nil
		case err != nil && start >= vouched && torn(err):
			return nil
		case err != nil:
			return err
		}
	}
}

// metaDiff describes how an entry differs from the one made from its file,
// in the fields taken from the stream; "" if it does not (store.EntryDiff).
func metaDiff(e, file *Entry) string { return store.EntryDiff(e, file) }

// headerKey returns the key of the stream a stream file holds, or "".
func (s *Store) headerKey(name string) string {
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDONLY|noFollow, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	rd, err := bess.NewReader(f, name, -1)
	if err != nil {
		return ""
	}
	return rd.Stream().Key
}

// notRegular describes the file name of the store directory, which is not
// a regular file.
func (s *Store) notRegular(name string) string {
	path := filepath.Join(s.dir, name)
	fi, err := os.Lstat(path)
	if err != nil {
		return err.Error()
	}
	d := "not a regular file but " + fileType(fi.Mode())
	if fi.Mode()&os.ModeSymlink != 0 {
		if to, err := os.Readlink(path); err == nil {
			d += fmt.Sprintf(" to %q (never followed)", to)
		}
	}
	return d
}

// removeNotRegular removes name, which is not a regular file, from the
// store directory: a symbolic link itself (never what it points to), a
// named pipe or socket, a directory only if it is empty.
func (s *Store) removeNotRegular(name string) error {
	path := filepath.Join(s.dir, name)
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().IsRegular() {
		return err
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return s.syncDir()
}

// fileHeld reports whether another open file holds a flock on path.
func fileHeld(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow|nonBlock, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	ok, err := tryLock(f)
	if err != nil {
		return false
	}
	if ok {
		unlockFile(f)
	}
	return !ok
}

// Repair makes the store consistent again after a crash or damage, as far
// as the stream files allow, fixing what Check finds and nothing else:
//
//   - a damaged catalog is moved aside (catalog.db.corrupt-TIME; never
//     while another process has the store open) and rebuilt from the stream
//     files (Rebuild);
//   - an entry whose file is missing, or names another file, is dropped;
//   - a stream file whose content disagrees with its committed entry
//     (shorter, another digest, another stream) is quarantined: moved aside
//     as NAME.quarantine, its entry dropped, never indexed as it is;
//   - a stream file that cannot be read at all is moved aside as
//     NAME.corrupt, its entry dropped;
//   - an entry whose event count or outcome differ from its file (whose
//     digest it has) is written anew from the file;
//   - a stream file no entry names is indexed from its content (a stream
//     over the store's limits, or unreadable, is moved aside instead);
//   - entries behind their files are reconciled (see Reconcile), and stale
//     temporary files removed;
//   - the facts of a stream that are missing or disagree with its events
//     are written anew from its file (after all of the above, so that the
//     streams it indexed get theirs), and facts of a key the catalog does
//     not list are dropped.
//
// A stream file a live Appender holds (bes serve receiving it) is never
// read, moved or changed: it is told apart by its flock, probed inside the
// catalog's write transaction, in which no Appender can be opening it
// (where there is no flock, as on Windows, run Repair only while no other
// bes writes to the store). Each change is one Action. The error is for
// Repair itself failing.
func (s *Store) Repair(ctx context.Context) (*RepairResult, error) {
	before, err := s.Check(ctx)
	if err != nil {
		return nil, err
	}
	res := &RepairResult{Before: before}
	if before.OK() {
		res.After = before
		return res, nil
	}
	fix := false
	for _, p := range before.Problems {
		switch p.Kind {
		case ProblemIndex:
			if err := s.repairCatalog(ctx, res); err != nil {
				return nil, err
			}
		case ProblemBehind, ProblemTemp:
		default:
			fix = true
		}
	}
	if fix {
		err := s.write(ctx, func(tx *sql.Tx) error {
			actions, err := s.fixLocked(ctx, tx, before)
			res.Actions = append(res.Actions, actions...)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	fixed, err := s.Reconcile(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range fixed {
		res.Actions = append(res.Actions, fmt.Sprintf("stream %s: index entry updated from its file", k))
	}
	removed, err := s.removeStaleTemps(ctx, true)
	if err != nil {
		return nil, err
	}
	for _, name := range removed {
		res.Actions = append(res.Actions, "removed stale temporary file "+name)
	}
	// The streams a rebuilt catalog indexed have no facts yet.
	if mid, err := s.Check(ctx); err != nil {
		return nil, err
	} else if hasFactsProblem(mid) {
		err := s.write(ctx, func(tx *sql.Tx) error {
			actions, err := s.fixLocked(ctx, tx, mid)
			res.Actions = append(res.Actions, actions...)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if res.After, err = s.Check(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// fixLocked fixes, inside the catalog's write transaction tx, the problems
// of the entries and stream files that Check found in before and that are
// still there, and returns what it did.
func (s *Store) fixLocked(ctx context.Context, tx *sql.Tx, before *CheckResult) ([]string, error) {
	suspect := map[string]bool{}
	for _, p := range before.Problems {
		suspect[p.File] = true
	}
	now, err := s.check(ctx, tx, suspect)
	if err != nil {
		return nil, err
	}
	var actions []string
	dropped := map[string]*Entry{} // by key: entries dropped, whose source fields a file indexed again keeps
	drop := func(key string) error {
		e, err := getEntryTx(ctx, tx, key)
		if err != nil || e == nil {
			return err
		}
		dropped[key] = e
		return deleteEntryTx(ctx, tx, key)
	}
	var unindexed []Problem
	for _, p := range now.Problems {
		if err := ctx.Err(); err != nil {
			return actions, err
		}
		switch p.Kind {
		case ProblemBadName:
			if err := drop(p.Key); err != nil {
				return actions, err
			}
			actions = append(actions, fmt.Sprintf("stream %s: dropped the entry naming file %q (its own stream file, if any, is indexed from its content)", ShortKey(p.Key), p.File))
			if name := FileName(p.Key); fileExists(filepath.Join(s.dir, name)) {
				unindexed = append(unindexed, Problem{Kind: ProblemUnindexed, File: name, Key: p.Key})
			}
		case ProblemMissing:
			if err := drop(p.Key); err != nil {
				return actions, err
			}
			actions = append(actions, fmt.Sprintf("stream %s: dropped the entry of missing file %s", ShortKey(p.Key), p.File))
		case ProblemMismatch, ProblemCorrupt:
			suffix, why := ".quarantine", "quarantined"
			if p.Kind == ProblemCorrupt {
				suffix, why = ".corrupt", "moved"
			}
			moved, err := s.moveAside(p.File, suffix)
			if err != nil {
				return actions, err
			}
			if !moved {
				continue // a live writer took it meanwhile
			}
			if err := drop(p.Key); err != nil {
				return actions, err
			}
			if p.Kind == ProblemMismatch {
				actions = append(actions, fmt.Sprintf("%s %s aside as %s: its content disagrees with the catalog entry of stream %s (%s); the entry is dropped", why, p.File, p.File+suffix, ShortKey(p.Key), p.Detail))
			} else {
				actions = append(actions, fmt.Sprintf("%s %s aside as %s: %s", why, p.File, p.File+suffix, p.Detail))
			}
		case ProblemMetadata:
			old, err := getEntryTx(ctx, tx, p.Key)
			if err != nil {
				return actions, err
			}
			e, held, err := s.scanUnheld(ctx, p.File)
			if held || old == nil {
				continue
			}
			if err != nil || e.Key != old.Key {
				continue // Check will say so again
			}
			e.Source, e.Format, e.Ingested = old.Source, old.Format, old.Ingested
			if err := putEntryTx(ctx, tx, e); err != nil {
				return actions, err
			}
			if err := s.putStreamFactsTx(ctx, tx, e); err != nil {
				return actions, err
			}
			actions = append(actions, fmt.Sprintf("stream %s: entry written anew from its file %s (%s)", ShortKey(p.Key), p.File, p.Detail))
		case ProblemUnindexed:
			unindexed = append(unindexed, p)
		case ProblemNotRegular:
			if err := s.removeNotRegular(p.File); err != nil {
				actions = append(actions, fmt.Sprintf("left %s: %v", p.File, err))
				continue
			}
			what := "removed " + p.File + ": " + p.Detail
			if p.Key != "" {
				if err := drop(p.Key); err != nil {
					return actions, err
				}
				what += fmt.Sprintf("; dropped the entry of stream %s, whose file it stood for", ShortKey(p.Key))
			}
			actions = append(actions, what)
		case ProblemFacts:
			e, err := getEntryTx(ctx, tx, p.Key)
			if err != nil {
				return actions, err
			}
			if e == nil || fileHeld(filepath.Join(s.dir, e.File)) {
				continue
			}
			f, err := s.streamFacts(ctx, e)
			if err != nil {
				if ctx.Err() != nil {
					return actions, ctx.Err()
				}
				continue // Check will say so again
			}
			if err := putFactsTx(ctx, tx, e.Key, f); err != nil {
				return actions, err
			}
			actions = append(actions, fmt.Sprintf("stream %s: facts written anew from its file %s (%s)", ShortKey(p.Key), e.File, p.Detail))
		case ProblemFactsOrphan:
			if err := deleteFactsTx(ctx, tx, p.Key); err != nil {
				return actions, err
			}
			actions = append(actions, fmt.Sprintf("stream %s: dropped the facts of a stream the catalog does not list", ShortKey(p.Key)))
		}
	}
	seen := map[string]bool{}
	for _, p := range unindexed {
		if seen[p.File] {
			continue
		}
		seen[p.File] = true
		e, held, err := s.scanUnheld(ctx, p.File)
		switch {
		case held:
			continue
		case err != nil && ctx.Err() != nil:
			return actions, ctx.Err()
		case err != nil:
			suffix, why := asideFor(err)
			moved, merr := s.moveAside(p.File, suffix)
			if merr != nil {
				return actions, merr
			}
			if moved {
				actions = append(actions, fmt.Sprintf("%s %s aside as %s: %v", why, p.File, p.File+suffix, err))
			}
			continue
		}
		if cur, err := getEntryTx(ctx, tx, e.Key); err != nil {
			return actions, err
		} else if cur != nil && cur.File == p.File {
			continue // indexed meanwhile
		}
		if o := dropped[e.Key]; o != nil && o.Digest == e.Digest {
			e.Source, e.Format, e.Ingested = o.Source, o.Format, o.Ingested
		}
		if err := putEntryTx(ctx, tx, e); err != nil {
			return actions, err
		}
		if err := s.putStreamFactsTx(ctx, tx, e); err != nil {
			return actions, err
		}
		actions = append(actions, fmt.Sprintf("stream %s: indexed from its file %s (%d events)", ShortKey(e.Key), p.File, e.Events))
	}
	return actions, nil
}

// asideFor returns the suffix a stream file that could not be indexed
// for err is moved aside with, and the verb that says so: a file written
// whole that is cut short (bess.ErrCut) holds less than was committed,
// and is quarantined (NAME.quarantine), never indexed as a partial stream
// (issue 13); any other fault moves it aside as NAME.corrupt.
func asideFor(err error) (suffix, why string) {
	if errors.Is(err, bess.ErrCut) {
		return ".quarantine", "quarantined"
	}
	return ".corrupt", "moved"
}

// hasFactsProblem reports whether r holds a problem of facts.
func hasFactsProblem(r *CheckResult) bool {
	for _, p := range r.Problems {
		if p.Kind == ProblemFacts || p.Kind == ProblemFactsOrphan {
			return true
		}
	}
	return false
}

// moveAside renames the stream file name to name+suffix (or, if that is
// taken, name+suffix+".N"), holding its flock meanwhile; a file a live
// writer holds is left alone (moved false). The caller holds the catalog's
// write transaction.
func (s *Store) moveAside(name, suffix string) (moved bool, err error) {
	path := filepath.Join(s.dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	ok, err := tryLock(f)
	if err != nil {
		return false, fmt.Errorf("store: lock %s: %w", path, err)
	}
	if !ok {
		return false, nil
	}
	defer unlockFile(f)
	to := path + suffix
	for n := 1; fileExists(to); n++ {
		to = fmt.Sprintf("%s%s.%d", path, suffix, n)
	}
	if err := os.Rename(path, to); err != nil {
		return false, fmt.Errorf("store: %w", err)
	}
	if err := s.syncDir(); err != nil {
		return false, fmt.Errorf("store: sync %s: %w", s.dir, err)
	}
	return true, nil
}

// repairCatalog moves a damaged catalog aside and rebuilds it from the
// stream files, moving aside those that cannot be read. It refuses while
// another process (or another Store of this one) has the store open: the
// catalog it uses must not move under it.
func (s *Store) repairCatalog(ctx context.Context, res *RepairResult) error {
	aside, err := s.resetCatalog(ctx)
	if err != nil {
		return err
	}
	res.Actions = append(res.Actions, fmt.Sprintf("moved the damaged catalog aside as %s", aside))
	err = s.Rebuild(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var corrupt []*CorruptError
	for _, e := range unjoin(err) {
		var ce *CorruptError
		if !errors.As(e, &ce) {
			return err
		}
		corrupt = append(corrupt, ce)
	}
	for _, ce := range corrupt {
		name := filepath.Base(ce.File)
		suffix, why := asideFor(ce)
		moved, err := s.moveAside(name, suffix)
		if err != nil {
			return err
		}
		if moved {
			res.Actions = append(res.Actions, fmt.Sprintf("%s %s aside as %s: %v", why, name, name+suffix, ce))
		}
	}
	n := 0
	if err := s.List(ctx, func(*Entry) error { n++; return nil }); err != nil {
		return err
	}
	res.Actions = append(res.Actions, fmt.Sprintf("rebuilt the catalog from the stream files: %d entries", n))
	return nil
}

// resetCatalog closes the catalog, moves catalog.db (and its write-ahead
// log) aside as catalog.db.corrupt-TIME, and returns that name; the next
// use of the store creates a new catalog. It takes the store's lock file
// exclusively, so it fails, changing nothing, while any other process or
// Store has the catalog open.
func (s *Store) resetCatalog(ctx context.Context) (string, error) {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
	s.unlockShared()
	f, err := os.OpenFile(filepath.Join(s.dir, lockName), os.O_RDWR|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	ok, err := tryLock(f)
	if err != nil {
		return "", fmt.Errorf("store: lock %s: %w", f.Name(), err)
	}
	if !ok {
		return "", fmt.Errorf("store: the catalog %s is damaged, and another bes has the store open: stop it (bes serve?) and run bes store check --repair again", filepath.Join(s.dir, catalogName))
	}
	defer unlockFile(f)
	aside := catalogName + ".corrupt-" + s.now().UTC().Format("20060102T150405Z")
	for n := 1; fileExists(filepath.Join(s.dir, aside)); n++ {
		aside = fmt.Sprintf("%s.corrupt-%s.%d", catalogName, s.now().UTC().Format("20060102T150405Z"), n)
	}
	base := filepath.Join(s.dir, catalogName)
	if err := os.Rename(base, filepath.Join(s.dir, aside)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("store: %w", err)
	}
	if err := os.Rename(base+"-wal", filepath.Join(s.dir, aside+"-wal")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("store: %w", err)
	}
	if err := os.Remove(base + "-shm"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("store: %w", err)
	}
	if err := s.syncDir(); err != nil {
		return "", fmt.Errorf("store: sync %s: %w", s.dir, err)
	}
	return aside, nil
}

// unjoin returns the errors errors.Join joined, or err alone.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
