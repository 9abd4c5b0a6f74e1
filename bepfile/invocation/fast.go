package invocation

import (
	"bytes"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// The fast path. Most events of a large build are progress, configured,
// action, namedSetOfFiles and completed events of targets that went well;
// the model needs a flag or a label of them, so the Builder reads those
// straight off the wire, as it does test results and summaries, and
// decodes whole (with protobuf-go) only the rare events that need more:
// started, expanded, aborted, finished, failed actions and targets (and,
// for artifacts, completed targets and named sets). Every fast reader
// reports !ok on anything it does not expect in the fields it reads (a
// wrong wire type, a truncated field, a string that is not UTF-8), and the
// event is then decoded whole, so that such input meets the errors of a
// full decode; fields the fast path does not read are not validated.

// Field numbers, from bepfile/proto/bes/bep/build_event_stream.proto.
const (
	beChildren protowire.Number = 2 // BuildEvent.children

	idPattern          protowire.Number = 4  // BuildEventId.pattern
	idTargetCompleted  protowire.Number = 5  // BuildEventId.target_completed
	idTestSummary      protowire.Number = 7  // BuildEventId.test_summary
	idTestResult       protowire.Number = 8  // BuildEventId.test_result
	idTargetConfigured protowire.Number = 16 // BuildEventId.target_configured

	// TargetConfiguredId, TargetCompletedId, TestResultId, TestSummaryId.
	labelField      protowire.Number = 1
	aspectField     protowire.Number = 2 // TargetConfiguredId, TargetCompletedId
	completedConfig protowire.Number = 3 // TargetCompletedId.configuration
	resultConfig    protowire.Number = 5 // TestResultId.configuration
	summaryConfig   protowire.Number = 2 // TestSummaryId.configuration
	resultRun       protowire.Number = 2
	resultShard     protowire.Number = 3
	resultAttempt   protowire.Number = 4
	configID        protowire.Number = 1 // ConfigurationId.id

	configuredKind protowire.Number = 1 // TargetConfigured.target_kind
	configuredSize protowire.Number = 2 // TargetConfigured.test_size
	successField   protowire.Number = 1 // ActionExecuted.success, TargetComplete.success

	fileName protowire.Number = 1 // File.name
	fileURI  protowire.Number = 2 // File.uri
)

// wireField is one field of a message: v is a length-delimited field's
// content, x a varint's value.
type wireField struct {
	num protowire.Number
	typ protowire.Type
	v   []byte
	x   uint64
}

// nextField reads the first field of b and returns it and the rest of b;
// ok is false if b is malformed. Groups are refused: no field the fast
// path reads is one.
func nextField(b []byte) (f wireField, rest []byte, ok bool) {
	var n int
	if len(b) > 0 && b[0] < 0x80 {
		f.num, f.typ, n = protowire.Number(b[0]>>3), protowire.Type(b[0]&7), 1
	} else {
		f.num, f.typ, n = protowire.ConsumeTag(b)
		if n < 0 {
			return f, nil, false
		}
	}
	b = b[n:]
	switch f.typ {
	case protowire.VarintType:
		if len(b) > 0 && b[0] < 0x80 {
			f.x, n = uint64(b[0]), 1
		} else {
			f.x, n = protowire.ConsumeVarint(b)
		}
	case protowire.BytesType:
		if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
			f.v, n = b[1:1+b[0]], 1+int(b[0])
		} else {
			f.v, n = protowire.ConsumeBytes(b)
		}
	case protowire.Fixed32Type, protowire.Fixed64Type:
		n = protowire.ConsumeFieldValue(f.num, f.typ, b)
	default:
		return f, nil, false
	}
	if n < 0 {
		return f, nil, false
	}
	return f, b[n:], true
}

// idOf returns the member of an encoded BuildEventId: its field number and
// content.
func idOf(id []byte) (protowire.Number, []byte, bool) {
	var num protowire.Number
	var v []byte
	for len(id) > 0 {
		f, rest, ok := nextField(id)
		if !ok || f.typ != protowire.BytesType {
			return 0, nil, false
		}
		num, v, id = f.num, f.v, rest
	}
	return num, v, true
}

// configuration returns ConfigurationId.id.
func configuration(b []byte) ([]byte, bool) {
	var id []byte
	for len(b) > 0 {
		f, rest, ok := nextField(b)
		if !ok || f.num == configID && f.typ != protowire.BytesType {
			return nil, false
		}
		if f.num == configID {
			id = f.v
		}
		b = rest
	}
	return id, true
}

// labelID reads an id with a label (field 1), a configuration (cfgNum, 0
// for none) and, when aspect, an aspect (field 2): a TargetConfiguredId,
// TargetCompletedId or TestSummaryId. The slices alias b.
func labelID(b []byte, cfgNum protowire.Number, aspect bool) (label, config, asp []byte, ok bool) {
	for len(b) > 0 {
		f, rest, ok := nextField(b)
		if !ok {
			return nil, nil, nil, false
		}
		b = rest
		switch {
		case f.num == labelField:
			if f.typ != protowire.BytesType {
				return nil, nil, nil, false
			}
			label = f.v
		case f.num == cfgNum:
			if f.typ != protowire.BytesType {
				return nil, nil, nil, false
			}
			if config, ok = configuration(f.v); !ok {
				return nil, nil, nil, false
			}
		case aspect && f.num == aspectField:
			if f.typ != protowire.BytesType {
				return nil, nil, nil, false
			}
			asp = f.v
		}
	}
	return label, config, asp, true
}

// success reads the success flag (field 1) of an ActionExecuted or
// TargetComplete; wellFormed is false if the encoding is not.
func success(payload []byte) (ok, wellFormed bool) {
	var x uint64
	for b := payload; len(b) > 0; {
		f, rest, ok := nextField(b)
		if !ok || f.num == successField && f.typ != protowire.VarintType {
			return false, false
		}
		if f.num == successField {
			x = f.x
		}
		b = rest
	}
	return x != 0, true
}

// fastConfigured folds a TargetConfigured event.
func (b *Builder) fastConfigured(id, payload []byte) bool {
	num, v, ok := idOf(id)
	if !ok || num != idTargetConfigured {
		return false
	}
	label, _, aspect, ok := labelID(v, 0, true)
	if !ok || !utf8.Valid(label) {
		return false
	}
	var kind []byte
	var size uint64
	for p := payload; len(p) > 0; {
		f, rest, ok := nextField(p)
		if !ok {
			return false
		}
		p = rest
		switch f.num {
		case configuredKind:
			if f.typ != protowire.BytesType {
				return false
			}
			kind = f.v
		case configuredSize:
			if f.typ != protowire.VarintType {
				return false
			}
			size = f.x
		}
	}
	if len(aspect) > 0 {
		return true
	}
	b.targetBytes(label).configured = true
	if bes.TestSize(int32(size)) != bes.TestSize_UNKNOWN || bytes.HasSuffix(kind, []byte("_test rule")) {
		if !utf8.Valid(kind) {
			return false
		}
		b.testRules[string(label)] = true
		b.kinds[string(label)] = [2]string{string(kind), testSizeName(bes.TestSize(int32(size)))}
	}
	return true
}

// fastCompleted folds a TargetComplete event that succeeded, when the
// artifacts are not wanted; it returns false for any other.
func (b *Builder) fastCompleted(event, id, payload []byte) bool {
	ok, wellFormed := success(payload)
	if !ok || !wellFormed {
		return false
	}
	num, v, ok := idOf(id)
	if !ok || num != idTargetCompleted {
		return false
	}
	tlabel, _, aspect, ok := labelID(v, completedConfig, true)
	if !ok || !utf8.Valid(tlabel) {
		return false
	}
	// A test target announces its results and summary. Check the
	// children first: a malformed one sends the event to a full decode.
	for pass := 0; pass < 2; pass++ {
		for e := event; len(e) > 0; {
			f, rest, ok := nextField(e)
			if !ok {
				return false
			}
			e = rest
			if f.num != beChildren {
				continue
			}
			if f.typ != protowire.BytesType {
				return false
			}
			num, v, ok := idOf(f.v)
			if !ok {
				return false
			}
			if num != idTestSummary {
				continue
			}
			label, config, _, ok := labelID(v, summaryConfig, false)
			if !ok || !utf8.Valid(label) || !utf8.Valid(config) {
				return false
			}
			if pass == 1 {
				b.testBytes(label, config)
			}
		}
	}
	if len(aspect) == 0 {
		t := b.targetBytes(tlabel)
		t.state, t.abort = targetBuilt, nil
	}
	return true
}

// fastExpanded folds a PatternExpanded event: only its id's patterns
// matter.
func (b *Builder) fastExpanded(id []byte) bool {
	num, v, ok := idOf(id)
	if !ok || num != idPattern {
		return false
	}
	var patterns []string
	for len(v) > 0 {
		f, rest, ok := nextField(v)
		if !ok || f.num == 1 && f.typ != protowire.BytesType {
			return false
		}
		if f.num == 1 {
			if !utf8.Valid(f.v) {
				return false // as protobuf-go would refuse it
			}
			patterns = append(patterns, string(f.v))
		}
		v = rest
	}
	b.inv.Patterns = append(b.inv.Patterns, patterns...)
	return true
}

// timestamp decodes a google.protobuf.Timestamp (or Duration: the same two
// fields).
func timestamp(b []byte) (sec int64, nanos int32, ok bool) {
	for len(b) > 0 {
		f, rest, ok := nextField(b)
		if !ok || (f.num == 1 || f.num == 2) && f.typ != protowire.VarintType {
			return 0, 0, false
		}
		switch f.num {
		case 1:
			sec = int64(f.x)
		case 2:
			nanos = int32(f.x)
		}
		b = rest
	}
	return sec, nanos, true
}

// fastTestResult folds a TestResult event.
func (b *Builder) fastTestResult(id, payload []byte) bool {
	num, v, ok := idOf(id)
	if !ok || num != idTestResult {
		return false
	}
	var label, config []byte
	r := &TestRun{}
	for len(v) > 0 {
		f, rest, ok := nextField(v)
		if !ok {
			return false
		}
		v = rest
		switch f.num {
		case labelField, resultConfig:
			if f.typ != protowire.BytesType {
				return false
			}
			if f.num == labelField {
				label = f.v
			} else if config, ok = configuration(f.v); !ok {
				return false
			}
		case resultRun, resultShard, resultAttempt:
			if f.typ != protowire.VarintType {
				return false
			}
			switch f.num {
			case resultRun:
				r.Run = int(int32(f.x))
			case resultShard:
				r.Shard = int(int32(f.x))
			default:
				r.Attempt = int(int32(f.x))
			}
		}
	}
	var (
		status                 uint64
		startMillis, durMillis int64
		start                  *timestamppb.Timestamp
		dur                    *durationpb.Duration
	)
	for p := payload; len(p) > 0; {
		f, rest, ok := nextField(p)
		if !ok {
			return false
		}
		p = rest
		switch f.num {
		case 5, 4, 6, 3: // status, cached_locally, test_attempt_start_millis_epoch, test_attempt_duration_millis
			if f.typ != protowire.VarintType {
				return false
			}
			switch f.num {
			case 5:
				status = f.x
			case 4:
				r.CachedLocally = f.x != 0
			case 6:
				startMillis = int64(f.x)
			case 3:
				durMillis = int64(f.x)
			}
		case 9: // status_details
			if f.typ != protowire.BytesType || !utf8.Valid(f.v) {
				return false
			}
			r.StatusDetails = string(f.v)
		case 10, 11: // test_attempt_start, test_attempt_duration
			if f.typ != protowire.BytesType {
				return false
			}
			sec, nanos, ok := timestamp(f.v)
			if !ok {
				return false
			}
			if f.num == 10 {
				start = &timestamppb.Timestamp{Seconds: sec, Nanos: nanos}
			} else {
				dur = &durationpb.Duration{Seconds: sec, Nanos: nanos}
			}
		case 2: // test_action_output
			if f.typ != protowire.BytesType {
				return false
			}
			var name, uri []byte
			for fb := f.v; len(fb) > 0; {
				g, rest, ok := nextField(fb)
				if !ok {
					return false
				}
				fb = rest
				switch g.num {
				case fileName, fileURI:
					if g.typ != protowire.BytesType {
						return false
					}
					if g.num == fileName {
						name = g.v
					} else {
						uri = g.v
					}
				case 3, 7: // the other members of the oneof file
					uri = nil
				}
			}
			if !utf8.Valid(uri) {
				return false
			}
			switch string(name) {
			case "test.log":
				r.Log = string(uri)
			case "test.xml":
				r.XML = string(uri)
			}
		case 8: // execution_info
			if f.typ != protowire.BytesType {
				return false
			}
			for e := f.v; len(e) > 0; {
				g, rest, ok := nextField(e)
				if !ok {
					return false
				}
				e = rest
				switch g.num {
				case 2, 3:
					if g.typ != protowire.BytesType || !utf8.Valid(g.v) {
						return false
					}
					if g.num == 2 {
						r.Strategy = string(g.v)
					} else {
						r.Hostname = string(g.v)
					}
				case 6:
					if g.typ != protowire.VarintType {
						return false
					}
					r.CachedRemotely = g.x != 0
				}
			}
		}
	}
	if !utf8.Valid(label) || !utf8.Valid(config) {
		return false
	}
	r.Status = b.testStatus("testResult.status", status)
	r.Start = timeOf(start, startMillis)
	r.Duration = durationOf(dur, durMillis)
	if len(label) == 0 {
		return true // an id without a label (an edited excerpt) names no test
	}
	t := b.testBytes(label, config)
	t.Runs = append(t.Runs, r)
	return true
}

// testStatus names a TestStatus read off the wire, and notes a value
// bes's schema does not know.
func (b *Builder) testStatus(path string, v uint64) string {
	st := bes.TestStatus(int32(v))
	if _, known := bes.TestStatus_name[int32(st)]; !known {
		b.unknown([]bepfile.Unknown{{Path: path, Value: strconv.Itoa(int(int32(v)))}})
	}
	return statusName(st)
}

// statusName is a TestStatus's name: Bazel's, the name Bazel's JSON file
// gave a value unknown to bes (bepfile.UnknownEnumName), or the number.
func statusName(st bes.TestStatus) string {
	if name, ok := bepfile.UnknownEnumName(protoreflect.EnumNumber(st)); ok {
		return name
	}
	return st.String()
}

// fileURIOf reads File.uri off the wire: nil when the file has none (it
// is given by contents or a symlink); ok is false when it is malformed.
func fileURIOf(b []byte) (uri []byte, ok bool) {
	for len(b) > 0 {
		g, rest, ok := nextField(b)
		if !ok {
			return nil, false
		}
		b = rest
		switch g.num {
		case fileURI:
			if g.typ != protowire.BytesType || !utf8.Valid(g.v) {
				return nil, false
			}
			uri = g.v
		case 3, 7: // the other members of the oneof file
			uri = nil
		}
	}
	return uri, true
}

// fastTestSummary folds a TestSummary event.
func (b *Builder) fastTestSummary(seq int64, id, payload []byte) bool {
	num, v, ok := idOf(id)
	if !ok || num != idTestSummary {
		return false
	}
	label, config, _, ok := labelID(v, summaryConfig, false)
	if !ok || !utf8.Valid(label) || !utf8.Valid(config) {
		return false
	}
	var (
		x          [16]uint64 // the varint fields, by number
		start      *timestamppb.Timestamp
		dur        *durationpb.Duration
		sec        int64
		nanos      int32
		wellFormed bool
		failed     []string
	)
	for p := payload; len(p) > 0; {
		f, rest, ok := nextField(p)
		if !ok {
			return false
		}
		p = rest
		switch f.num {
		case 5, 1, 10, 11, 15, 6, 7, 9:
			if f.typ != protowire.VarintType {
				return false
			}
			x[f.num] = f.x
		case 4: // failed: File
			if f.typ != protowire.BytesType {
				return false
			}
			uri, ok := fileURIOf(f.v)
			if !ok {
				return false
			}
			if uri != nil {
				failed = append(failed, string(uri))
			}
		case 13, 12:
			if f.typ != protowire.BytesType {
				return false
			}
			if sec, nanos, wellFormed = timestamp(f.v); !wellFormed {
				return false
			}
			if f.num == 13 {
				start = &timestamppb.Timestamp{Seconds: sec, Nanos: nanos}
			} else {
				dur = &durationpb.Duration{Seconds: sec, Nanos: nanos}
			}
		}
	}
	t := b.testBytes(label, config)
	t.HasSummary = true
	t.Status = b.testStatus("testSummary.overallStatus", x[5])
	t.TotalRuns = int(int32(x[1]))
	t.RunCount = int(int32(x[10]))
	t.Shards = int(int32(x[11]))
	t.Attempts = int(int32(x[15]))
	t.Cached = int(int32(x[6]))
	t.Start = timeOf(start, int64(x[7]))
	t.Duration = durationOf(dur, int64(x[9]))
	t.FailedLogs = append(t.FailedLogs[:0], failed...)
	t.summarySeq = seq
	return true
}
