package commands

import (
	"errors"
	"fmt"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// pickByRef returns the streams of all that the STREAM argument ref names,
// by the rule of store.ResolveRef, in the order of all; id gives a
// stream's id, where says where the streams were looked for, in the
// not-found error. An ambiguous reference is a usage error (exit 2).
func pickByRef[T any](all []T, ref string, id func(T) store.RefCandidate, where string) ([]T, error) {
	cands := make([]store.RefCandidate, len(all))
	for i, s := range all {
		cands[i] = id(s)
	}
	sel, err := store.ResolveRef(ref, cands)
	if err != nil {
		return nil, refError(ref, err, where)
	}
	out := make([]T, len(sel))
	for i, j := range sel {
		out[i] = all[j]
	}
	return out, nil
}

// streamIDOf and infoIDOf are pickByRef's candidates for stored and read
// streams.
func streamIDOf(s *store.Stream) store.RefCandidate { return store.CandidateOf(s.Key(), s.ID()) }
func infoIDOf(s *bepfile.Stream) store.RefCandidate { return store.CandidateOf(s.Key, s.ID) }

// refError words an error of store.ResolveRef (or of the store's Lookup,
// which applies it) for the user: ambiguity is a usage error, no match
// names where the streams were looked for.
func refError(ref string, err error, where string) error {
	var amb *store.AmbiguousRefError
	switch {
	case errors.As(err, &amb):
		return &usageError{msg: amb.Error()}
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%q: %w in %s", ref, store.ErrNotFound, where)
	}
	return err
}

// noInvocationID is what views and `bes streams` show in place of an
// invocation id that Bazel did not give (bepfile.IsSynthesizedID).
const noInvocationID = "(no invocation id)"

// shownInvocationID is the invocation id as tables show it:
// noInvocationID for one bes made up (bepfile.SynthesizedIDPrefix), the id
// itself otherwise.
func shownInvocationID(id string) string {
	if bepfile.IsSynthesizedID(id) {
		return noInvocationID
	}
	return id
}

// sharedInvocations returns the invocation ids that more than one of the
// streams, given by their invocation ids, carry (nil when none does): a
// view that shows them must tell the streams apart, by key or source.
func sharedInvocations(ids []string) map[string]bool {
	seen := map[string]bool{}
	var shared map[string]bool
	for _, id := range ids {
		if seen[id] {
			if shared == nil {
				shared = map[string]bool{}
			}
			shared[id] = true
		}
		seen[id] = true
	}
	return shared
}
