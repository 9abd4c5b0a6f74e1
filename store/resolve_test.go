package store

import (
	"errors"
	"slices"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
)

func TestResolveRef(t *testing.T) {
	const (
		tool = buildpb.StreamId_TOOL
		ctl  = buildpb.StreamId_CONTROLLER
	)
	var cands []RefCandidate
	for _, id := range []*buildpb.StreamId{
		{BuildId: "inv1", InvocationId: "inv1", Component: tool},           // 0: the .bep of inv1
		{BuildId: "req1", InvocationId: "inv1", Component: tool},           // 1: its BES capture
		{BuildId: "req1", InvocationId: "inv1", Component: ctl},            // 2
		{BuildId: "req1", Component: ctl},                                  // 3
		{BuildId: "req2", Component: ctl},                                  // 4: a build with lifecycle streams only
		{BuildId: "req2", InvocationId: "inv2", Component: ctl},            // 5
		{BuildId: "nouuid-ab", InvocationId: "nouuid-ab", Component: tool}, // 6
	} {
		cands = append(cands, CandidateOf(Key(id), id))
	}
	for _, tc := range []struct {
		ref  string
		want []int
	}{
		{"req1.1.", []int{3}},     // 1. a full key, although it prefixes req1.1.inv1
		{"inv1.3.inv1", []int{0}}, // 1.
		{"inv1", []int{0, 1, 2}},  // 2. every stream of the invocation, of both builds
		{"inv2", []int{5}},        // 2.
		{"req1", []int{1}},        // 3. a build id: its tool stream
		{"req2", []int{4, 5}},     // 3. no tool stream: all of the build's
		{"req1.3", []int{1}},      // 4. a unique prefix
		{"req1.", []int{1}},       // 4. a prefix of one build's keys: its tool stream
		{"req1.1", []int{2, 3}},   // 4. its lifecycle streams only
		{"nouuid-ab", []int{6}},   // 2. a synthesized invocation id
		{"nouuid", []int{6}},      // 4.
		{"inv1.3.inv1x", nil},     // nothing
	} {
		got, err := ResolveRef(tc.ref, cands)
		if tc.want == nil {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("ResolveRef(%q) = %v, %v; want not found", tc.ref, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ResolveRef(%q) = %v, %v; want %v", tc.ref, got, err, tc.want)
		}
	}
	var amb *AmbiguousRefError
	if got, err := ResolveRef("req", cands); !errors.As(err, &amb) || !slices.Equal(amb.Keys, []string{"req1.3.inv1", "req1.1.inv1", "req1.1.", "req2.1.", "req2.1.inv2"}) {
		t.Errorf("ResolveRef(req) = %v, %v; want ambiguous over req1 and req2", got, err)
	} else if want := `"req" is ambiguous: it matches 5 streams: req1.3.inv1, req1.1.inv1, req1.1., req2.1., req2.1.inv2`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if got, err := ResolveRef("", cands); !errors.Is(err, ErrNotFound) {
		t.Errorf("ResolveRef(\"\") = %v, %v; want not found", got, err)
	}
}
