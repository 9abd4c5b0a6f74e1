package commands

import (
	"context"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Run runs app on args (args[0] is the program name). Unlike urfave/cli's
// own parsing, which stops at the first argument that is not a flag, flags
// may come after the arguments: `bes dump build.bep --format json` works as
// a user expects. "--" still ends the flags.
func Run(ctx context.Context, app *cli.App, args []string) error {
	return app.RunContext(ctx, interspersed(app, args))
}

// interspersed moves a subcommand's flags ahead of its positional
// arguments, so that urfave/cli sees them.
func interspersed(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	cmd := app.Command(args[1])
	if cmd == nil {
		return args
	}
	// A command with subcommands (bes store check): the flags are the
	// subcommand's.
	head := 2
	for len(cmd.Subcommands) > 0 && head < len(args) {
		sub := cmd.Command(args[head])
		if sub == nil {
			break
		}
		cmd = sub
		head++
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	flags := []string{}
	var positional []string
	rest := args[head:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			positional = append(positional, rest[i:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if takesValue[name] && i+1 < len(rest) {
			i++
			flags = append(flags, rest[i])
		}
	}
	if len(positional) > 0 && positional[0] != "--" {
		positional = append([]string{"--"}, positional...)
	}
	out := append(slices.Clone(args[:head]), flags...)
	return append(out, positional...)
}
