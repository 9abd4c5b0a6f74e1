package local

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// ProblemKind names what Check found wrong with a store.
type ProblemKind string

// The problems Check reports. Repair fixes all of them, but for a stream
// file that cannot be read at all, which it moves aside.
const (
	// ProblemIndex: the index cannot be read (Repair rebuilds it).
	ProblemIndex ProblemKind = "bad index"
	// ProblemBadName: an entry names a file that is not its stream file.
	ProblemBadName ProblemKind = "bad file name"
	// ProblemMissing: an entry's stream file does not exist.
	ProblemMissing ProblemKind = "missing file"
	// ProblemMismatch: the stream file is not what the entry describes:
	// shorter, another digest, another stream.
	ProblemMismatch ProblemKind = "content mismatch"
	// ProblemMetadata: the entry's event count, completeness or outcome
	// differ from the stream file's.
	ProblemMetadata ProblemKind = "metadata mismatch"
	// ProblemCorrupt: the stream file cannot be read.
	ProblemCorrupt ProblemKind = "corrupt file"
	// ProblemBehind: the stream file holds more than its entry says and no
	// writer has it open: a server was killed before it updated the index
	// (Repair reconciles the entry, cutting off a torn last record).
	ProblemBehind ProblemKind = "entry behind file"
	// ProblemUnindexed: no entry names a stream file (a writer died between
	// the two renames of a commit, or the index was damaged).
	ProblemUnindexed ProblemKind = "not indexed"
	// ProblemTemp: a temporary file that no live writer holds, left by a
	// writer that was killed (Repair removes it).
	ProblemTemp ProblemKind = "stale temporary file"
)

// Problem is one inconsistency Check found.
type Problem struct {
	Kind ProblemKind `json:"problem"`
	// File is the file concerned, relative to the store directory.
	File string `json:"file"`
	// Key is the stream's key, when it is known.
	Key    string `json:"key,omitempty"`
	Detail string `json:"detail"`
}

// CheckResult is what Check found.
type CheckResult struct {
	// Entries is the number of index entries, Files the number of stream
	// files.
	Entries, Files int
	// Open lists the keys of the streams that a live writer (bes serve) is
	// appending to: their files may hold more than their entries say.
	Open []string
	// Problems is empty for a consistent store.
	Problems []Problem
}

// OK reports whether the store is consistent.
func (r *CheckResult) OK() bool { return len(r.Problems) == 0 }

// Check verifies that the index and the stream files agree: each entry's
// file exists, is its stream file, has the entry's size and digest (for a
// stream a live writer is appending to: its first Size bytes do) and the
// entry's event count and outcome; every stream file is indexed; no
// temporary file is left by a dead writer. It reads every stream file
// whole. It changes nothing.
//
// Check takes no lock at first, so that writers go on meanwhile; what looks
// wrong is checked again holding the store's lock, which rules out a
// writer caught in the middle of a commit. The error is for Check itself
// failing (ctx done, the directory unreadable); a damaged index is a
// Problem.
func (s *Store) Check(ctx context.Context) (*CheckResult, error) {
	res, err := s.check(ctx, false, nil)
	if err != nil || res.OK() {
		return res, err
	}
	suspect := map[string]bool{}
	for _, p := range res.Problems {
		suspect[p.File] = true
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.check(ctx, true, suspect)
}

// check is one pass of Check. With locked, the caller holds the store's
// lock: index temporary files are then stale, and a stream file's flock
// tells whether an Appender holds it (OpenAppend tries it only under the
// store's lock). only, if not nil, limits the pass to those file names,
// but for the counts.
func (s *Store) check(ctx context.Context, locked bool, only map[string]bool) (*CheckResult, error) {
	res := &CheckResult{}
	want := func(name string) bool { return only == nil || only[name] }
	var entries []*Entry
	indexOK := true
	err := s.scanIndex(ctx, func(e *Entry) error {
		entries = append(entries, e)
		return nil
	})
	var ie *IndexError
	switch {
	case errors.As(err, &ie):
		indexOK = false
		if want(indexName) {
			res.Problems = append(res.Problems, Problem{Kind: ProblemIndex, File: indexName, Detail: ie.Error()})
		}
	case err != nil:
		return nil, err
	}
	res.Entries = len(entries)

	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var files, temps []string
	for _, de := range des {
		name := de.Name()
		switch {
		case streamFileRE.MatchString(name) && de.Type().IsRegular():
			files = append(files, name)
		case strings.HasPrefix(name, ".") && strings.HasSuffix(name, tmpSuffix):
			temps = append(temps, name)
		}
	}
	res.Files = len(files)

	named := map[string]bool{}
	for _, e := range entries {
		named[e.File] = true
		if !want(e.File) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, open, err := s.checkEntry(ctx, e, locked)
		switch {
		case err != nil:
			return nil, err
		case p != nil:
			res.Problems = append(res.Problems, *p)
		case open:
			res.Open = append(res.Open, e.Key)
		}
	}
	if indexOK {
		for _, name := range files {
			if named[name] || !want(name) {
				continue
			}
			// A new stream's Appender holds its file a moment before the
			// index names it. Probed only under the lock, which OpenAppend
			// takes its flock under too, so that the probe never makes it
			// fail.
			if locked && fileHeld(filepath.Join(s.dir, name)) {
				continue
			}
			res.Problems = append(res.Problems, Problem{Kind: ProblemUnindexed, File: name, Key: s.headerKey(name),
				Detail: "no index entry names this stream file (a writer died before updating the index)"})
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

// checkEntry checks one entry against its stream file. open reports a
// file that a live Appender holds and that is ahead of its entry. err is
// for ctx only.
func (s *Store) checkEntry(ctx context.Context, e *Entry, locked bool) (p *Problem, open bool, err error) {
	problem := func(kind ProblemKind, format string, args ...any) (*Problem, bool, error) {
		return &Problem{Kind: kind, File: e.File, Key: e.Key, Detail: fmt.Sprintf(format, args...)}, false, nil
	}
	if !streamFileRE.MatchString(e.File) || e.File != FileName(e.Key) {
		return problem(ProblemBadName, "the entry names file %q, the stream's file is %s", e.File, FileName(e.Key))
	}
	path := filepath.Join(s.dir, e.File)
	f, err := os.Open(path)
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
		return problem(ProblemMismatch, "the file has %d bytes, the index says %d", fi.Size(), e.Size)
	}
	// The entry describes the first e.Size bytes; a live Appender only
	// ever adds after them.
	h := sha256.New()
	rd, err := NewReader(io.TeeReader(io.NewSectionReader(f, 0, e.Size), h), path, e.Size)
	if err != nil {
		return problem(ProblemCorrupt, "%v", err)
	}
	if k := rd.Stream().Key; k != e.Key {
		return problem(ProblemMismatch, "the file holds stream %q", k)
	}
	var meta store.Meta
	if err := each(ctx, rd, func(ev *bepfile.Event) error {
		meta.Observe(ev)
		return nil
	}); err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		return problem(ProblemCorrupt, "%v", err)
	}
	if d := hex.EncodeToString(h.Sum(nil)); d != e.Digest {
		return problem(ProblemMismatch, "the first %d bytes have digest %s, the index says %s", e.Size, d, e.Digest)
	}
	if diff := metaDiff(e, NewEntry(rd.Stream(), &meta)); diff != "" {
		return problem(ProblemMetadata, "%s", diff)
	}
	if fi.Size() > e.Size {
		if locked && fileHeld(path) {
			return nil, true, nil
		}
		return problem(ProblemBehind, "the file has %d bytes, the index says %d: a server stopped before updating the index", fi.Size(), e.Size)
	}
	return nil, false, nil
}

// metaDiff describes how an entry differs from the one made from its file,
// in the fields taken from the stream; "" if it does not.
func metaDiff(e, file *Entry) string {
	var d []string
	add := func(name string, got, want any) {
		d = append(d, fmt.Sprintf("%s %v, the file's %v", name, got, want))
	}
	if e.BuildID != file.BuildID || e.InvocationID != file.InvocationID || e.Component != file.Component {
		add("ids", []any{e.BuildID, e.InvocationID, e.Component}, []any{file.BuildID, file.InvocationID, file.Component})
	}
	if e.Events != file.Events {
		add("events", e.Events, file.Events)
	}
	if e.Complete != file.Complete {
		add("complete", e.Complete, file.Complete)
	}
	if e.Command != file.Command || e.Result != file.Result || e.ExitCode != file.ExitCode || e.HasExitCode != file.HasExitCode {
		add("outcome", []any{e.Command, e.Result, e.ExitCode}, []any{file.Command, file.Result, file.ExitCode})
	}
	if !e.Start.Equal(file.Start) || !e.Finish.Equal(file.Finish) {
		add("times", []any{e.Start, e.Finish}, []any{file.Start, file.Finish})
	}
	if len(d) == 0 {
		return ""
	}
	return "the index says " + strings.Join(d, "; ")
}

// headerKey returns the key of the stream a stream file holds, or "".
func (s *Store) headerKey(name string) string {
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return ""
	}
	defer f.Close()
	rd, err := NewReader(f, name, -1)
	if err != nil {
		return ""
	}
	return rd.Stream().Key
}

// fileHeld reports whether another open file holds a flock on path.
func fileHeld(path string) bool {
	f, err := os.Open(path)
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

// staleTemp reports whether the temporary file name looks left by a dead
// writer: a stream temporary file when no StreamWriter holds its flock; an
// index temporary file always, since only writers holding the store's lock
// make them: without the lock it is a suspect that the locked pass of
// Check decides on.
func (s *Store) staleTemp(name string) bool {
	if strings.HasPrefix(name, ".index-") {
		return true
	}
	return !fileHeld(filepath.Join(s.dir, name))
}

// createLockedTemp creates a temporary file in dir and takes a flock on it,
// which tells Check and Repair that a live writer owns it. A file that
// Repair removed before it was locked (it looked stale), or that Check or
// Repair is probing at that very moment, is given up for another.
func createLockedTemp(dir, pattern string) (*os.File, error) {
	for range 100 {
		f, err := os.CreateTemp(dir, pattern)
		if err != nil {
			return nil, err
		}
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if ok {
			fi, err1 := f.Stat()
			now, err2 := os.Stat(f.Name())
			if err1 == nil && err2 == nil && os.SameFile(fi, now) {
				return f, nil
			}
			unlockFile(f) // removed by Repair
		}
		f.Close()
		os.Remove(f.Name()) // a random name: no one else's
	}
	return nil, fmt.Errorf("cannot lock a temporary file in %s", dir)
}

// RepairResult is what Repair did.
type RepairResult struct {
	// Before is what Check found first, After what it found once Repair
	// was done.
	Before, After *CheckResult
	// Actions describes each change, one line each.
	Actions []string
}

// Repair makes the store consistent again after a crash or damage, as far
// as the stream files allow: when Check finds anything but entries behind
// their files and stale temporary files, it rebuilds the index from the
// stream files (see Rebuild), first moving aside, as NAME.corrupt, every
// stream file that cannot be read at all; it then reconciles the entries
// behind their files (see Reconcile), and removes stale temporary files.
// Streams live writers hold are left alone (they are told apart by their
// flock: where there is none, as on Windows, run Repair only while no other
// bes writes to the store). The error is for Repair itself failing.
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
	rebuild := false
	for _, p := range before.Problems {
		if p.Kind != ProblemBehind && p.Kind != ProblemTemp {
			rebuild = true
		}
	}
	if rebuild {
		err := s.Rebuild(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var corrupt []*CorruptError
		for _, e := range unjoin(err) {
			var ce *CorruptError
			if !errors.As(e, &ce) {
				return nil, err
			}
			corrupt = append(corrupt, ce)
		}
		for _, ce := range corrupt {
			if err := os.Rename(ce.File, ce.File+".corrupt"); err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
			res.Actions = append(res.Actions, fmt.Sprintf("moved %s aside as %s: %v", filepath.Base(ce.File), filepath.Base(ce.File)+".corrupt", ce.Err))
		}
		n := 0
		if err := s.scanIndex(ctx, func(*Entry) error { n++; return nil }); err != nil {
			return nil, err
		}
		res.Actions = append(res.Actions, fmt.Sprintf("rebuilt the index from the stream files: %d entries", n))
	}
	fixed, err := s.Reconcile(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range fixed {
		res.Actions = append(res.Actions, fmt.Sprintf("stream %s: index entry updated from its file", k))
	}
	removed, err := s.removeStaleTemps(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range removed {
		res.Actions = append(res.Actions, "removed stale temporary file "+name)
	}
	if res.After, err = s.Check(ctx); err != nil {
		return nil, err
	}
	return res, nil
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

// removeStaleTemps removes, under the store's lock, the temporary files no
// live writer holds, and returns their names.
func (s *Store) removeStaleTemps(ctx context.Context) ([]string, error) {
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var removed []string
	for _, de := range des {
		name := de.Name()
		if !strings.HasPrefix(name, ".") || !strings.HasSuffix(name, tmpSuffix) {
			continue
		}
		path := filepath.Join(s.dir, name)
		if strings.HasPrefix(name, ".index-") {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return removed, fmt.Errorf("store: %w", err)
			}
			removed = append(removed, name)
			continue
		}
		// Hold the flock while removing, so that a writer that has just
		// made the file sees it gone (see createLockedTemp).
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		ok, err := tryLock(f)
		if err == nil && ok {
			if err := os.Remove(path); err == nil {
				removed = append(removed, name)
			}
			unlockFile(f)
		}
		f.Close()
	}
	return removed, nil
}
