package commands

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/bepfile/invocation"
)

type actionsOptions struct {
	viewOptions
	Label  string // regular expression on the label; "" = all
	Failed bool   // only the failed actions
}

// actionRow is one action as `bes actions` prints it
// (build_event_stream.ActionExecuted).
type actionRow struct {
	Stream        string     `json:"stream"`
	InvocationID  string     `json:"invocation_id"`
	Mnemonic      string     `json:"mnemonic"`
	Label         string     `json:"label"`
	Configuration string     `json:"configuration,omitempty"` // mnemonic when the stream names it
	PrimaryOutput string     `json:"primary_output,omitempty"`
	Success       bool       `json:"success"`
	ExitCode      int32      `json:"exit_code"`
	Start         *time.Time `json:"start,omitempty"`
	Duration      *float64   `json:"duration_seconds,omitempty"`
	FailureCode   string     `json:"failure_code,omitempty"`
	Message       string     `json:"message,omitempty"`
	Stdout        string     `json:"stdout,omitempty"`
	Stderr        string     `json:"stderr,omitempty"`
}

func actionColumns(n invNames) []column[actionRow] {
	return withInvocation(n, func(r actionRow) (string, string) { return r.InvocationID, r.Stream }, []column[actionRow]{
		{"MNEMONIC", func(r actionRow) string { return r.Mnemonic }},
		{"LABEL", func(r actionRow) string { return r.Label }},
		{"DURATION", func(r actionRow) string {
			if r.Duration == nil {
				return ""
			}
			return formatSeconds(*r.Duration)
		}},
		{"EXIT", func(r actionRow) string {
			if r.Success {
				return "ok"
			}
			s := fmt.Sprintf("%d", r.ExitCode)
			if r.FailureCode != "" {
				s += " " + r.FailureCode
			}
			return s
		}},
		{"OUTPUT", func(r actionRow) string {
			return strings.TrimSpace(r.Stderr + " " + r.Stdout)
		}},
	})
}

func newActionsCommand() *cli.Command {
	return &cli.Command{
		Name:      "actions",
		Usage:     "the actions the BEP reports, slowest first: mnemonic, label, duration, exit code, output",
		ArgsUsage: "[STREAM...] [FILE...]",
		Description: commandHelp(`Lists the actions each invocation reports (ActionExecuted events), slowest
first, then in Bazel's order: mnemonic, owning label, duration, exit code
(the process's own, failure_detail.spawn.spawn_exit_code, when Bazel gives
it) and the URIs of its stderr and stdout.

Bazel reports only the failed actions unless it runs with
--build_event_publish_all_actions; durations need a Bazel that writes
ActionExecuted.start_time and end_time (Bazel 4 does not: the column is then
empty and the order is Bazel's). Whether an action was a cache hit or ran
remotely is not in its event: see the runners in "bes summary".

--failed keeps the failed actions; --label REGEX the actions whose label the
regular expression matches anywhere.

` + viewSelectionHelp + `

Formats: table, json, ndjson, markdown.

EXIT STATUS of actions: 0 when an action is listed, 7 when none is; errors
and partial input as for every command.

EXAMPLES:
   bes actions build.bep
   bes actions build.bep --failed --format json | jq -r '.[].stderr'`),
		Flags: append(viewFlags(formatTable, formatJSON, formatNDJSON, formatMarkdown),
			&cli.StringFlag{Name: "label", Aliases: []string{"l"}, Usage: "keep the actions whose label matches `REGEX` (unanchored)"},
			&cli.BoolFlag{Name: "failed", Usage: "keep the failed actions only"},
			exitZeroFlag(),
		),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			opts := actionsOptions{viewOptions: viewOptionsFrom(c), Label: c.String("label"), Failed: c.Bool("failed")}
			return runActions(c.Context, opts, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runActions(ctx context.Context, opts actionsOptions, args []string, w, errw io.Writer) error {
	re, err := regexp.Compile(opts.Label)
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--label: %v", err), cause: err}
	}
	invs, res, err := loadInvocations(ctx, "actions", opts.viewOptions, args, errw)
	if err != nil {
		return err
	}
	var rows []actionRow
	for _, inv := range invs {
		for _, a := range inv.Actions {
			if (opts.Failed && a.Success) || !re.MatchString(a.Label) {
				continue
			}
			rows = append(rows, actionFor(inv, a))
		}
	}
	if err := render(w, opts.Format, rows, actionColumns(namesOf(invs))); err != nil {
		return err
	}
	if len(rows) == 0 && len(invs) > 0 {
		fmt.Fprintln(errw, "bes: actions: no action in the streams given (Bazel reports the successful ones only with --build_event_publish_all_actions)")
		res.add(ExitNoData)
	}
	return opts.exit(res)
}

func actionFor(inv *invocation.Invocation, a *invocation.Action) actionRow {
	r := actionRow{
		Stream: inv.StreamKey, InvocationID: inv.InvocationID,
		Mnemonic: a.Mnemonic, Label: a.Label, PrimaryOutput: a.PrimaryOutput,
		Success: a.Success, ExitCode: a.ExitCode, Start: timePtr(a.Start),
		FailureCode: a.FailureCode, Message: a.FailureMessage,
		Stdout: a.Stdout, Stderr: a.Stderr,
	}
	if a.Configuration != "" {
		r.Configuration = configurationName(inv, a.Configuration)
	}
	if d := a.Duration(); d > 0 {
		s := d.Seconds()
		r.Duration = &s
	}
	return r
}
