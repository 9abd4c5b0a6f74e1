package commands

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Run runs app on args (args[0] is the program name). Unlike urfave/cli's
// own parsing, which stops at the first argument that is not a flag, flags
// may come after the arguments: `bes dump build.bep --format json` works as
// a user expects. "--" still ends the flags.
//
// A stored stream whose file a command finds damaged is used as far as it
// reads, and the run then returns ExitDamaged (storeDamage).
func Run(ctx context.Context, app *cli.App, args []string) error {
	d := &storeDamages{}
	return d.result(app.RunContext(withStoreDamages(ctx, d), interspersed(app, args)))
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
		if sf, ok := f.(storeFlags); ok { // --blobs rides with --store
			for _, n := range sf.blobs.Names() {
				takesValue[n] = true
			}
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

// inputSuffixes are the file name endings that make an argument a FILE
// even when no such file exists (see looksLikePath): Bazel's
// --build_event_binary_file and --build_event_json_file as people name
// them, BES captures, and compressed files.
var inputSuffixes = []string{".bep", ".bin", ".pb", ".json", ".ndjson", ".jsonl", ".obe", ".gz", ".zst", ".zstd"}

// looksLikePath reports whether a command-line argument is meant as a
// file rather than a stream reference: it ends in one of inputSuffixes
// (case-insensitive), or it contains a path separator and no ".N." (N
// digits: the component number that separates a stream key's build id
// from its invocation id, "<build_id>.<component>.<invocation_id>", as in
// a key whose ids hold a "/"). Bazel's invocation ids are UUIDs, and
// build ids rarely hold a "/": a key prefix that does and stops before the
// component is read as a path (name the stream by a longer prefix or its
// invocation id).
func looksLikePath(a string) bool {
	lower := strings.ToLower(a)
	for _, s := range inputSuffixes {
		if strings.HasSuffix(lower, s) && len(lower) > len(s) {
			return true
		}
	}
	if !strings.ContainsRune(a, '/') && !strings.ContainsRune(a, filepath.Separator) {
		return false
	}
	return !keyComponent.MatchString(a)
}

// keyComponent matches the ".<component>." of a stream key.
var keyComponent = regexp.MustCompile(`\.[0-9]+\.`)

// noSuchFileError is an input FILE that does not exist, or is not a file.
type noSuchFileError struct {
	name string
	dir  bool // it is a directory
}

func (e *noSuchFileError) Error() string {
	if e.dir {
		return e.name + ": is a directory, not a file"
	}
	return e.name + ": no such file"
}

// checkInputs returns a *noSuchFileError for the first of files ("-",
// standard input, aside) that does not exist or is a directory, so that a
// command stops before it reads anything or touches a store. Other
// errors (a file that cannot be read) are left to the reader, which names
// them with the file.
func checkInputs(files []string) error {
	for _, name := range files {
		if name == "-" {
			continue
		}
		fi, err := os.Stat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return &noSuchFileError{name: name}
		case err == nil && fi.IsDir():
			return &noSuchFileError{name: name, dir: true}
		}
	}
	return nil
}
