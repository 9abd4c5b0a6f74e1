//go:build unix

package local

import (
	"fmt"
	"os"
	"syscall"
)

// checkDirSafe returns an error wrapping ErrUnsafeDir when the store
// directory dir (fi, its os.Stat) is owned by another user than the
// effective one, or may be written by its group or by anyone: another user
// could then plant files or symbolic links in it for bes to trust or to
// write through (issue 13). ssh refuses its files on the same grounds.
func checkDirSafe(dir string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("store: %s is owned by uid %d, not by you (uid %d): %w (bes uses only a store directory its user owns)", dir, st.Uid, uid, ErrUnsafeDir)
	}
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return fmt.Errorf("store: %s may be written by others (mode %04o): %w (chmod go-w %s)", dir, m, ErrUnsafeDir, dir)
	}
	return nil
}
