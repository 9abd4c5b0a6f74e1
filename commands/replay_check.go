package commands

import (
	"fmt"
	"io"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"

	"github.com/bes-cli/bes/bepfile/besclient"
	"github.com/bes-cli/bes/store"
)

// checkReplayIDs checks the invocation ids of the streams bes replay is
// about to publish (issue 14). A stream without one (StreamId.invocation_id
// empty), but a build's own lifecycle stream (component CONTROLLER, which
// has none by design), is an error naming it: Bazel never sends one, and a
// Build Event Service keys invocations by it. With --invocation-id inv, a
// tool stream whose events name another invocation (BuildStarted.uuid) gets
// a warning on errw: the override changes the stream id only, and a server
// that compares the two (as BuildBuddy does) refuses the stream.
func checkReplayIDs(streams []*besclient.Stream, inv string, errw io.Writer) error {
	for _, s := range streams {
		id := s.Info.ID
		if id.GetInvocationId() == "" && id.GetComponent() != buildpb.StreamId_CONTROLLER {
			return fmt.Errorf("stream %s has no invocation id (StreamId.invocation_id is empty): a Build Event Service needs one to file its events under, and Bazel always sends it; nothing was sent", safeCell(s.Info.Key))
		}
		if inv == "" || id.GetComponent() == buildpb.StreamId_CONTROLLER {
			continue
		}
		var m store.Meta
		for i := range s.Events {
			m.Observe(&s.Events[i])
			if m.UUID != "" {
				break
			}
		}
		if m.UUID != "" && m.UUID != inv {
			fmt.Fprintf(errw, "bes: warning: --invocation-id %s contradicts the invocation id %s inside the events of stream %s (BuildStarted.uuid): the override changes the stream id only, and a server that compares them refuses the stream\n", safeCell(inv), safeCell(m.UUID), safeCell(s.Info.Key))
		}
	}
	return nil
}
