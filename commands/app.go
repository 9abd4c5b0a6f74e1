// Package commands holds bes's command-line interface: one file per
// subcommand, each a constructor returning a *cli.Command whose action copies
// its flags into an options struct and calls a plain run function.
package commands

import (
	"fmt"

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
			newServeCommand(),
			newReplayCommand(),
			newStoreCommand(),
		},
		HideHelpCommand: true,
		Suggest:         true,
		// bes maps errors to exit statuses in main; keep urfave/cli from
		// calling os.Exit itself.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return &usageError{err.Error()}
		},
	}
}

func usageErrorHandler(_ *cli.Context, err error, _ bool) error {
	return &usageError{err.Error()}
}

// commandHelp appends the exit statuses to a command's description.
func commandHelp(text string) string {
	return fmt.Sprintf("%s\n\n%s", text, exitStatusHelp)
}
