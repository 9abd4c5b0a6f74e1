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
// returned outcome says whether any input was partial or failed.
func readFiles(ctx context.Context, files []string, opts bepfile.Options, errw io.Writer) (*store.Storage, *outcome, error) {
	mem := store.New()
	res := &outcome{}
	for _, name := range files {
		if err := readFile(ctx, mem, name, opts); err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			fmt.Fprintf(errw, "bes: %v\n", err)
			res.add(ExitCode(err))
		}
	}
	return mem, res, nil
}

func readFile(ctx context.Context, mem *store.Storage, name string, opts bepfile.Options) error {
	r, err := bepfile.Open(name, opts)
	if err != nil {
		return err
	}
	defer r.Close()
	var cur *bepfile.Stream
	var st *store.Stream
	for n := 0; ; n++ {
		if n&1023 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		s, ev, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if s != cur {
			cur = s
			st = mem.GetStreamInfo(s)
		}
		st.Append(*ev)
	}
}

// errNoStream is returned when a reference matches no stored stream.
var errNoStream = errors.New("no such stream")

// resolveRefs finds the stored streams that refs name (a full key, a unique
// key prefix, or an invocation id) and replays them into a new in-memory
// storage.
func resolveRefs(ctx context.Context, st *local.Store, refs []string) (*store.Storage, error) {
	mem := store.New()
	for _, ref := range refs {
		entries, err := st.Lookup(ctx, ref)
		if err != nil {
			return nil, err
		}
		switch {
		case len(entries) == 0:
			return nil, fmt.Errorf("%q: %w in store %s", ref, errNoStream, st.Dir())
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
