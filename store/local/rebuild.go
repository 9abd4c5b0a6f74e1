package local

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/bess"
)

// Rebuild writes the catalog anew from the stream files, e.g. after the
// catalog was lost or damaged. Each stream file is read whole (to count
// events, gather the metadata, and hash it), in one write transaction of
// the catalog. Source, Format and Ingested cannot be found in a stream
// file; they are kept from the old entry when it has the same digest, else
// Ingested is the file's modification time.
//
// A stream file that a live Appender holds (bes serve receiving it) is
// neither read nor changed, and its entry is kept as it is. A stream file
// whose last record is cut short (bes serve killed while writing it) is
// indexed without that record. Damaged stream files, files whose content
// does not match their name, and streams whose ids exceed the store's
// limits are left out of the catalog and left in place; Rebuild still
// writes the entries of the others and then returns an error joining one
// error per such file. Temporary files are not touched.
//
// Rebuild takes each file as it is: a file whose content disagrees with
// its entry is indexed as the file says. Repair, which fixes only what
// Check finds, quarantines such a file instead.
func (s *Store) Rebuild(ctx context.Context) error {
	if _, err := s.catalog(ctx, true); err != nil {
		var ie *IndexError
		if !errors.As(err, &ie) {
			return err
		}
		// Damaged beyond reading: moved aside, and made anew below.
		if _, err := s.resetCatalog(ctx); err != nil {
			return err
		}
	}
	var problems []error
	err := s.write(ctx, func(tx *sql.Tx) error {
		problems = nil
		old := map[string]*Entry{}
		rows, err := tx.QueryContext(ctx, `SELECT `+entryColumns+` FROM streams`)
		if err != nil {
			return err
		}
		for rows.Next() {
			e, err := scanEntry(rows)
			if err != nil {
				rows.Close()
				return err
			}
			old[e.Key] = e
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		des, err := os.ReadDir(s.dir)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		keep := map[string]bool{}
		for _, de := range des {
			name := de.Name()
			if !de.Type().IsRegular() || !streamFileRE.MatchString(name) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			e, held, err := s.scanUnheld(ctx, name)
			if held {
				// A live writer's: its entry stays as it is.
				for k, o := range old {
					if o.File == name {
						keep[k] = true
					}
				}
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				problems = append(problems, err)
				continue
			}
			if o := old[e.Key]; o != nil && o.Digest == e.Digest {
				e.Source, e.Format, e.Ingested = o.Source, o.Format, o.Ingested
			}
			if err := putEntryTx(ctx, tx, e); err != nil {
				return err
			}
			if err := s.putStreamFactsTx(ctx, tx, e); err != nil {
				return err
			}
			keep[e.Key] = true
		}
		for k := range old {
			if !keep[k] {
				if err := deleteEntryTx(ctx, tx, k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return errors.Join(problems...)
}

// scanUnheld is scanStreamFile for a file no live Appender holds: it holds
// the file's flock while reading it. held reports a file that is held,
// which is not read.
func (s *Store) scanUnheld(ctx context.Context, name string) (e *Entry, held bool, err error) {
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_RDONLY|noFollow, 0)
	if err != nil {
		return nil, false, fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	ok, err := tryLock(f)
	if err != nil {
		return nil, false, fmt.Errorf("store: lock %s: %w", f.Name(), err)
	}
	if !ok {
		return nil, true, nil
	}
	defer unlockFile(f)
	e, err = scanStreamFile(ctx, f, name)
	return e, false, err
}

// scanStreamFile reads a whole stream file and returns its entry, with
// Ingested set to the file's modification time. A torn last record is left
// out of the entry. A stream whose ids exceed the store's limits is an
// error wrapping ErrLimit.
func scanStreamFile(ctx context.Context, f *os.File, name string) (*Entry, error) {
	path := f.Name()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	size := fi.Size()
	h := sha256.New()
	rd, err := bess.NewReader(io.TeeReader(io.NewSectionReader(f, 0, size), h), path, size)
	if err != nil {
		return nil, err
	}
	if err := CheckStreamID(rd.Stream()); err != nil {
		return nil, &CorruptError{File: path, Err: err}
	}
	var meta store.Meta
	good := rd.Offset()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if torn(err) {
			// A last record cut short: bes serve was killed while writing
			// it (a file written whole and cut is damage: bess.ErrCut). The entry covers the records before it (Reconcile, or
			// the server, cuts it off).
			size = good
			h.Reset()
			if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
			break
		}
		if err != nil {
			return nil, err
		}
		meta.Observe(ev)
		good = rd.Offset()
	}
	st := rd.Stream()
	if want := FileName(st.Key); want != name {
		return nil, &CorruptError{File: path, Err: fmt.Errorf("file holds stream %s, whose file name is %s", ShortKey(st.Key), want)}
	}
	e := NewEntry(st, &meta)
	e.Size = size
	e.Digest = hex.EncodeToString(h.Sum(nil))
	e.Ingested = fi.ModTime().UTC()
	return e, nil
}

// NewEntry returns the entry for a stream from its identity and metadata;
// the file's size, digest and the ingestion fields are left to the caller.
func NewEntry(st *bepfile.Stream, m *store.Meta) *Entry {
	return &Entry{
		Key:          st.Key,
		BuildID:      st.ID.GetBuildId(),
		InvocationID: st.ID.GetInvocationId(),
		Component:    int32(st.ID.GetComponent()),
		Events:       m.Events,
		Complete:     m.Complete,
		Command:      m.Command,
		Result:       m.Result,
		ExitCode:     m.ExitCode,
		HasExitCode:  m.HasExitCode,
		Start:        m.Start,
		Finish:       m.Finish,
		File:         FileName(st.Key),
	}
}
