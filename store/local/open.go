package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// OpenExisting opens the store in dir for a reader: unlike Open, it never
// creates the directory. A directory that does not exist is a store with
// nothing in it: List lists nothing, Lookup finds nothing (an error
// wrapping store.ErrNotFound), Events of any entry is not found. exists
// says whether the directory exists; a path that is not a directory is an
// error, and so is a directory another user owns or others may write
// (ErrUnsafeDir, as for Open). Writing through a store whose directory does
// not exist fails.
func OpenExisting(dir string, opts ...Option) (s *Store, exists bool, err error) {
	if dir == "" {
		return nil, false, errors.New("store: empty directory name")
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, false, fmt.Errorf("store: %w", err)
	case !fi.IsDir():
		return nil, false, fmt.Errorf("store: %s is not a directory", dir)
	default:
		if err := checkDirSafe(dir, fi); err != nil {
			return nil, false, err
		}
		exists = true
	}
	s = &Store{dir: dir, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s, exists, nil
}

// Unlisted returns the number of stream files in the store directory when
// its catalog lists no stream at all (it is missing, or empty): a store
// whose catalog was lost, which lists nothing until `bes store check
// --repair` indexes its files (issue 13: such a store listed nothing, exit
// 0, and said nothing). When the catalog lists a stream it returns 0
// without reading the directory; a directory that does not exist holds
// nothing. A damaged catalog gives an *IndexError.
func (s *Store) Unlisted(ctx context.Context) (int, error) {
	any := false
	err := s.query(ctx, func(*Entry) error {
		any = true
		return errStopList
	}, `LIMIT 1`)
	if err != nil && err != errStopList {
		return 0, err
	}
	if any {
		return 0, nil
	}
	des, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	n := 0
	for _, de := range des {
		if de.Type().IsRegular() && streamFileRE.MatchString(de.Name()) {
			n++
		}
	}
	return n, nil
}

// errStopList ends a List early.
var errStopList = errors.New("stop listing")
