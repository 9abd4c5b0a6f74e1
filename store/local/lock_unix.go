//go:build unix

package local

import (
	"errors"
	"os"
	"syscall"
)

// tryLock tries to take an exclusive flock on f without waiting. flock
// locks belong to the open file, so two opens of the lock file exclude each
// other even within one process.
func tryLock(f *os.File) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		case errors.Is(err, syscall.EINTR):
			continue
		default:
			return false, err
		}
	}
}

func unlockFile(f *os.File) {
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// tryLockShared tries to take a shared flock on f without waiting.
func tryLockShared(f *os.File) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		case errors.Is(err, syscall.EINTR):
			continue
		default:
			return false, err
		}
	}
}

// noFollow makes an open fail on a symbolic link.
const noFollow = syscall.O_NOFOLLOW

// nonBlock makes an open of a named pipe planted at a file's name return
// at once instead of waiting for a writer (for a regular file it changes
// nothing).
const nonBlock = syscall.O_NONBLOCK
