package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/wire"
	"github.com/bes-cli/bes/store"
)

// The flags of bes diff (issue 15): the options each invocation was run
// with, from its stream's OptionsParsed event (not among the facts of the
// catalog): the events of the stream are read up to that one, which Bazel
// sends among the first, and only it is decoded.

// errOptionsFound stops reading a stream at its OptionsParsed event.
var errOptionsFound = errors.New("options found")

// streamOptions returns the first OptionsParsed event of the stored stream
// e, nil when it has none (a stream cut short before it, a lifecycle
// stream). Only the events' envelopes are read before it; an event that
// cannot be decoded is an error naming the stream.
func streamOptions(ctx context.Context, st store.Backend, e *store.Entry) (*bes.OptionsParsed, error) {
	var opts *bes.OptionsParsed
	err := st.Events(ctx, e, func(s *bepfile.Stream, ev *bepfile.Event) error {
		payload := ev.BazelPayload(s)
		if payload == nil {
			return nil
		}
		p, err := bepfile.Peek(payload)
		if err != nil || p.PayloadField != wire.BuildEventOptionsParsed {
			return nil // what cannot be peeked is no OptionsParsed
		}
		o := &bes.OptionsParsed{}
		if err := proto.Unmarshal(p.Payload, o); err != nil {
			return fmt.Errorf("stream %s: the event of sequence number %d: OptionsParsed: %w", e.Key, ev.Seq, err)
		}
		opts = o
		return errOptionsFound
	})
	if err != nil && !errors.Is(err, errOptionsFound) {
		return nil, err
	}
	return opts, nil
}

// optionValues groups options as the command line gave them
// ("--name=value", "--name") by name, in order: the values after "=", ""
// for an option without one.
func optionValues(prefix string, opts []string) (names []string, values map[string][]string) {
	values = map[string][]string{}
	for _, o := range opts {
		name, value, _ := strings.Cut(o, "=")
		name = prefix + name
		if _, ok := values[name]; !ok {
			names = append(names, name)
		}
		values[name] = append(values[name], value)
	}
	return names, values
}

// diffFlags returns the rows of kind flag: the explicit options (startup
// options labelled "startup --name", then the command's "--name") added in
// b, removed from a, or whose values changed, by label. Before and After
// are an option's values joined by ", " ("" for an option given without
// a value), null where it is not given.
func diffFlags(a, b *bes.OptionsParsed) []diffRow {
	var rows []diffRow
	for _, part := range []struct {
		prefix string
		of     func(*bes.OptionsParsed) []string
	}{
		{"startup ", (*bes.OptionsParsed).GetExplicitStartupOptions},
		{"", (*bes.OptionsParsed).GetExplicitCmdLine},
	} {
		_, va := optionValues(part.prefix, part.of(a))
		_, vb := optionValues(part.prefix, part.of(b))
		for _, name := range sortedUnion(va, vb) {
			x, inA := va[name]
			y, inB := vb[name]
			r := diffRow{Kind: "flag", Label: name}
			switch {
			case !inA:
				r.Change, r.After = "added", strings.Join(y, ", ")
			case !inB:
				r.Change, r.Before = "removed", strings.Join(x, ", ")
			case !slices.Equal(x, y):
				r.Change, r.Before, r.After = "changed", strings.Join(x, ", "), strings.Join(y, ", ")
			default:
				continue
			}
			rows = append(rows, r)
		}
	}
	return rows
}
