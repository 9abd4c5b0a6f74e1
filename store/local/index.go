package local

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// The index file is NDJSON: the header line below, then one Entry per line
// in strictly increasing key order (byte order). Readers stream it line by
// line; writers rewrite it whole, streaming the old one into a temporary
// file, under the lock.
const (
	indexHeader  = `{"bes_index":1}`
	maxIndexLine = 64 << 20
)

// IndexError reports an index file that cannot be read: its name, the
// 1-based line, and the cause. `bes` repairs the index with Store.Rebuild.
// Test for it with errors.As.
type IndexError struct {
	File string
	Line int
	Err  error
}

func (e *IndexError) Error() string {
	return fmt.Sprintf("%s:%d: corrupt store index (bes store check --repair rebuilds it): %v", e.File, e.Line, e.Err)
}

func (e *IndexError) Unwrap() error { return e.Err }

// errNoChange ends an index update that turns out to change nothing.
var errNoChange = errors.New("no change")

// scanIndex calls fn for each entry of the index with the entry and its
// line (without the newline; valid only during the call).
func (s *Store) scanIndex(ctx context.Context, fn func(*Entry) error) error {
	return s.scanIndexLines(ctx, func(e *Entry, _ []byte) error { return fn(e) })
}

func (s *Store) scanIndexLines(ctx context.Context, fn func(e *Entry, line []byte) error) error {
	return s.scanIndexFiltered(ctx, nil, fn)
}

// keyPrefix starts every index line bes writes: the key comes first.
const keyPrefix = `{"key":"`

// lineKey returns the key of an index line without decoding the line,
// when the line starts with the key and the key has no escapes.
func lineKey(line []byte) (string, bool) {
	if !bytes.HasPrefix(line, []byte(keyPrefix)) {
		return "", false
	}
	rest := line[len(keyPrefix):]
	i := bytes.IndexByte(rest, '"')
	if i < 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
		return "", false
	}
	return string(rest[:i]), true
}

// scanIndexFiltered is scanIndexLines that decodes only the lines whose key
// keep accepts (all when keep is nil); the key is read off the line first.
func (s *Store) scanIndexFiltered(ctx context.Context, keep func(key string) bool, fn func(e *Entry, line []byte) error) error {
	path := filepath.Join(s.dir, indexName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), maxIndexLine)
	line := 0
	var prev string
	for sc.Scan() {
		line++
		if err := ctx.Err(); err != nil {
			return err
		}
		b := sc.Bytes()
		if line == 1 {
			if string(b) != indexHeader {
				return &IndexError{File: path, Line: line, Err: fmt.Errorf("bad header %.40q", b)}
			}
			continue
		}
		if keep != nil {
			if key, ok := lineKey(b); ok {
				if line > 2 && key <= prev {
					return &IndexError{File: path, Line: line, Err: fmt.Errorf("key %q out of order", key)}
				}
				if !keep(key) {
					prev = key
					continue
				}
			}
		}
		e := &Entry{}
		if err := json.Unmarshal(b, e); err != nil {
			return &IndexError{File: path, Line: line, Err: err}
		}
		if line > 2 && e.Key <= prev {
			return &IndexError{File: path, Line: line, Err: fmt.Errorf("key %q out of order", e.Key)}
		}
		prev = e.Key
		if err := fn(e, b); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return &IndexError{File: path, Line: line + 1, Err: err}
	}
	return nil
}

// replaceIndex writes a new index with fill and puts it in place
// atomically: temporary file, fsync, beforeRename (if not nil), rename, and
// fsync of the directory. The caller holds the lock. If fill returns
// errNoChange nothing is replaced and replaceIndex returns errNoChange.
func (s *Store) replaceIndex(fill func(w *bufio.Writer) error, beforeRename func() error) (err error) {
	tmp, err := os.CreateTemp(s.dir, ".index-*"+tmpSuffix)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 64<<10)
	bw.WriteString(indexHeader + "\n")
	if err := fill(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("store: write index: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("store: write index: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store: write index: %w", err)
	}
	if beforeRename != nil {
		if err := beforeRename(); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.dir, indexName)); err != nil {
		return fmt.Errorf("store: replace index: %w", err)
	}
	renamed = true
	if err := s.syncDir(); err != nil {
		return fmt.Errorf("store: sync %s: %w", s.dir, err)
	}
	return nil
}

// rewriteIndex rewrites the index with the entries of keys (sorted, each
// once) as decide says: given the entry stored under keys[i] (nil if none),
// it returns the entry to store there, or old itself (nil when there is
// none) to leave that place as it is. decide is called once per key, in
// order. The lines of other keys are copied as they are (they keep fields a
// newer bes may add). When decide changes nothing, the index is left alone
// and rewriteIndex returns errNoChange. beforeRename is replaceIndex's; the
// caller holds the lock.
func (s *Store) rewriteIndex(ctx context.Context, keys []string, decide func(i int, old *Entry) (*Entry, error), beforeRename func() error) error {
	return s.replaceIndex(func(w *bufio.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		changed := false
		next := 0
		// apply decides the next key, stored as old (with its line) or not.
		apply := func(old *Entry, line []byte) error {
			ne, err := decide(next, old)
			next++
			switch {
			case err != nil:
				return err
			case ne != old:
				changed = true
				return enc.Encode(ne)
			case line != nil:
				w.Write(line)
				return w.WriteByte('\n')
			}
			return nil
		}
		err := s.scanIndexLines(ctx, func(e *Entry, line []byte) error {
			for next < len(keys) && keys[next] < e.Key {
				if err := apply(nil, nil); err != nil {
					return err
				}
			}
			if next < len(keys) && keys[next] == e.Key {
				return apply(e, line)
			}
			w.Write(line)
			return w.WriteByte('\n')
		})
		for err == nil && next < len(keys) {
			err = apply(nil, nil)
		}
		if err == nil && !changed {
			err = errNoChange
		}
		return err
	}, beforeRename)
}

// updateIndex rewrites the index with one entry changed. decide gets the
// entry now stored under key (nil if none) and returns the entry to store
// instead, or nil to change nothing. The caller holds the lock.
// updateIndex reports whether the index was replaced.
func (s *Store) updateIndex(ctx context.Context, key string, decide func(old *Entry) (*Entry, error), beforeRename func() error) (bool, error) {
	err := s.rewriteIndex(ctx, []string{key}, func(_ int, old *Entry) (*Entry, error) {
		ne, err := decide(old)
		if err != nil || ne == nil {
			return old, err
		}
		ne.Key = key
		return ne, nil
	}, beforeRename)
	if errors.Is(err, errNoChange) {
		return false, nil
	}
	return err == nil, err
}

// Rebuild writes the index anew from the stream files, e.g. after the index
// was lost or damaged, or a writer died between renaming a stream file and
// the index. Each stream file is read whole (to count events, gather the
// metadata, and hash it); the entries are then sorted in memory, so Rebuild
// needs memory for every entry (not for the events). Source, Format and
// Ingested cannot be found in a stream file; they are kept from the old
// index when it has the same stream with the same digest, else Ingested is
// the file's modification time.
//
// A stream file whose last record is cut short (bes serve killed while
// writing it) is indexed without that record. Damaged stream files, and
// files whose content does not match their name, are left out of the index
// and left in place; Rebuild still writes the
// index of the others and then returns an error joining one error per such
// file. Temporary files are not touched.
func (s *Store) Rebuild(ctx context.Context) error {
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()

	old := map[string]*Entry{}
	// A damaged index is what Rebuild is for: keep what can be read of it.
	_ = s.scanIndex(ctx, func(e *Entry) error {
		old[e.Key] = e
		return nil
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var entries []*Entry
	var problems []error
	for _, de := range des {
		name := de.Name()
		if !de.Type().IsRegular() || !streamFileRE.MatchString(name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := s.scanStreamFile(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			problems = append(problems, err)
			continue
		}
		if o := old[e.Key]; o != nil && o.Digest == e.Digest {
			e.Source, e.Format, e.Ingested = o.Source, o.Format, o.Ingested
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b *Entry) int { return strings.Compare(a.Key, b.Key) })
	err = s.replaceIndex(func(w *bufio.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}, nil)
	if err != nil {
		return err
	}
	return errors.Join(problems...)
}

// scanStreamFile reads a whole stream file and returns its entry, with
// Ingested set to the file's modification time. A torn last record is left
// out of the entry.
func (s *Store) scanStreamFile(ctx context.Context, name string) (*Entry, error) {
	path := filepath.Join(s.dir, name)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	size := fi.Size()
	h := sha256.New()
	rd, err := NewReader(io.TeeReader(io.NewSectionReader(f, 0, size), h), path, size)
	if err != nil {
		return nil, err
	}
	var meta store.Meta
	good := rd.Offset()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			// A last record cut short: bes serve was killed while writing
			// it, or is writing it now. The entry covers the records
			// before it (Reconcile, or the server, cuts it off).
			size = good
			h.Reset()
			if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
			break
		}
		if err != nil {
			return nil, err
		}
		meta.Observe(ev)
		good = rd.Offset()
	}
	st := rd.Stream()
	if want := FileName(st.Key); want != name {
		return nil, &CorruptError{File: path, Err: fmt.Errorf("file holds stream %q, whose file name is %s", st.Key, want)}
	}
	e := NewEntry(st, &meta)
	e.Size = size
	e.Digest = hex.EncodeToString(h.Sum(nil))
	e.Ingested = fi.ModTime().UTC()
	return e, nil
}

// NewEntry returns the entry for a stream from its identity and metadata;
// the file's size, digest and the ingestion fields are left to the caller.
func NewEntry(st *bepfile.Stream, m *store.Meta) *Entry {
	return &Entry{
		Key:          st.Key,
		BuildID:      st.ID.GetBuildId(),
		InvocationID: st.ID.GetInvocationId(),
		Component:    int32(st.ID.GetComponent()),
		Events:       m.Events,
		Complete:     m.Complete,
		Command:      m.Command,
		Result:       m.Result,
		ExitCode:     m.ExitCode,
		HasExitCode:  m.HasExitCode,
		Start:        m.Start,
		Finish:       m.Finish,
		File:         FileName(st.Key),
	}
}

// lock takes the store's write lock: this Store's mutex, then an exclusive
// flock on the lock file, waiting (and polling ctx) while another process
// holds it. unlock releases both.
func (s *Store) lock(ctx context.Context) (unlock func(), err error) {
	s.mu.Lock()
	f, err := os.OpenFile(filepath.Join(s.dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("store: %w", err)
	}
	wait := time.Millisecond
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			s.mu.Unlock()
			return nil, fmt.Errorf("store: lock %s: %w", f.Name(), err)
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			f.Close()
			s.mu.Unlock()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
	return func() {
		unlockFile(f)
		f.Close()
		s.mu.Unlock()
	}, nil
}
