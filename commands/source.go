package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/local"
)

// splitArgs separates arguments that name existing files (or "-", standard
// input) from the others, which are stream references.
func splitArgs(args []string) (files, refs []string) {
	for _, a := range args {
		if a == "-" {
			files = append(files, a)
			continue
		}
		if fi, err := os.Stat(a); err == nil && !fi.IsDir() {
			files = append(files, a)
			continue
		}
		refs = append(refs, a)
	}
	return files, refs
}

// readFiles reads every stream of the files into a new in-memory storage,
// without touching the store. A read error is reported on errw, one line
// naming the file and offset; the complete events before it are kept. The
// returned outcome says whether any input was partial or failed. A stream
// that an earlier file already held (say a .bep and its .json twin) is
// read once: the later copy is skipped with a note.
func readFiles(ctx context.Context, files []string, opts bepfile.Options, errw io.Writer) (*store.Storage, *outcome, error) {
	fr := &fileReader{mem: store.New(), opts: opts, errw: errw, from: map[string]string{}}
	res := &outcome{}
	for _, name := range files {
		if err := fr.read(ctx, name); err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			fmt.Fprintf(errw, "bes: %v\n", err)
			res.add(ExitCode(err))
		}
	}
	return fr.mem, res, nil
}

type fileReader struct {
	mem  *store.Storage
	opts bepfile.Options
	errw io.Writer
	from map[string]string // stream key → the file it was read from
}

func (fr *fileReader) read(ctx context.Context, name string) error {
	r, err := bepfile.Open(name, fr.opts)
	if err != nil {
		return err
	}
	defer r.Close()
	var (
		cur  *bepfile.Stream
		st   *store.Stream
		errs error
	)
	for n := 0; ; n++ {
		if n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		s, ev, err := r.Next()
		if err == io.EOF {
			return errs
		}
		if err != nil {
			var be *bepfile.Error
			if errors.As(err, &be) && be.Resumable() {
				// A bad event that can be skipped: report it and go on.
				fmt.Fprintf(fr.errw, "bes: %v\n", err)
				errs = &reportedError{code: ExitError}
				continue
			}
			return err
		}
		if s != cur {
			cur, st = s, nil
			if src, ok := fr.from[s.Key]; ok && src != r.Name() {
				fmt.Fprintf(fr.errw, "bes: %s: stream %s was already read from %s; skipping this copy\n", r.Name(), s.Key, src)
			} else {
				fr.from[s.Key] = r.Name()
				st = fr.mem.GetStreamFor(s)
			}
		}
		if st != nil {
			st.Append(*ev)
		}
	}
}

// resolveRefs finds the stored streams that refs name (a full key, a unique
// key prefix, or an invocation id) and replays them into a new in-memory
// storage.
func resolveRefs(ctx context.Context, st *local.Store, refs []string) (*store.Storage, error) {
	mem := store.New()
	for _, ref := range refs {
		entries, err := st.Lookup(ctx, ref)
		if errors.Is(err, store.ErrNotFound) {
			entries, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
		switch {
		case len(entries) == 0:
			return nil, fmt.Errorf("%q: %w in store %s", ref, store.ErrNotFound, st.Dir())
		case len(entries) > 1 && !allSameInvocation(entries, ref):
			keys := make([]string, 0, len(entries))
			for _, e := range entries {
				keys = append(keys, e.Key)
			}
			return nil, &usageError{fmt.Sprintf("%q is ambiguous: it matches %d streams: %s", ref, len(entries), strings.Join(keys, ", "))}
		}
		for _, e := range entries {
			s, err := st.Load(ctx, e)
			if err != nil {
				return nil, err
			}
			var dup *store.DuplicateStreamError
			if err := mem.Add(s); err != nil && !errors.As(err, &dup) {
				return nil, err
			}
		}
	}
	return mem, nil
}

// allSameInvocation reports whether ref is the invocation id of every entry:
// an invocation id may name several streams (tool and lifecycle) at once.
func allSameInvocation(entries []*local.Entry, ref string) bool {
	for _, e := range entries {
		if e.InvocationID != ref {
			return false
		}
	}
	return true
}
