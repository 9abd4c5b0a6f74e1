package local

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"
)

// ErrWriterClosed is returned by a StreamWriter used after Commit or Abort.
var ErrWriterClosed = errors.New("store: stream writer already committed or aborted")

// StreamWriter writes one stream into a temporary file of the store; Commit
// puts it in place and into the index, Abort throws it away. Nothing of it
// is visible before Commit. A StreamWriter is not safe for concurrent use.
type StreamWriter struct {
	s       *Store
	stream  *bepfile.Stream
	f       *os.File
	bw      *bufio.Writer
	h       hash.Hash
	enc     encoder
	meta    store.Meta
	size    int64
	err     error // first write error; sticky
	closed  bool
	renamed bool // the temporary file became the stream file
}

// Create starts writing a stream file for st. st.IDBytes must be a valid
// StreamId encoding whose key is st.Key (as bepfile produces them); they
// and st.TypeURL are stored exactly. The caller must end the writer with
// Commit or Abort.
func (s *Store) Create(st *bepfile.Stream) (*StreamWriter, error) {
	if st == nil {
		return nil, errors.New("store: create: nil stream")
	}
	id := &buildpb.StreamId{}
	if err := proto.Unmarshal(st.IDBytes, id); err != nil {
		return nil, fmt.Errorf("store: create %q: bad stream id bytes: %w", st.Key, err)
	}
	if k := bepfile.Key(id); k != st.Key {
		return nil, fmt.Errorf("store: create %q: stream id bytes have key %q", st.Key, k)
	}
	f, err := createLockedTemp(s.dir, ".stream-*"+tmpSuffix)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	w := &StreamWriter{s: s, f: f, h: sha256.New()}
	// Keep our own copy of the identity, with the id decoded from the bytes
	// stored, so the entry describes exactly what a reader will see.
	w.stream = &bepfile.Stream{ID: id, Key: st.Key, IDBytes: st.IDBytes, TypeURL: st.TypeURL}
	w.bw = bufio.NewWriterSize(io.MultiWriter(f, w.h), 64<<10)
	w.enc.w = w.bw
	if err := w.enc.header(w.stream); err != nil {
		w.Abort()
		return nil, fmt.Errorf("store: write %s: %w", f.Name(), err)
	}
	w.size = int64(len(w.enc.buf))
	return w, nil
}

// Append writes one event and feeds it to the stream's metadata.
func (w *StreamWriter) Append(ev *bepfile.Event) error {
	if w.closed {
		return ErrWriterClosed
	}
	if w.err != nil {
		return w.err
	}
	n, err := w.enc.record(ev)
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("store: write %s: %w", w.f.Name(), err)
		return w.err
	}
	w.meta.Observe(ev)
	return nil
}

// Meta returns the metadata gathered from the events appended so far.
func (w *StreamWriter) Meta() store.Meta { return w.meta }

// Stream returns the stream being written.
func (w *StreamWriter) Stream() *bepfile.Stream { return w.stream }

// Commit makes the stream durable and lists it in the index, atomically:
// the stream file is fsynced and renamed into place, and the index
// rewritten, under the store's lock. It returns the stream's entry and what
// it did:
//
//   - Created when the key is new;
//   - Unchanged, with the entry already stored, when the key exists with the
//     identical content (same digest), or, without replace, with the same
//     events in other bytes (the binary and the JSON file of one Bazel
//     invocation; see sameStream): nothing is written;
//   - with replace, Replaced when the key exists with other bytes;
//   - without replace, a *store.DuplicateStreamError when the key exists
//     with other content: nothing is changed.
//
// source and format are recorded in the entry. After Commit, successful or
// not, the writer is closed and its temporary file is gone.
func (w *StreamWriter) Commit(ctx context.Context, source, format string, replace bool) (*Entry, CommitResult, error) {
	if w.closed {
		return nil, 0, ErrWriterClosed
	}
	defer w.Abort()
	if w.err != nil {
		return nil, 0, w.err
	}
	if err := w.finish(); err != nil {
		return nil, 0, err
	}
	s := w.s
	entry := NewEntry(w.stream, &w.meta)
	entry.Size = w.size
	entry.Digest = hex.EncodeToString(w.h.Sum(nil))
	entry.Source, entry.Format = source, format
	entry.Ingested = s.now().UTC()
	final := filepath.Join(s.dir, entry.File)

	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	var result CommitResult
	var kept *Entry
	_, err = s.updateIndex(ctx, entry.Key, func(old *Entry) (*Entry, error) {
		switch {
		case fileHeld(final): // a stream being received live
			return nil, fmt.Errorf("store: stream %q: %w", entry.Key, ErrStreamBusy)
		case old == nil:
			result = Created
		case old.Digest == entry.Digest && old.File == entry.File && fileExists(final),
			!replace && old.File == entry.File && sameStreamAs(final, w.f.Name()):
			result, kept = Unchanged, old
			return nil, nil
		case !replace:
			return nil, &store.DuplicateStreamError{Key: entry.Key}
		default:
			result = Replaced
		}
		return entry, nil
	}, func() error {
		if err := os.Rename(w.f.Name(), final); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		w.renamed = true
		// The stream file's name is durable before the index names it.
		if err := s.syncDir(); err != nil {
			return fmt.Errorf("store: sync %s: %w", s.dir, err)
		}
		return nil
	})
	// Close the file, and so release its flock, while the store is still
	// locked: a renamed stream file a closed writer still held would look,
	// to the next committer, like one an Appender is receiving (busy).
	w.Abort()
	if err != nil {
		return nil, 0, err
	}
	if result == Unchanged {
		return kept, Unchanged, nil
	}
	return entry, result, nil
}

// finish flushes and fsyncs the temporary file. Where flock exists the file
// stays open, and locked, until it is renamed (Abort closes it): Repair
// removes only temporary files no writer has locked.
func (w *StreamWriter) finish() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("store: write %s: %w", w.f.Name(), err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("store: sync %s: %w", w.f.Name(), err)
	}
	if closeBeforeRename {
		if err := w.f.Close(); err != nil {
			return fmt.Errorf("store: close %s: %w", w.f.Name(), err)
		}
	}
	return nil
}

// Abort discards the stream: it closes and removes the temporary file.
// It may be called after Commit (it then does nothing) and more than once.
func (w *StreamWriter) Abort() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.f.Close()
	if w.renamed {
		return nil
	}
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

func fileExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
