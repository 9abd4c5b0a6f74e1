package commands

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/bes-cli/bes/bepfile/invocation"
)

type artifactsOptions struct {
	viewOptions
	Label string // regular expression on the label; "" = all
}

// artifactRow is one output file as `bes artifacts` prints it.
type artifactRow struct {
	Stream        string   `json:"stream"`
	InvocationID  string   `json:"invocation_id"`
	Label         string   `json:"label"`
	Configuration string   `json:"configuration,omitempty"`
	Aspect        string   `json:"aspect,omitempty"`
	Group         string   `json:"output_group"`
	Name          string   `json:"name"`
	URI           string   `json:"uri,omitempty"`
	PathPrefix    []string `json:"path_prefix,omitempty"`
	Length        int64    `json:"length,omitempty"`
	Digest        string   `json:"digest,omitempty"`
	Important     bool     `json:"important"`
	Directory     bool     `json:"directory,omitempty"`
	Incomplete    bool     `json:"incomplete,omitempty"`
}

func (r artifactRow) group() string {
	switch {
	case r.Group != "":
		return r.Group
	case r.Directory:
		return "(directory)"
	case r.Important:
		return "(important)"
	}
	return ""
}

// artifactColumns are the table's columns; SIZE and DIGEST only when a row
// has one (Bazel 4.2 reports neither).
func artifactColumns(n invNames, rows []artifactRow) []column[artifactRow] {
	label := func(r artifactRow) string {
		if r.Aspect != "" {
			return r.Label + " (aspect " + r.Aspect + ")"
		}
		return r.Label
	}
	cols := []column[artifactRow]{
		{"LABEL", label},
		{"GROUP", artifactRow.group},
		{"NAME", func(r artifactRow) string { return r.Name }},
	}
	if slices.ContainsFunc(rows, func(r artifactRow) bool { return r.Length != 0 }) {
		cols = append(cols, column[artifactRow]{"SIZE", func(r artifactRow) string {
			if r.Length == 0 {
				return ""
			}
			return fmt.Sprint(r.Length)
		}})
	}
	if slices.ContainsFunc(rows, func(r artifactRow) bool { return r.Digest != "" }) {
		cols = append(cols, column[artifactRow]{"DIGEST", func(r artifactRow) string { return r.Digest }})
	}
	cols = append(cols, column[artifactRow]{"URI", func(r artifactRow) string { return r.URI }})
	return withInvocation(n, func(r artifactRow) (string, string) { return r.InvocationID, r.Stream }, cols)
}

func newArtifactsCommand() *cli.Command {
	return &cli.Command{
		Name:      "artifacts",
		Usage:     "output files per target and output group, with URI, size and digest",
		ArgsUsage: "[STREAM...] [FILE...]",
		Description: commandHelp(`Lists the output files of every completed target, by target and output
group: the files of the group's named sets (followed through the sets they
include, each file once), with name, URI, and size and digest when Bazel
reported them. JSON marks the files Bazel also lists as important outputs
(important: true); an important output missing from every group is shown
with GROUP "(important)", a directory output with "(directory)".
--label keeps the targets whose label the regular expression matches
anywhere (Go's RE2 syntax).

` + viewSelectionHelp + `

Formats: table, json, ndjson, markdown (below).

` + markdownHelp + `

EXIT STATUS of artifacts: 7 when the streams have no output file at all
(before --label), else 0 — a failed build is not an error here; errors and
partial input as for every command.

EXAMPLES:
   bes artifacts build.bep
   bes artifacts build.bep --label '^//gen:' --format json | jq -r '.[].uri'
   bes artifacts 5d2e1f --format markdown >> "$GITHUB_STEP_SUMMARY"`),
		Flags: append(viewFlags(formatTable, formatJSON, formatNDJSON, formatMarkdown), exitZeroFlag(),
			&cli.StringFlag{Name: "label", Aliases: []string{"l"}, Usage: "keep the targets whose label matches `REGEX` (unanchored)"},
		),
		OnUsageError: usageErrorHandler,
		Action: func(c *cli.Context) error {
			opts := artifactsOptions{viewOptions: viewOptionsFrom(c), Label: c.String("label")}
			return runArtifacts(c.Context, opts, c.Args().Slice(), c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runArtifacts(ctx context.Context, opts artifactsOptions, args []string, w, errw io.Writer) error {
	re, err := regexp.Compile(opts.Label)
	if err != nil {
		return &usageError{msg: fmt.Sprintf("--label: %v", err), cause: err}
	}
	invs, res, err := loadInvocations(ctx, "artifacts", opts.viewOptions, args, errw)
	if err != nil {
		return err
	}
	var rows []artifactRow
	anyArtifact := false
	for _, inv := range invs {
		for _, a := range inv.Artifacts {
			anyArtifact = true
			if re.MatchString(a.Label) {
				rows = append(rows, artifactFor(inv, a))
			}
		}
	}
	if len(invs) > 0 && !anyArtifact {
		fmt.Fprintln(errw, "bes: artifacts: no output file in the streams given")
		res.add(ExitNoData)
	}
	doc := newViewDoc("artifacts", opts.viewOptions, invs, "No output files.", "output file")
	if err := renderView(w, doc, rows, artifactColumns(namesOf(invs), rows)); err != nil {
		return err
	}
	return opts.exit(res)
}

func artifactFor(inv *invocation.Invocation, a *invocation.Artifact) artifactRow {
	return artifactRow{
		Stream:        inv.StreamKey,
		InvocationID:  inv.InvocationID,
		Label:         a.Label,
		Configuration: a.Configuration,
		Aspect:        a.Aspect,
		Group:         a.Group,
		Name:          a.Name,
		URI:           a.URI,
		PathPrefix:    a.PathPrefix,
		Length:        a.Length,
		Digest:        a.Digest,
		Important:     a.Important,
		Directory:     a.Directory,
		Incomplete:    a.Incomplete,
	}
}
