// Package commands holds bes's command-line interface: one file per
// subcommand, each a constructor returning a *cli.Command whose action copies
// its flags into an options struct and calls a plain run function.
package commands

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// NewApp builds the bes command line. version is printed by --version.
func NewApp(version string) *cli.App {
	if version == "" {
		version = buildVersion()
	}
	return &cli.App{
		Name:    "bes",
		Usage:   "read, store and query Bazel's Build Event Protocol",
		Version: version,
		Description: `bes ingests Bazel build event files (--build_event_binary_file,
--build_event_json_file) and BES captures into a local stream store, then
lists, matches and dumps them, offline, as tables or JSON. Streams follow
BuildGrid's build-events storage: each is keyed
"<build_id>.<component>.<invocation_id>" (component 3 = TOOL, 1 = CONTROLLER).

Every reading command also takes BEP files directly and then touches no
store:  bes dump build.bep

` + exitStatusHelp,
		Commands: []*cli.Command{
			newIngestCommand(),
			newStreamsCommand(),
			newDumpCommand(),
			newQueryCommand(),
			newSummaryCommand(),
			newTestsCommand(),
			newFailuresCommand(),
			newArtifactsCommand(),
			newActionsCommand(),
			newLogCommand(),
			newReportCommand(),
			newHistoryCommand(),
			newFlakyCommand(),
			newTrendsCommand(),
			newDiffCommand(),
			newServeCommand(),
			newReplayCommand(),
			newStoreCommand(),
		},
		HideHelpCommand: true,
		Suggest:         true,
		// Reached when the first argument is no command: `bes help
		// [COMMAND]` shows help, anything else is an unknown command.
		Action: func(c *cli.Context) error {
			if !c.Args().Present() {
				return cli.ShowAppHelp(c)
			}
			name := c.Args().First()
			if name == "help" {
				if topic := c.Args().Get(1); topic != "" {
					if c.App.Command(topic) == nil {
						return unknownCommand("bes", c.App.Commands, topic)
					}
					return cli.ShowCommandHelp(c, topic)
				}
				return cli.ShowAppHelp(c)
			}
			return unknownCommand("bes", c.App.Commands, name)
		},
		// bes maps errors to exit statuses in main; keep urfave/cli from
		// calling os.Exit itself.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return &usageError{msg: err.Error(), cause: err}
		},
	}
}

func usageErrorHandler(c *cli.Context, err error, _ bool) error {
	if c != nil && c.Command != nil && c.Command.Name != "" {
		return &usageError{msg: c.Command.Name + ": " + err.Error(), cause: err}
	}
	return &usageError{msg: err.Error(), cause: err}
}

// unknownCommand is the usage error (exit 2) for a command name that is
// none of cmds, the commands of parent ("bes", "bes store"): one line
// naming the nearest command (see nearestCommand).
func unknownCommand(parent string, cmds []*cli.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if near := nearestCommand(cmds, name); near != "" {
		msg += fmt.Sprintf("; did you mean %q?", strings.TrimPrefix(parent+" "+near, "bes "))
	}
	return &usageError{msg: fmt.Sprintf("%s (%s --help lists the commands)", msg, parent)}
}

// nearestCommand returns the name of the visible command of cmds (help
// aside) nearest
// to name: one that name is a prefix of, else the one at the smallest
// edit distance (Levenshtein, case-insensitive; the first in cmds on a
// tie) when that distance is at most max(2, len(name)/3), so a typo gets
// a suggestion and an unrelated word ("xyzzy") none; "" when there is none.
func nearestCommand(cmds []*cli.Command, name string) string {
	name = strings.ToLower(name)
	best, bestDist := "", -1
	for _, c := range cmds {
		if c.Hidden || c.Name == "help" {
			continue
		}
		if name != "" && strings.HasPrefix(c.Name, name) {
			return c.Name
		}
		if d := editDistance(name, c.Name); bestDist < 0 || d < bestDist {
			best, bestDist = c.Name, d
		}
	}
	if bestDist > max(2, len(name)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// commandHelp appends the exit statuses to a command's description.
func commandHelp(text string) string {
	return fmt.Sprintf("%s\n\n%s", text, exitStatusHelp)
}
