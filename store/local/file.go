package local

import (
	"errors"
	"io"

	"github.com/bes-cli/bes/store/bess"
)

// The stream files' codec is package store/bess; these names keep the ones
// store/local has always exported.

// CorruptError reports a stream file that cannot be read (bess.CorruptError).
type CorruptError = bess.CorruptError

// Reader reads a stream file one event at a time (bess.Reader).
type Reader = bess.Reader

// NewReader reads the header of a stream file (bess.NewReader).
func NewReader(r io.Reader, name string, size int64) (*Reader, error) {
	return bess.NewReader(r, name, size)
}

// DefaultMaxRecordSize bounds one record's data when the file size is not
// known (bess.DefaultMaxRecordSize).
const DefaultMaxRecordSize = bess.DefaultMaxRecordSize

const magic = bess.Magic

// torn reports whether err, from a Reader, is a last record cut short that
// may be a write in progress (a file appended to live, whose writer was
// killed): io.ErrUnexpectedEOF in a file not written whole. A file written
// whole and cut (bess.ErrCut) is damage.
func torn(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, bess.ErrCut)
}
