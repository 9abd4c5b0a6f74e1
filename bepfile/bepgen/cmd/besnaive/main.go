// Command besnaive is the naive baseline of bes's benchmarks (see package
// naive): it answers bes's questions about a Bazel binary BEP file by
// decoding every event whole with protobuf-go.
//
//	besnaive tests|failures|summary|ndjson FILE
//	besnaive ingest FILE OUT
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/bepgen/naive"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "besnaive: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) < 2 {
		return errors.New("usage: besnaive tests|failures|summary|ndjson FILE, or besnaive ingest FILE OUT")
	}
	f, err := os.Open(args[1])
	if err != nil {
		return err
	}
	defer f.Close()
	switch args[0] {
	case "tests":
		return naive.Tests(f, stdout, bes.TestStatus_FAILED)
	case "failures":
		return naive.Failures(f, stdout)
	case "summary":
		return naive.Summary(f, stdout)
	case "ndjson":
		return naive.DumpNDJSON(f, stdout)
	case "ingest":
		if len(args) < 3 {
			return errors.New("ingest: name the OUT file")
		}
		out, err := os.Create(args[2])
		if err != nil {
			return err
		}
		if err := naive.Ingest(f, out); err != nil {
			out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	}
	return fmt.Errorf("unknown question %q", args[0])
}
