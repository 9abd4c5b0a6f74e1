package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
)

// TestListPagesLongKeys: keys whose first 256 bytes (the indexed prefix)
// are the same, more of them than a page holds, across page boundaries:
// List gives each once, in bytewise order, and Lookup by a prefix longer
// than 256 bytes finds them.
func TestListPagesLongKeys(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, newCatalog(t), "file://"+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	common := strings.Repeat("p", 300)
	var want []string
	var ws []store.Writer
	for i := range pageSize + 150 {
		// Some keys end early, some go on: "…p7" sorts before "…p7\x00…".
		bid := fmt.Sprintf("%s%d", common, i%700)
		if i >= 600 {
			bid += "\u00ff" // sorts after every ASCII byte
		}
		id := &buildpb.StreamId{BuildId: bid, InvocationId: "i", Component: buildpb.StreamId_TOOL}
		w, err := s.Create(ctx, bepfile.NewStream(id))
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
		want = append(want, bepfile.Key(id))
	}
	// And a few short keys around them.
	for _, bid := range []string{"a", "p", "q", common[:255], common[:257]} {
		id := &buildpb.StreamId{BuildId: bid, Component: buildpb.StreamId_TOOL}
		w, err := s.Create(ctx, bepfile.NewStream(id))
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
		want = append(want, bepfile.Key(id))
	}
	out, err := s.CommitAll(ctx, ws, "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
	}
	slices.Sort(want)
	var got []string
	if err := s.List(ctx, func(e *store.Entry) error { got = append(got, e.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List gave %d keys, want %d, in order: first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	ref := common + "69"
	es, err := s.Lookup(ctx, ref)
	var wantRef []string
	for _, k := range want {
		if strings.HasPrefix(k, ref) {
			wantRef = append(wantRef, k)
		}
	}
	var gotRef []string
	for _, e := range es {
		gotRef = append(gotRef, e.Key)
	}
	if len(wantRef) != 1 || err != nil || !slices.Equal(gotRef, wantRef) {
		t.Errorf("Lookup(<300 p>69) = %d keys, %v; want %d", len(gotRef), err, len(wantRef))
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
