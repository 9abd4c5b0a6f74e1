// Package naive answers the questions bes answers, the obvious way: read
// every event of a Bazel binary BEP file with protodelim, decode it whole
// with protobuf-go, and look at the decoded messages. It is the baseline
// bes's benchmarks measure themselves against (see BENCHMARKS.md); it is
// correct but makes no effort to be fast.
package naive

import (
	"bufio"
	"fmt"
	"io"
	"sort"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// Each decodes every event of the binary BEP file r and calls fn with it.
func Each(r io.Reader, fn func(*bes.BuildEvent) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	opts := protodelim.UnmarshalOptions{MaxSize: 64 << 20}
	for {
		ev := &bes.BuildEvent{}
		if err := opts.UnmarshalFrom(br, ev); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

func failing(s bes.TestStatus) bool {
	return s != bes.TestStatus_PASSED && s != bes.TestStatus_FLAKY && s != bes.TestStatus_NO_STATUS
}

// Tests writes one line per test whose summary has one of the statuses
// (all when none): label, status, total runs and the log of each failed
// attempt.
func Tests(r io.Reader, w io.Writer, statuses ...bes.TestStatus) error {
	bw := bufio.NewWriter(w)
	keep := func(s bes.TestStatus) bool {
		if len(statuses) == 0 {
			return true
		}
		for _, x := range statuses {
			if s == x {
				return true
			}
		}
		return false
	}
	err := Each(r, func(ev *bes.BuildEvent) error {
		s := ev.GetTestSummary()
		if s == nil || !keep(s.GetOverallStatus()) {
			return nil
		}
		fmt.Fprintf(bw, "%s\t%s\t%d", ev.GetId().GetTestSummary().GetLabel(), s.GetOverallStatus(), s.GetTotalRunCount())
		for _, f := range s.GetFailed() {
			fmt.Fprintf(bw, "\t%s", f.GetUri())
		}
		bw.WriteByte('\n')
		return nil
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// Failures writes one line per failure: aborted events, failed actions,
// failed targets and failing tests, in stream order, and the build's
// exit code if it is not 0.
func Failures(r io.Reader, w io.Writer) error {
	bw := bufio.NewWriter(w)
	err := Each(r, func(ev *bes.BuildEvent) error {
		switch p := ev.GetPayload().(type) {
		case *bes.BuildEvent_Aborted:
			if p.Aborted.GetReason() != bes.Aborted_SKIPPED && p.Aborted.GetReason() != bes.Aborted_NO_BUILD && p.Aborted.GetReason() != bes.Aborted_NO_ANALYZE {
				fmt.Fprintf(bw, "aborted\t%s\t%s\t%s\n", label(ev.GetId()), p.Aborted.GetReason(), p.Aborted.GetDescription())
			}
		case *bes.BuildEvent_Action:
			if !p.Action.GetSuccess() {
				fmt.Fprintf(bw, "action\t%s\t%s\t%s\n", ev.GetId().GetActionCompleted().GetLabel(), p.Action.GetType(), p.Action.GetFailureDetail().GetMessage())
			}
		case *bes.BuildEvent_Completed:
			if !p.Completed.GetSuccess() {
				fmt.Fprintf(bw, "target\t%s\t%s\n", ev.GetId().GetTargetCompleted().GetLabel(), p.Completed.GetFailureDetail().GetMessage())
			}
		case *bes.BuildEvent_TestSummary:
			if failing(p.TestSummary.GetOverallStatus()) {
				fmt.Fprintf(bw, "test\t%s\t%s\n", ev.GetId().GetTestSummary().GetLabel(), p.TestSummary.GetOverallStatus())
			}
		case *bes.BuildEvent_Finished:
			if c := p.Finished.GetExitCode(); c.GetCode() != 0 {
				fmt.Fprintf(bw, "build\t%s\t%d\n", c.GetName(), c.GetCode())
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// Summary writes the invocation's outcome: command, exit code, target and
// test counts.
func Summary(r io.Reader, w io.Writer) error {
	var (
		cmd, result                                      string
		configured, built, failed, aborted, tests, cache int
		byStatus                                         = map[string]int{}
	)
	err := Each(r, func(ev *bes.BuildEvent) error {
		switch p := ev.GetPayload().(type) {
		case *bes.BuildEvent_Started:
			cmd = p.Started.GetCommand()
		case *bes.BuildEvent_Configured:
			configured++
		case *bes.BuildEvent_Completed:
			if p.Completed.GetSuccess() {
				built++
			} else {
				failed++
			}
		case *bes.BuildEvent_Aborted:
			aborted++
		case *bes.BuildEvent_TestSummary:
			tests++
			byStatus[p.TestSummary.GetOverallStatus().String()]++
			if p.TestSummary.GetTotalNumCached() > 0 {
				cache++
			}
		case *bes.BuildEvent_Finished:
			result = fmt.Sprintf("%s (%d)", p.Finished.GetExitCode().GetName(), p.Finished.GetExitCode().GetCode())
		}
		return nil
	})
	if err != nil {
		return err
	}
	var names []string
	for k := range byStatus {
		names = append(names, k)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "%s\t%s\t%d configured, %d built, %d failed, %d aborted\t%d tests, %d cached:", cmd, result, configured, built, failed, aborted, tests, cache)
	for _, k := range names {
		fmt.Fprintf(w, " %d %s", byStatus[k], k)
	}
	_, err = fmt.Fprintln(w)
	return err
}

// Ingest decodes every event and writes it to w as a varint-delimited
// OrderedBuildEvent of one stream, as a store would keep it.
func Ingest(r io.Reader, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var id *buildpb.StreamId
	seq := int64(0)
	err := Each(r, func(ev *bes.BuildEvent) error {
		if id == nil {
			inv := ev.GetStarted().GetUuid()
			id = &buildpb.StreamId{BuildId: inv, InvocationId: inv, Component: buildpb.StreamId_TOOL}
		}
		a, err := anypb.New(ev)
		if err != nil {
			return err
		}
		seq++
		_, err = protodelim.MarshalTo(bw, &buildpb.OrderedBuildEvent{
			StreamId: id, SequenceNumber: seq,
			Event: &buildpb.BuildEvent{Event: &buildpb.BuildEvent_BazelEvent{BazelEvent: a}},
		})
		return err
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// DumpNDJSON writes every event as protojson with the default options, one
// per line.
func DumpNDJSON(r io.Reader, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	err := Each(r, func(ev *bes.BuildEvent) error {
		b, err := protojson.Marshal(ev)
		if err != nil {
			return err
		}
		bw.Write(b)
		return bw.WriteByte('\n')
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// label returns the label of an event id, if it has one.
func label(id *bes.BuildEventId) string {
	switch {
	case id.GetTargetCompleted() != nil:
		return id.GetTargetCompleted().GetLabel()
	case id.GetTargetConfigured() != nil:
		return id.GetTargetConfigured().GetLabel()
	case id.GetConfiguredLabel() != nil:
		return id.GetConfiguredLabel().GetLabel()
	case id.GetUnconfiguredLabel() != nil:
		return id.GetUnconfiguredLabel().GetLabel()
	case id.GetTestSummary() != nil:
		return id.GetTestSummary().GetLabel()
	case id.GetTestResult() != nil:
		return id.GetTestResult().GetLabel()
	}
	return ""
}
