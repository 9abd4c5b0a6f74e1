package local

import (
	clist "container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Temporary stream files, and how many of them are open.
//
// A StreamWriter writes its stream into a temporary file, but keeps it open
// only while it writes: an ingest of a BES capture holds thousands of
// streams at once, and one open file each would run into the limit on open
// files (ulimit -n, often 1024). Events are encoded into a buffer of
// spillSize bytes per stream; a full buffer is written out to the stream's
// file, which the process-wide pool of open temporary files (at most
// MaxOpenTempFiles) opens, keeping the most recently used open and closing
// the least recently used one to make room.
//
// A temporary file that its writer has closed has no flock of its own to
// tell Check and Repair that a live writer owns it. Instead, each Store
// that writes has an owner file, .owner-<id>.tmp, flocked for as long as
// any of its StreamWriters lives, and its temporary stream files are named
// .stream-<id>-<random>.tmp: such a file is stale only when its owner file
// is not held (the process that wrote it is gone).
//
// Both live in the subdirectory tmp/ of the store (since issue 13; a bes
// before made them in the store directory itself, where Check and Repair
// still look for them), which holds only the files being written, so that
// Open can remove what killed writers left there without reading the
// store directory, which holds a file per stream.

// MaxOpenTempFiles is the most temporary stream files the StreamWriters of
// a process keep open at once.
const MaxOpenTempFiles = 64

// spillSize is how many encoded bytes a StreamWriter buffers before it
// writes them to its file.
const spillSize = 32 << 10

var tempPool = newFilePool(MaxOpenTempFiles)

// tempDirName is the store's subdirectory of temporary files.
const tempDirName = "tmp"

// tempDir returns the store's directory of temporary files, making it
// (mode 0700) if it does not exist. Anything else at its name (a symbolic
// link) is an error.
func (s *Store) tempDir() (string, error) {
	d := filepath.Join(s.dir, tempDirName)
	if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("store: %w", err)
	}
	fi, err := os.Lstat(d)
	if err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("store: %s is not a directory but %s", d, fileType(fi.Mode()))
	}
	return d, nil
}

// filePool bounds the number of open temporary files of StreamWriters.
type filePool struct {
	mu   sync.Mutex
	cond *sync.Cond
	max  int
	open int         // files open
	idle *clist.List // *StreamWriter with an open file not in use, least recently used first
	peak int         // the most files open at once (for tests)
}

func newFilePool(max int) *filePool {
	p := &filePool{max: max, idle: clist.New()}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// acquire returns w's file, open (creating it with create), for w's
// exclusive use until release.
func (p *filePool) acquire(w *StreamWriter, create bool) (*os.File, error) {
	p.mu.Lock()
	if w.f != nil {
		p.idle.Remove(w.elem)
		w.elem = nil
		p.mu.Unlock()
		return w.f, nil
	}
	for p.open >= p.max {
		if front := p.idle.Front(); front != nil {
			v := p.idle.Remove(front).(*StreamWriter)
			v.elem = nil
			v.f.Close()
			v.f = nil
			p.open--
			continue
		}
		p.cond.Wait()
	}
	p.open++
	p.peak = max(p.peak, p.open)
	p.mu.Unlock()
	flags := os.O_WRONLY
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(w.path, flags|noFollow, 0o600)
	if err != nil {
		p.mu.Lock()
		p.open--
		p.cond.Signal()
		p.mu.Unlock()
		return nil, err
	}
	w.f = f
	return f, nil
}

// release gives w's file back to the pool, open, as the most recently used.
func (p *filePool) release(w *StreamWriter) {
	p.mu.Lock()
	if w.f != nil && w.elem == nil {
		w.elem = p.idle.PushBack(w)
		p.cond.Signal()
	}
	p.mu.Unlock()
}

// close closes w's file if it is open. w must not be in use.
func (p *filePool) close(w *StreamWriter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.elem != nil {
		p.idle.Remove(w.elem)
		w.elem = nil
	}
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	p.open--
	p.cond.Signal()
	return err
}

// tempOwner is a Store's owner file, held while its StreamWriters live.
type tempOwner struct {
	mu    sync.Mutex
	f     *os.File
	id    string
	users int
}

var (
	ownerFileRE  = regexp.MustCompile(`^\.owner-([0-9a-f]{16})\.tmp$`)
	ownedTempRE  = regexp.MustCompile(`^\.stream-([0-9a-f]{16})-[0-9a-f]{16}\.tmp$`)
	ownerPattern = ".owner-%s.tmp"
)

func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ownTemp creates a new temporary stream file name owned by s, taking
// (or sharing) s's owner file. The caller must call disownTemp once done
// with the file.
func (s *Store) ownTemp() (string, error) {
	o := &s.temps
	o.mu.Lock()
	defer o.mu.Unlock()
	dir, err := s.tempDir()
	if err != nil {
		return "", err
	}
	if o.f == nil {
		for range 100 {
			id := randomHex()
			f, err := createLockedFile(filepath.Join(dir, fmt.Sprintf(ownerPattern, id)))
			if errors.Is(err, os.ErrExist) {
				continue
			}
			if err != nil {
				return "", fmt.Errorf("store: %w", err)
			}
			o.f, o.id = f, id
			break
		}
		if o.f == nil {
			return "", fmt.Errorf("store: cannot make an owner file in %s", s.dir)
		}
	}
	o.users++
	return filepath.Join(dir, ".stream-"+o.id+"-"+randomHex()+tmpSuffix), nil
}

// disownTemp ends a use of the owner file; the last one removes it.
func (s *Store) disownTemp() {
	o := &s.temps
	o.mu.Lock()
	defer o.mu.Unlock()
	o.users--
	if o.users > 0 || o.f == nil {
		return
	}
	os.Remove(o.f.Name()) // while still flocked: Repair never removes a held one
	unlockFile(o.f)
	o.f.Close()
	o.f = nil
}

// createLockedFile creates path (which must not exist) and takes a flock on
// it, which tells Check and Repair that a live writer owns it. A file that
// Repair removed before it was locked (it looked stale) is reported as
// existing, for the caller to pick another name.
func createLockedFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
	if err != nil {
		return nil, err
	}
	ok, err := tryLock(f)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if ok {
		fi, err1 := f.Stat()
		now, err2 := os.Lstat(path)
		if err1 == nil && err2 == nil && os.SameFile(fi, now) {
			return f, nil
		}
		unlockFile(f) // removed by Repair
	}
	f.Close()
	return nil, os.ErrExist
}

// staleTemp reports whether the temporary file name (relative to the store
// directory: in tmp/, or in the directory itself for an older bes) looks
// left by a dead writer: an owner file no one holds; a stream file whose
// owner file is not held; a temporary file of an older bes (.stream-*.tmp
// with a flock of its own, .index-*.tmp made under the old index's lock)
// that no one holds.
func (s *Store) staleTemp(name string) bool {
	path := filepath.Join(s.dir, name)
	base := filepath.Base(name)
	if strings.HasPrefix(base, ".index-") {
		return !fileHeld(path)
	}
	if m := ownedTempRE.FindStringSubmatch(base); m != nil {
		return !fileHeld(filepath.Join(filepath.Dir(path), fmt.Sprintf(ownerPattern, m[1])))
	}
	return !fileHeld(path)
}

// isTemp reports whether name (or its last element) is a temporary file's
// name.
func isTemp(name string) bool {
	name = filepath.Base(name)
	return strings.HasPrefix(name, ".") && strings.HasSuffix(name, tmpSuffix)
}

// tempNames returns the names, relative to the store directory, of the
// temporary files in tmp/ and, with legacy, in the store directory itself
// (where a bes before issue 13 made them; reading it costs a look at every
// stream file's name).
func (s *Store) tempNames(legacy bool) ([]string, error) {
	var out []string
	des, err := os.ReadDir(filepath.Join(s.dir, tempDirName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("store: %w", err)
	}
	for _, de := range des {
		if isTemp(de.Name()) {
			out = append(out, filepath.Join(tempDirName, de.Name()))
		}
	}
	if !legacy {
		return out, nil
	}
	des, err = os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	for _, de := range des {
		if isTemp(de.Name()) {
			out = append(out, de.Name())
		}
	}
	return out, nil
}

// removeStaleTemps removes the temporary files no live writer holds, in
// tmp/ and, with legacy, in the store directory itself (see tempNames), and
// returns their names relative to the store directory. Owner files are
// removed holding their flock (so that one being made at that moment is
// given up by its maker), after the stream files they owned.
func (s *Store) removeStaleTemps(ctx context.Context, legacy bool) ([]string, error) {
	names, err := s.tempNames(legacy)
	if err != nil {
		return nil, err
	}
	var removed, owners []string
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if ownerFileRE.MatchString(filepath.Base(name)) {
			owners = append(owners, name)
			continue
		}
		if !s.staleTemp(name) {
			continue
		}
		if removeUnheld(filepath.Join(s.dir, name)) {
			removed = append(removed, name)
		}
	}
	for _, name := range owners {
		if removeUnheld(filepath.Join(s.dir, name)) {
			removed = append(removed, name)
		}
	}
	return removed, nil
}

// removeUnheld removes path if no one holds a flock on it, holding one
// itself meanwhile.
func removeUnheld(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	ok, err := tryLock(f)
	if err != nil || !ok {
		return false
	}
	defer unlockFile(f)
	return os.Remove(path) == nil
}

// shareLock takes a shared flock on the store's lock file, which every
// process that has the catalog open holds; Repair of a damaged catalog
// takes it exclusively, so that it never moves a catalog another process
// has open. It waits (polling ctx) while someone holds it exclusively.
func (s *Store) shareLock(ctx context.Context) error {
	f, err := os.OpenFile(filepath.Join(s.dir, lockName), os.O_RDWR|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	wait := time.Millisecond
	for {
		ok, err := tryLockShared(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("store: lock %s: %w", f.Name(), err)
		}
		if ok {
			s.lockFile = f
			return nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// unlockShared releases the shared flock shareLock took.
func (s *Store) unlockShared() {
	if s.lockFile != nil {
		unlockFile(s.lockFile)
		s.lockFile.Close()
		s.lockFile = nil
	}
}
