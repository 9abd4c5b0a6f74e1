//go:build !unix

package local

import "os"

// closeBeforeRename says whether a file must be closed before it is renamed,
// as on Windows.
const closeBeforeRename = true

// tryLock always succeeds: without flock, only the Store's own mutex
// serialises writers, so concurrent processes may lose index entries
// (Rebuild restores them).
func tryLock(f *os.File) (bool, error) { return true, nil }

func unlockFile(f *os.File) {}
