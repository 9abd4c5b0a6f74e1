package commands

import (
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/bepfile"
)

// Flags shared by several commands. Each command lists the ones it takes.

// storeFlag is --store, with --blobs beside it: every command that takes
// a store takes both (one cli.Flag, so that the commands list one).
func storeFlag() cli.Flag {
	return storeFlags{
		StringFlag: &cli.StringFlag{
			Name:    "store",
			Usage:   "directory of the local stream store (default: $XDG_DATA_HOME/bes, or ~/.local/share/bes), or postgres://… for a team store (issue 14)",
			EnvVars: []string{"BES_STORE"},
		},
		blobs: &cli.GenericFlag{
			Name:  "blobs",
			Usage: "where a postgres:// store keeps its stream bodies: file:///path, s3://bucket/prefix?endpoint=…&region=… (AWS_ACCESS_KEY_ID…, AWS_PROFILE), gs://bucket/prefix (GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default login) or azblob://container/prefix (AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY…, or az login); credentials only as each SDK reads them, never in the URL; default $BES_BLOBS",
			Value: blobsValue{},
		},
	}
}

// storeFlags registers --store and --blobs.
type storeFlags struct {
	*cli.StringFlag
	blobs *cli.GenericFlag
}

func (f storeFlags) Apply(set *flag.FlagSet) error {
	blobsFlagValue.Store(nil) // a command's parse starts without --blobs
	if err := f.StringFlag.Apply(set); err != nil {
		return err
	}
	return f.blobs.Apply(set)
}

func (f storeFlags) String() string { return f.StringFlag.String() + "\n" + f.blobs.String() }

// blobsValue is --blobs: the value given is kept for teamBlobs (the
// command's run functions open the store from its --store value alone).
type blobsValue struct{}

func (blobsValue) Set(v string) error {
	blobsFlagValue.Store(&v)
	return nil
}

func (blobsValue) String() string { return "" }

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
			Action: func(_ *cli.Context, v int) error {
				if v <= 0 {
					return &usageError{msg: "--max-event-size must be positive"}
				}
				return nil
			},
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
