package invocation

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/bes-cli/bes/bepfile"
)

// TestTimedActions: Wants.TimedActions keeps the actions with a start time
// and the failed ones, exactly those of every action (Wants.Actions) that
// are so, whether the builder sees every event or only those ClassifyFor
// keeps (the untimed ones that succeeded are skipped on the wire). On
// bb-portal's published_actions.bep.ndjson (Bazel 7, all actions
// published) that is its 4 actions, each timed; on Bazel 4.2.3's
// build_keep_going_fail, whose actions have no start time, the failed
// genrule alone.
func TestTimedActions(t *testing.T) {
	type file struct {
		path   string
		timed  int // actions with a start time
		failed int
	}
	files := []file{{filepath.Join("..", "..", "testdata", "build_keep_going_fail.bep"), 0, 1}}
	public := "/work/shared/public-bep/buildbarn_bb-portal_published_actions.bep.ndjson"
	if _, err := os.Stat(public); err == nil {
		files = append(files, file{public, 4, 1})
	} else {
		t.Logf("%s: %v: checking the corpus file alone", public, err)
	}
	for _, f := range files {
		r, err := bepfile.Open(f.path, bepfile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		streams := readStreams(t, r)
		r.Close()
		for _, st := range streams {
			all := buildWith(t, st, func(b *Builder) { b.actionsWanted = true })
			var want []*Action
			timed, failed := 0, 0
			for _, a := range all.Actions {
				if !a.Start.IsZero() {
					timed++
				}
				if !a.Success {
					failed++
				}
				if !a.Success || !a.Start.IsZero() {
					want = append(want, a)
				}
			}
			if timed != f.timed || failed != f.failed {
				t.Errorf("%s: %d timed and %d failed actions, want %d and %d", f.path, timed, failed, f.timed, f.failed)
			}
			got := buildWith(t, st, func(b *Builder) { b.timedActionsWanted = true })
			if !reflect.DeepEqual(got.Actions, want) {
				t.Errorf("%s: TimedActions kept %d actions, want %d", f.path, len(got.Actions), len(want))
			}
			// Through ClassifyFor, as the commands read files.
			b := NewBuilderFor(st.Info(), Wants{TimedActions: true})
			for ev, err := range st.Query(t.Context(), nil) {
				if err != nil {
					t.Fatal(err)
				}
				keep, p, ok := ClassifyFor(ev, nil, Wants{TimedActions: true})
				switch {
				case !keep:
					b.Skip(1)
				case ok:
					b.AddPeeked(ev, &p)
				default:
					b.Add(ev)
				}
			}
			if inv := b.Invocation(); !reflect.DeepEqual(inv.Actions, want) {
				t.Errorf("%s: through ClassifyFor, TimedActions kept %d actions, want %d", f.path, len(inv.Actions), len(want))
			}
			if f.timed == 4 && (len(want) != 4 || want[0].Duration() != 1250*time.Millisecond) {
				t.Errorf("%s: the slowest timed action takes %v, want 1.25s (CppCompile //example:first)", f.path, want[0].Duration())
			}
		}
	}
}
