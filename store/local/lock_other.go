//go:build !unix

package local

import "os"

// tryLock always succeeds: without flock, the catalog's own locking still
// serialises writers, but live writers' files cannot be told apart, so
// Repair must run while no other bes writes to the store.
func tryLock(f *os.File) (bool, error) { return true, nil }

func unlockFile(f *os.File) {}

func tryLockShared(f *os.File) (bool, error) { return true, nil }

const noFollow = 0

const nonBlock = 0
