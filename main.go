// Command bes reads Bazel's Build Event Protocol: it ingests binary and JSON
// BEP files and BES captures into a local stream store with BuildGrid's
// semantics, and lists, matches, queries and dumps them as tables or JSON.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/bes-cli/bes/commands"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := commands.Run(ctx, commands.NewApp(version), os.Args)
	stop()
	if err != nil && !commands.IsReported(err) {
		fmt.Fprint(os.Stderr, commands.Diagnostic(err))
	}
	os.Exit(commands.ExitCode(err))
}
