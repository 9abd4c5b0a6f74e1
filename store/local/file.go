package local

import (
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
