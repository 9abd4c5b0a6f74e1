//go:build !unix

package local

import "os"

// checkDirSafe checks nothing where file ownership is not Unix's.
func checkDirSafe(dir string, fi os.FileInfo) error { return nil }
