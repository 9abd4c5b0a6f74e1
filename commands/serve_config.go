package commands

import (
	"fmt"
	"os"
	"slices"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// configFlag is --config: a YAML file of bes serve's flags (issue 14).
func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Usage: "YAML `FILE` of flags, one \"flag-name: value\" per line (a list for a flag given several times); a flag on the command line or in its environment variable wins"}
}

// applyConfigFile is the Before of a command with configFlag: each key of
// the --config file is a flag's name without dashes ("listen",
// "max-open-streams", "idle-timeout: 5m"), its value what would follow
// the flag (a list for a repeated flag); a flag the file does not name
// keeps its default (log-format: text, the slog records with time). A
// flag set on the command line,
// or by its environment variable (BES_STORE), keeps that value. A key
// that is not a flag of the command, or a value the flag refuses, is a
// usage error naming the file and the key; an unreadable file an error.
//
// urfave/cli's altsrc does the same but needs every flag rewrapped in its
// own types, which the store flags (storeFlags) are not; and it ignores
// unknown keys, which hides a misspelt one.
func applyConfigFile(c *cli.Context) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return &usageError{msg: fmt.Sprintf("--config %s: %v", path, err), cause: err}
	}
	if len(doc.Content) == 0 {
		return nil // an empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return &usageError{msg: fmt.Sprintf("--config %s: line %d: want flag-name: value lines", path, m.Line)}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		name := k.Value
		bad := func(why string) error {
			return &usageError{msg: fmt.Sprintf("--config %s: line %d: %s: %s", path, k.Line, name, why)}
		}
		if name == "config" || !slices.ContainsFunc(c.Command.Flags, func(f cli.Flag) bool { return hasName(f, name) }) {
			return bad(fmt.Sprintf("not a flag of bes %s", c.Command.Name))
		}
		var vals []string
		switch v.Kind {
		case yaml.ScalarNode:
			vals = []string{v.Value}
		case yaml.SequenceNode:
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					return bad("want a value or a list of values")
				}
				vals = append(vals, e.Value)
			}
		default:
			return bad("want a value or a list of values")
		}
		if c.IsSet(name) {
			continue // the command line or the environment wins
		}
		for _, val := range vals {
			if err := c.Set(name, val); err != nil {
				return bad(fmt.Sprintf("%q: %v", val, err))
			}
		}
	}
	return nil
}

// hasName reports whether f, or a flag it holds (the store flags), is
// named name.
func hasName(f cli.Flag, name string) bool {
	if slices.Contains(f.Names(), name) {
		return true
	}
	if s, ok := f.(storeFlags); ok {
		return s.blobs != nil && slices.Contains(s.blobs.Names(), name)
	}
	return false
}
