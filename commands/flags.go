package commands

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/bepfile"
)

// Flags shared by several commands. Each command lists the ones it takes.

func storeFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "store",
		Usage:   "directory of the local stream store (default: $XDG_DATA_HOME/bes, or ~/.local/share/bes)",
		EnvVars: []string{"BES_STORE"},
	}
}

func formatFlag(formats ...string) cli.Flag {
	return &cli.StringFlag{
		Name:    "format",
		Aliases: []string{"o"},
		Value:   formats[0],
		Usage:   "output format: " + strings.Join(formats, ", "),
		Action: func(_ *cli.Context, v string) error {
			if !slices.Contains(formats, v) {
				return &usageError{msg: fmt.Sprintf("--format must be one of %s, not %q", strings.Join(formats, ", "), v)}
			}
			return nil
		},
	}
}

// inputFlags configure how BEP files are read.
func inputFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:  "input-format",
			Value: "auto",
			Usage: "form of the input files: auto, bep (Bazel's --build_event_binary_file), ndjson (Bazel's --build_event_json_file), obe (varint-delimited OrderedBuildEvents), publish (recorded PublishBuildToolEventStream/PublishLifecycleEvent requests); gzip and zstd are detected in every case",
			Action: func(_ *cli.Context, v string) error {
				if _, err := bepfile.ParseFormat(v); err != nil {
					return &usageError{msg: fmt.Sprintf("--input-format: %v", err), cause: err}
				}
				return nil
			},
		},
		&cli.IntFlag{
			Name:  "max-event-size",
			Value: bepfile.DefaultMaxEventSize,
			Usage: "largest event accepted, in bytes; a larger frame is an error and is never allocated",
		},
		&cli.StringFlag{
			Name:  "build-id",
			Usage: "build id of the streams made from Bazel's own files (bep, ndjson), which carry none; default: the invocation id",
		},
	}
}

// readOptions turns the input flags into bepfile options.
func readOptions(c *cli.Context) bepfile.Options {
	f, _ := bepfile.ParseFormat(c.String("input-format")) // validated by the flag
	return bepfile.Options{
		Format:       f,
		MaxEventSize: c.Int("max-event-size"),
		BuildID:      c.String("build-id"),
	}
}
