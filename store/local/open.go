package local

import (
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
