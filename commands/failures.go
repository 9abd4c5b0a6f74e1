package commands

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/store/report"
)

// failureRow is one failure as `bes failures` prints it.
type failureRow struct {
	Stream        string `json:"stream,omitempty"`
	InvocationID  string `json:"invocation_id,omitempty"`
	Kind          string `json:"kind"`  // aborted, target, action, test, build
	Event         string `json:"event"` // the kind of the event's id, e.g. configuredLabel
	Label         string `json:"label"`
	Configuration string `json:"configuration,omitempty"`
	Reason        string `json:"reason,omitempty"`
	Message       string `json:"message,omitempty"`
	ActionType    string `json:"action_type,omitempty"`
	ExitCode      *int32 `json:"exit_code,omitempty"`
	Stdout        string `json:"stdout,omitempty"`
	Stderr        string `json:"stderr,omitempty"`
	// Logs are the test.log URIs of a test's failed attempts.
	Logs       []string `json:"logs,omitempty"`
	RootCauses []string `json:"root_causes,omitempty"`
}

// message is the MESSAGE cell: for an action its mnemonic and exit code
// first, then the first line of the message.
func (r failureRow) message() string {
	msg := cellText(r.Message)
	if r.Kind != string(report.KindAction) {
		if msg == "" && len(r.RootCauses) > 0 && (len(r.RootCauses) > 1 || r.RootCauses[0] != r.Label) {
			msg = "root cause: " + strings.Join(r.RootCauses, " ")
		}
		return msg
	}
	head := strings.TrimSpace(r.ActionType + " action")
	if r.ExitCode != nil {
		head += fmt.Sprintf(", exit code %d", *r.ExitCode)
	}
	if msg == "" {
		return head
	}
	return head + ": " + msg
}

// output is the OUTPUT cell: the URIs to look at.
func (r failureRow) output() string {
	var uris []string
	for _, u := range []string{r.Stderr, r.Stdout} {
		if u != "" {
			uris = append(uris, u)
		}
	}
	return strings.Join(append(uris, r.Logs...), " ")
}

// String is the summary's FIRST FAILURE cell.
func (r failureRow) String() string {
	s := r.Kind + " " + r.Label
	for _, p := range []string{r.Reason, r.message()} {
		if p != "" {
			s += ": " + p
		}
	}
	return s
}

func failureColumns(multi bool) []column[failureRow] {
	return withInvocation(multi, func(r failureRow) string { return invocationCell(r.InvocationID, r.Stream) }, []column[failureRow]{
		{"KIND", func(r failureRow) string { return r.Kind }},
		{"EVENT", func(r failureRow) string { return r.Event }},
		{"LABEL", func(r failureRow) string { return r.Label }},
		{"REASON", func(r failureRow) string { return r.Reason }},
		{"MESSAGE", failureRow.message},
		{"OUTPUT", failureRow.output},
	})
}

func newFailuresCommand() *cli.Command {
	return &cli.Command{
		Name:      "failures",
		Usage:     "what went wrong: failed and aborted targets, failed actions, failed tests",
		ArgsUsage: "[STREAM...] [FILE...]",
		Description: commandHelp(`Lists what went wrong in each invocation, in the order Bazel reported it:

   aborted  an announced event that will never come (Bazel's Aborted), with
            its reason (ANALYSIS_FAILURE, USER_INTERRUPTED…) and
            description; EVENT says what was aborted (targetCompleted,
            configuredLabel, unconfiguredLabel…). Reasons that are not
            failures (SKIPPED, NO_BUILD, NO_ANALYZE) are left out.
   target   a target that failed to build, with its failure detail's code
            (e.g. SOURCE_INPUT_MISSING) and message, and its root causes
   action   a failed action: mnemonic, exit code, failure detail, and the
            URIs of its stderr and stdout
   test     a test that failed, timed out or did not complete, with the
            test.log URIs of its failed attempts (flaky tests passed and
            are not listed)
   build    Bazel's own failure detail when the build did not succeed

` + viewSelectionHelp + `

Formats: table (the message's first line, the OUTPUT column the URIs to
read), json and ndjson (whole messages, root causes), markdown (a
GitHub-flavoured Markdown table).

` + gateHelp + `

EXAMPLES:
   bes failures build.bep
   bes failures 5d2e1f --format json | jq -r '.[] | select(.kind == "test") | .logs[]'
   bes failures build.bep --format markdown >> "$GITHUB_STEP_SUMMARY"`),
		Flags:        viewFlags(formatTable, formatJSON, formatNDJSON, formatMarkdown),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			return runFailures(c.Context, viewOptionsFrom(c), c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runFailures(ctx context.Context, opts viewOptions, args []string, w, errw io.Writer) error {
	invs, res, err := loadInvocations(ctx, "failures", opts, args, errw)
	if err != nil {
		return err
	}
	var rows []failureRow
	for _, inv := range invs {
		for _, f := range inv.Failures {
			rows = append(rows, failureFor(inv, f))
		}
		res.add(invocationStatus(inv))
	}
	if err := render(w, opts.Format, rows, failureColumns(multiStream(invs))); err != nil {
		return err
	}
	return res.err()
}

func failureFor(inv *report.Invocation, f *report.Failure) failureRow {
	return failureRow{
		Stream:        inv.StreamKey,
		InvocationID:  inv.InvocationID,
		Kind:          string(f.Kind),
		Event:         f.Event,
		Label:         f.Label,
		Configuration: f.Configuration,
		Reason:        f.Reason,
		Message:       f.Message,
		ActionType:    f.ActionType,
		ExitCode:      f.ExitCode,
		Stdout:        f.Stdout,
		Stderr:        f.Stderr,
		Logs:          f.Logs,
		RootCauses:    f.RootCauses,
	}
}
