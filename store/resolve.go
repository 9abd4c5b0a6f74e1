package store

import (
	"fmt"
	"strings"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
)

// AmbiguousRefError reports a stream reference that names several streams
// that ResolveRef's rule cannot choose between. Test for it with errors.As.
type AmbiguousRefError struct {
	Ref  string
	Keys []string // the keys it matches, in the order given
}

func (e *AmbiguousRefError) Error() string {
	return fmt.Sprintf("%q is ambiguous: it matches %d streams: %s", e.Ref, len(e.Keys), strings.Join(e.Keys, ", "))
}

// RefCandidate is a stream as ResolveRef matches references against it:
// its key and the fields of its StreamId.
type RefCandidate struct {
	Key          string
	BuildID      string
	InvocationID string
	Component    int32 // StreamId.component's number
}

// CandidateOf returns the RefCandidate of a stream with key and id.
func CandidateOf(key string, id *buildpb.StreamId) RefCandidate {
	return RefCandidate{Key: key, BuildID: id.GetBuildId(), InvocationID: id.GetInvocationId(), Component: int32(id.GetComponent())}
}

// ResolveRef applies the one rule by which a user's stream reference (a
// STREAM argument) names streams, for stored streams and for the streams
// of files alike. cands are the candidate streams; ResolveRef returns the
// indices of those ref names, in the order of cands. The first rule that
// matches decides:
//
//  1. a full key names that stream alone (even when it prefixes other
//     keys, as "B.1." does "B.1.I");
//  2. an invocation id names every stream of that invocation: its tool
//     stream and invocation-level lifecycle stream, and the streams of
//     other builds that carry it (the .bep of a run, keyed I.3.I, and a
//     BES capture of the same run, B.3.I);
//  3. a build id names its tool streams (component TOOL), not its
//     lifecycle streams; a build with no tool stream, all its streams;
//  4. a key prefix names the one stream whose key it starts; when it starts
//     the keys of several streams of one build, it names that build as in
//     3; otherwise it is ambiguous.
//
// No match is an error wrapping ErrNotFound; an ambiguous prefix is an
// *AmbiguousRefError. An empty ref matches nothing.
func ResolveRef(ref string, cands []RefCandidate) ([]int, error) {
	var prefixed, invocation, build []int
	for i, c := range cands {
		if ref == "" {
			break
		}
		if c.Key == ref {
			return []int{i}, nil
		}
		if c.InvocationID == ref {
			invocation = append(invocation, i)
		}
		if c.BuildID == ref {
			build = append(build, i)
		}
		if strings.HasPrefix(c.Key, ref) {
			prefixed = append(prefixed, i)
		}
	}
	switch {
	case len(invocation) > 0:
		return invocation, nil
	case len(build) > 0:
		return toolStreams(cands, build), nil
	case len(prefixed) == 1:
		return prefixed, nil
	case len(prefixed) == 0:
		return nil, fmt.Errorf("no stream matches %q: %w", ref, ErrNotFound)
	}
	b := cands[prefixed[0]].BuildID
	for _, i := range prefixed[1:] {
		if cands[i].BuildID != b {
			keys := make([]string, len(prefixed))
			for j, i := range prefixed {
				keys[j] = cands[i].Key
			}
			return nil, &AmbiguousRefError{Ref: ref, Keys: keys}
		}
	}
	return toolStreams(cands, prefixed), nil
}

// toolStreams keeps the TOOL streams of sel, or all of sel when it has none.
func toolStreams(cands []RefCandidate, sel []int) []int {
	var tool []int
	for _, i := range sel {
		if cands[i].Component == int32(buildpb.StreamId_TOOL) {
			tool = append(tool, i)
		}
	}
	if len(tool) == 0 {
		return sel
	}
	return tool
}
