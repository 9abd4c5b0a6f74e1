package store

import (
	"errors"
	"fmt"
	"time"
)

// Entry describes one stored stream: what a backend's catalog holds, one per
// stream, so that listing streams reads no stream body. The identity fields
// are those of the stream's StreamId (google/devtools/build/v1/build_events.proto);
// the outcome fields are the Meta gathered while the stream was written.
type Entry struct {
	Key          string `json:"key"` // Key of the stream id
	BuildID      string `json:"build_id,omitzero"`
	InvocationID string `json:"invocation_id,omitzero"`
	Component    int32  `json:"component,omitzero"` // StreamId.component's number

	Events int64 `json:"events"`
	// Complete is set when the stream ended properly (store.Meta): with
	// its component_stream_finished event, or a lifecycle stream's last
	// event. A stream read from a truncated file is stored with Complete
	// false, and so is one whose server was killed before the finish
	// event arrived.
	Complete bool `json:"complete,omitzero"`

	Command     string    `json:"command,omitzero"`   // BuildStarted.command
	Result      string    `json:"result,omitzero"`    // BuildFinished.exit_code.name
	ExitCode    int32     `json:"exit_code,omitzero"` // BuildFinished.exit_code.code; see HasExitCode
	HasExitCode bool      `json:"has_exit_code,omitzero"`
	Start       time.Time `json:"start,omitzero"`
	Finish      time.Time `json:"finish,omitzero"`

	// File names the stream body within the backend (for store/local, the
	// stream file name relative to the store directory); Size is its size
	// in bytes and Digest the hex SHA-256 of those bytes.
	File   string `json:"file"`
	Size   int64  `json:"size"`
	Digest string `json:"digest"`

	Source   string    `json:"source,omitzero"` // where the stream came from (a file name, a server)
	Format   string    `json:"format,omitzero"` // the format it was read in
	Ingested time.Time `json:"ingested,omitzero"`
}

// Candidate returns the RefCandidate of the stream e describes, for
// ResolveRef.
func (e *Entry) Candidate() RefCandidate {
	return RefCandidate{Key: e.Key, BuildID: e.BuildID, InvocationID: e.InvocationID, Component: e.Component}
}

// CommitResult says what committing a stream did.
type CommitResult int

const (
	// Created: the key was new.
	Created CommitResult = iota + 1
	// Replaced: the key existed with other content, and replace was asked.
	Replaced
	// Unchanged: the key existed with identical content; nothing was written.
	Unchanged
)

func (r CommitResult) String() string {
	switch r {
	case Created:
		return "created"
	case Replaced:
		return "replaced"
	case Unchanged:
		return "unchanged"
	}
	return fmt.Sprintf("CommitResult(%d)", int(r))
}

// CommitOutcome is what a batch commit did with one stream: what
// committing it alone would have returned.
type CommitOutcome struct {
	Entry  *Entry
	Result CommitResult
	// Err is the stream's own error, e.g. a *DuplicateStreamError;
	// the other streams of the batch are committed all the same.
	Err error
}

// ErrLimit is wrapped by a backend's error for a stream whose identity
// (ids, StreamId, type URL) exceeds what the backend stores (issue 13: a
// 40 MiB build_id made the old index unreadable); nothing of such a stream
// is stored. bes serve answers it with InvalidArgument.
var ErrLimit = errors.New("exceeds the store's limits")

// ErrStreamBusy is returned (wrapped) when a stream is asked to be appended
// to, replaced or deleted while another Appender, in this process or
// another, holds it. Test for it with errors.Is.
var ErrStreamBusy = errors.New("stream is being written by another writer")

// AppendOptions configure opening a stream for appending.
type AppendOptions struct {
	// Source and Format are recorded in the entry of a new stream (a stream
	// that is continued keeps its own).
	Source, Format string
	// IndexInterval is how often, at most, Sync rewrites the stream's
	// catalog entry; 0 means the backend's default (store/local's
	// DefaultIndexInterval). Close always does.
	IndexInterval time.Duration
}
