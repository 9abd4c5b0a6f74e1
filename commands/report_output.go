package commands

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// reportOutputError says why the page could not be written to path (bes
// report -o path) in one line that names path, not the temporary file
// beside it through which the page is written: "report: -o PATH: is a
// directory, not a file", "report: -o PATH: no such directory DIR", or
// "report: -o PATH: " and the system's reason (permission denied, no space
// left on device). err is what creating, writing or renaming the
// temporary file returned; it stays wrapped for errors.Is.
func reportOutputError(path string, err error) error {
	if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
		return fmt.Errorf("report: -o %s: is a directory, not a file", path)
	}
	var le *os.LinkError
	var pe *fs.PathError
	switch {
	case errors.As(err, &le):
		err = le.Err
	case errors.As(err, &pe):
		err = pe.Err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("report: -o %s: no such directory %s: %w", path, filepath.Dir(path), err)
	}
	return fmt.Errorf("report: -o %s: %w", path, err)
}
