package query

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/wire"
	"github.com/bes-cli/bes/store"
)

// viewFilter is a filter that can judge an event from a shared view, so
// that And walks each event's encoding once for all its filters.
type viewFilter interface {
	store.Filter
	matchView(st *store.Stream, v *view) (bool, error)
}

// And returns a filter that matches the events every filter matches,
// trying them in order and stopping at the first that does not match. Nil
// filters are left out; with none left, And returns nil, which matches
// every event.
func And(filters ...store.Filter) store.Filter {
	var fs andFilter
	for _, f := range filters {
		if f != nil {
			fs = append(fs, f)
		}
	}
	switch len(fs) {
	case 0:
		return nil
	case 1:
		return fs[0]
	}
	return fs
}

type andFilter []store.Filter

func (fs andFilter) Match(st *store.Stream, ev *bepfile.Event) (bool, error) {
	v := newView(ev)
	return fs.matchView(st, &v)
}

func (fs andFilter) matchView(st *store.Stream, v *view) (bool, error) {
	for _, f := range fs {
		var ok bool
		var err error
		if vf, isView := f.(viewFilter); isView {
			ok, err = vf.matchView(st, v)
		} else {
			ok, err = f.Match(st, v.ev)
		}
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// Kinds returns every kind an event can have, sorted: the JSON names of
// Bazel's payloads (bepfile.Kinds) and of the envelope events that are not
// Bazel events (google.devtools.build.v1.BuildEvent's oneof event).
func Kinds() []string {
	ks := bepfile.Kinds()
	fields := buildEventDesc().Oneofs().ByName("event").Fields()
	for i := 0; i < fields.Len(); i++ {
		ks = append(ks, fields.Get(i).JSONName())
	}
	slices.Sort(ks)
	return slices.Compact(ks)
}

// Kind returns a filter that matches events of any of the kinds, e.g.
// "testResult" (see Kinds). An unknown kind is an error, so that a typo
// does not silently match nothing.
func Kind(kinds ...string) (store.Filter, error) {
	known := Kinds()
	set := kindFilter{}
	for _, k := range kinds {
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("unknown kind %q; the kinds are %s", k, strings.Join(known, ", "))
		}
		set[k] = true
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("no kind given")
	}
	return set, nil
}

type kindFilter map[string]bool

func (f kindFilter) Match(st *store.Stream, ev *bepfile.Event) (bool, error) {
	v := newView(ev)
	return f.matchView(st, &v)
}

func (f kindFilter) matchView(_ *store.Stream, v *view) (bool, error) {
	return f[v.kind()], nil
}

// Label returns a filter that matches the events whose id has a target
// label that the regular expression (Go's RE2 syntax) matches anywhere in
// it. Events without a label never match.
func Label(pattern string) (store.Filter, error) {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("invalid label pattern: %w", err)
	}
	return labelFilter{re}, nil
}

type labelFilter struct{ re *regexp.Regexp }

func (f labelFilter) Match(st *store.Stream, ev *bepfile.Event) (bool, error) {
	v := newView(ev)
	return f.matchView(st, &v)
}

func (f labelFilter) matchView(_ *store.Stream, v *view) (bool, error) {
	l := v.label()
	return l != "" && f.re.MatchString(l), nil
}

// Target statuses of Status, beside the test statuses.
const (
	StatusSuccess = "SUCCESS"
	StatusFailed  = "FAILED"
)

// Status returns a filter that matches the events with any of the
// statuses, named case-insensitively: a TestStatus name (PASSED, FLAKY,
// TIMEOUT, FAILED, INCOMPLETE, REMOTE_FAILURE, FAILED_TO_BUILD,
// TOOL_HALTED_BEFORE_TESTING, NO_STATUS) matches testResult events by their
// status and testSummary events by their overall_status; SUCCESS and FAILED
// match completed (target completed) events by their success. FAILED thus
// matches failed tests and failed targets alike. Other events never match.
// The statuses are read from the wire encoding; nothing is decoded.
func Status(statuses ...string) (store.Filter, error) {
	f := &statusFilter{}
	for _, s := range statuses {
		u := strings.ToUpper(strings.TrimSpace(s))
		ok := false
		if n, isTest := bes.TestStatus_value[u]; isTest {
			f.tests = append(f.tests, uint64(n))
			ok = true
		}
		switch u {
		case StatusSuccess:
			f.success, ok = true, true
		case StatusFailed:
			f.failure = true
		}
		if !ok {
			return nil, fmt.Errorf("unknown status %q; the statuses are %s (tests) and %s, %s (targets)",
				s, strings.Join(testStatusNames(), ", "), StatusSuccess, StatusFailed)
		}
	}
	if len(statuses) == 0 {
		return nil, fmt.Errorf("no status given")
	}
	return f, nil
}

func testStatusNames() []string {
	names := make([]string, 0, len(bes.TestStatus_name))
	for n := int32(0); int(n) < len(bes.TestStatus_name); n++ {
		if name, ok := bes.TestStatus_name[n]; ok {
			names = append(names, name)
		}
	}
	return names
}

type statusFilter struct {
	tests            []uint64 // TestStatus numbers
	success, failure bool     // TargetComplete.success values
}

func (f *statusFilter) Match(st *store.Stream, ev *bepfile.Event) (bool, error) {
	v := newView(ev)
	return f.matchView(st, &v)
}

func (f *statusFilter) matchView(_ *store.Stream, v *view) (bool, error) {
	p := v.peeked()
	switch p.PayloadField {
	case wire.BuildEventTestResult, wire.BuildEventTestSummary:
		if len(f.tests) == 0 {
			return false, nil
		}
		num := wire.TestResultStatus
		if p.PayloadField == wire.BuildEventTestSummary {
			num = wire.TestSummaryOverallStatus
		}
		return slices.Contains(f.tests, varintField(p.Payload, num)), nil
	case wire.BuildEventCompleted:
		if varintField(p.Payload, wire.TargetCompleteSuccess) != 0 {
			return f.success, nil
		}
		return f.failure, nil
	}
	return false, nil
}

// varintField returns the last value of the varint field num of an encoded
// message, 0 (the proto3 default) when absent.
func varintField(b []byte, num protowire.Number) uint64 {
	var x uint64
	bepfile.EachField(b, func(n protowire.Number, typ protowire.Type, _ []byte, v uint64) {
		if n == num && typ == protowire.VarintType {
			x = v
		}
	})
	return x
}

var (
	_ viewFilter = andFilter(nil)
	_ viewFilter = kindFilter(nil)
	_ viewFilter = labelFilter{}
	_ viewFilter = (*statusFilter)(nil)
	_ viewFilter = (*Filter)(nil)
)
