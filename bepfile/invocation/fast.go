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
	"github.com/bes-cli/bes/bepfile/wire"
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

// The id messages labelID reads number their label and aspect alike
// (TargetConfiguredId, TargetCompletedId, TestSummaryId), and success reads
// ActionExecuted and TargetComplete alike; wire_test.go checks it.
const (
	labelField   = wire.TargetCompletedIDLabel
	aspectField  = wire.TargetCompletedIDAspect
	successField = wire.TargetCompleteSuccess
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
		if !ok || f.num == wire.ConfigurationIDID && f.typ != protowire.BytesType {
			return nil, false
		}
		if f.num == wire.ConfigurationIDID {
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

// timedAction reports whether an ActionExecuted payload has a start_time
// (wire.ActionExecutedStartTime), which Bazel 5 and later set.
func timedAction(payload []byte) bool {
	for b := payload; len(b) > 0; {
		f, rest, ok := nextField(b)
		if !ok {
			return false
		}
		if f.num == wire.ActionExecutedStartTime && f.typ == protowire.BytesType {
			return true
		}
		b = rest
	}
	return false
}

// fastConfigured folds a TargetConfigured event.
func (b *Builder) fastConfigured(id, payload []byte) bool {
	num, v, ok := idOf(id)
	if !ok || num != wire.IDTargetConfigured {
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
		case wire.TargetConfiguredTargetKind:
			if f.typ != protowire.BytesType {
				return false
			}
			kind = f.v
		case wire.TargetConfiguredTestSize:
			if f.typ != protowire.VarintType {
				return false
			}
			size = f.x
		}
	}
	if len(aspect) > 0 {
		return true
	}
	if bes.TestSize(int32(size)) != bes.TestSize_UNKNOWN || bytes.HasSuffix(kind, []byte("_test rule")) {
		if !utf8.Valid(kind) {
			return false
		}
		t := b.targetBytes(label)
		t.configured = true
		t.kind = b.kindName(kind)
		// The label's string once, for every map; the kinds, few, once.
		b.testRules[t.label] = true
		b.kinds[t.label] = [2]string{t.kind, testSizeName(bes.TestSize(int32(size)))}
		return true
	}
	if !utf8.Valid(kind) {
		return false
	}
	t := b.targetBytes(label)
	t.configured = true
	t.kind = b.kindName(kind)
	return true
}

// kindName interns a rule kind read off the wire: a build has a handful.
func (b *Builder) kindName(kind []byte) string {
	if s, ok := b.kindNames[string(kind)]; ok {
		return s
	}
	if b.kindNames == nil {
		b.kindNames = map[string]string{}
	}
	s := string(kind)
	b.kindNames[s] = s
	return s
}

// fastCompleted folds a TargetComplete event that succeeded, when the
// artifacts are not wanted; it returns false for any other.
func (b *Builder) fastCompleted(event, id, payload []byte) bool {
	ok, wellFormed := success(payload)
	if !ok || !wellFormed {
		return false
	}
	num, v, ok := idOf(id)
	if !ok || num != wire.IDTargetCompleted {
		return false
	}
	tlabel, _, aspect, ok := labelID(v, wire.TargetCompletedIDConfiguration, true)
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
			if f.num != wire.BuildEventChildren {
				continue
			}
			if f.typ != protowire.BytesType {
				return false
			}
			num, v, ok := idOf(f.v)
			if !ok {
				return false
			}
			if num != wire.IDTestSummary {
				continue
			}
			label, config, _, ok := labelID(v, wire.TestSummaryIDConfiguration, false)
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
	if !ok || num != wire.IDPattern {
		return false
	}
	var patterns []string
	for len(v) > 0 {
		f, rest, ok := nextField(v)
		if !ok || f.num == wire.PatternExpandedIDPattern && f.typ != protowire.BytesType {
			return false
		}
		if f.num == wire.PatternExpandedIDPattern {
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
		if !ok || (f.num == wire.TimestampSeconds || f.num == wire.TimestampNanos) && f.typ != protowire.VarintType {
			return 0, 0, false
		}
		switch f.num {
		case wire.TimestampSeconds:
			sec = int64(f.x)
		case wire.TimestampNanos:
			nanos = int32(f.x)
		}
		b = rest
	}
	return sec, nanos, true
}

// fastTestResult folds a TestResult event.
func (b *Builder) fastTestResult(id, payload []byte) bool {
	num, v, ok := idOf(id)
	if !ok || num != wire.IDTestResult {
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
		case wire.TestResultIDLabel, wire.TestResultIDConfiguration:
			if f.typ != protowire.BytesType {
				return false
			}
			if f.num == wire.TestResultIDLabel {
				label = f.v
			} else if config, ok = configuration(f.v); !ok {
				return false
			}
		case wire.TestResultIDRun, wire.TestResultIDShard, wire.TestResultIDAttempt:
			if f.typ != protowire.VarintType {
				return false
			}
			switch f.num {
			case wire.TestResultIDRun:
				r.Run = int(int32(f.x))
			case wire.TestResultIDShard:
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
		case wire.TestResultStatus, wire.TestResultCachedLocally, wire.TestResultTestAttemptStartMillisEpoch, wire.TestResultTestAttemptDurationMillis:
			if f.typ != protowire.VarintType {
				return false
			}
			switch f.num {
			case wire.TestResultStatus:
				status = f.x
			case wire.TestResultCachedLocally:
				r.CachedLocally = f.x != 0
			case wire.TestResultTestAttemptStartMillisEpoch:
				startMillis = int64(f.x)
			case wire.TestResultTestAttemptDurationMillis:
				durMillis = int64(f.x)
			}
		case wire.TestResultStatusDetails:
			if f.typ != protowire.BytesType || !utf8.Valid(f.v) {
				return false
			}
			r.StatusDetails = string(f.v)
		case wire.TestResultTestAttemptStart, wire.TestResultTestAttemptDuration:
			if f.typ != protowire.BytesType {
				return false
			}
			sec, nanos, ok := timestamp(f.v)
			if !ok {
				return false
			}
			if f.num == wire.TestResultTestAttemptStart {
				start = &timestamppb.Timestamp{Seconds: sec, Nanos: nanos}
			} else {
				dur = &durationpb.Duration{Seconds: sec, Nanos: nanos}
			}
		case wire.TestResultTestActionOutput:
			if f.typ != protowire.BytesType {
				return false
			}
			name, uri, ok := fileOf(f.v)
			if !ok {
				return false
			}
			switch string(name) {
			case "test.log":
				r.Log = string(uri)
			case "test.xml":
				r.XML = string(uri)
			}
		case wire.TestResultExecutionInfo:
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
				case wire.ExecutionInfoStrategy, wire.ExecutionInfoHostname:
					if g.typ != protowire.BytesType || !utf8.Valid(g.v) {
						return false
					}
					if g.num == wire.ExecutionInfoStrategy {
						r.Strategy = string(g.v)
					} else {
						r.Hostname = string(g.v)
					}
				case wire.ExecutionInfoCachedRemotely:
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

// fileOf reads File.name and File.uri off the wire: uri is nil when the
// file has none (it is given by contents or a symlink); ok is false when
// either is malformed or the URI is not UTF-8. The slices alias b.
func fileOf(b []byte) (name, uri []byte, ok bool) {
	for len(b) > 0 {
		g, rest, ok := nextField(b)
		if !ok {
			return nil, nil, false
		}
		b = rest
		switch g.num {
		case wire.FileName, wire.FileURI:
			if g.typ != protowire.BytesType {
				return nil, nil, false
			}
			if g.num == wire.FileName {
				name = g.v
			} else {
				uri = g.v
			}
		case wire.FileContents, wire.FileSymlinkTargetPath: // the other members of the oneof file
			uri = nil
		}
	}
	return name, uri, utf8.Valid(uri)
}

// fastTestSummary folds a TestSummary event.
func (b *Builder) fastTestSummary(seq int64, id, payload []byte) bool {
	num, v, ok := idOf(id)
	if !ok || num != wire.IDTestSummary {
		return false
	}
	label, config, _, ok := labelID(v, wire.TestSummaryIDConfiguration, false)
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
		passed     []string
	)
	for p := payload; len(p) > 0; {
		f, rest, ok := nextField(p)
		if !ok {
			return false
		}
		p = rest
		switch f.num {
		case wire.TestSummaryOverallStatus, wire.TestSummaryTotalRunCount, wire.TestSummaryRunCount, wire.TestSummaryShardCount,
			wire.TestSummaryAttemptCount, wire.TestSummaryTotalNumCached, wire.TestSummaryFirstStartTimeMillis, wire.TestSummaryTotalRunDurationMillis:
			if f.typ != protowire.VarintType {
				return false
			}
			x[f.num] = f.x
		case wire.TestSummaryFailed, wire.TestSummaryPassed:
			if f.typ != protowire.BytesType {
				return false
			}
			_, uri, ok := fileOf(f.v)
			if !ok {
				return false
			}
			if uri != nil && f.num == wire.TestSummaryFailed {
				failed = append(failed, string(uri))
			} else if uri != nil {
				passed = append(passed, string(uri))
			}
		case wire.TestSummaryFirstStartTime, wire.TestSummaryTotalRunDuration:
			if f.typ != protowire.BytesType {
				return false
			}
			if sec, nanos, wellFormed = timestamp(f.v); !wellFormed {
				return false
			}
			if f.num == wire.TestSummaryFirstStartTime {
				start = &timestamppb.Timestamp{Seconds: sec, Nanos: nanos}
			} else {
				dur = &durationpb.Duration{Seconds: sec, Nanos: nanos}
			}
		}
	}
	t := b.testBytes(label, config)
	t.HasSummary = true
	t.Status = b.testStatus("testSummary.overallStatus", x[wire.TestSummaryOverallStatus])
	t.TotalRuns = int(int32(x[wire.TestSummaryTotalRunCount]))
	t.RunCount = int(int32(x[wire.TestSummaryRunCount]))
	t.Shards = int(int32(x[wire.TestSummaryShardCount]))
	t.Attempts = int(int32(x[wire.TestSummaryAttemptCount]))
	t.Cached = int(int32(x[wire.TestSummaryTotalNumCached]))
	t.Start = timeOf(start, int64(x[wire.TestSummaryFirstStartTimeMillis]))
	t.Duration = durationOf(dur, int64(x[wire.TestSummaryTotalRunDurationMillis]))
	t.FailedLogs = append(t.FailedLogs[:0], failed...)
	t.PassedLogs = append(t.PassedLogs[:0], passed...)
	t.summarySeq = seq
	return true
}

// fastNamedSet folds a NamedSetOfFiles event: its files and the ids of the
// sets it includes, read off the wire into the messages the resolver walks
// (Builder.artifacts), with their strings cut from one copy of the payload.
func (b *Builder) fastNamedSet(id, payload []byte) bool {
	num, v, ok := idOf(id)
	if !ok || num != wire.IDNamedSet {
		return false
	}
	setID, ok := stringField(v, wire.NamedSetOfFilesIDID)
	if !ok {
		return false
	}
	sub := substrings(payload)
	ns := &bes.NamedSetOfFiles{}
	for p := payload; len(p) > 0; {
		f, rest, ok := nextField(p)
		if !ok {
			return false
		}
		p = rest
		switch f.num {
		case wire.NamedSetOfFilesFiles:
			if f.typ != protowire.BytesType {
				return false
			}
			file, ok := fileMessage(f.v, sub)
			if !ok {
				return false
			}
			ns.Files = append(ns.Files, file)
		case wire.NamedSetOfFilesFileSets:
			if f.typ != protowire.BytesType {
				return false
			}
			sid, ok := stringField(f.v, wire.NamedSetOfFilesIDID)
			if !ok {
				return false
			}
			ns.FileSets = append(ns.FileSets, &bes.BuildEventId_NamedSetOfFilesId{Id: sub(sid)})
		}
	}
	b.namedSets[string(setID)] = ns
	return true
}

// stringField returns the last string field num of the message b; ok is
// false when b is malformed or the string is not UTF-8. The slice aliases
// b.
func stringField(b []byte, num protowire.Number) (s []byte, ok bool) {
	for len(b) > 0 {
		f, rest, ok := nextField(b)
		if !ok {
			return nil, false
		}
		b = rest
		if f.num == num {
			if f.typ != protowire.BytesType {
				return nil, false
			}
			s = f.v
		}
	}
	return s, utf8.Valid(s)
}

// fileMessage reads a File off the wire, its strings made by sub; ok is
// false when a field it reads is malformed or a string is not UTF-8.
func fileMessage(b []byte, sub func([]byte) string) (*bes.File, bool) {
	file := &bes.File{}
	for len(b) > 0 {
		g, rest, ok := nextField(b)
		if !ok {
			return nil, false
		}
		b = rest
		switch g.num {
		case wire.FileName, wire.FileURI, wire.FileContents, wire.FileSymlinkTargetPath, wire.FilePathPrefix, wire.FileDigest:
			if g.typ != protowire.BytesType || (g.num != wire.FileContents && !utf8.Valid(g.v)) {
				return nil, false
			}
		case wire.FileLength:
			if g.typ != protowire.VarintType {
				return nil, false
			}
		}
		switch g.num {
		case wire.FileName:
			file.Name = sub(g.v)
		case wire.FileURI:
			file.File = &bes.File_Uri{Uri: sub(g.v)}
		case wire.FileContents:
			file.File = &bes.File_Contents{Contents: bytes.Clone(g.v)}
		case wire.FileSymlinkTargetPath:
			file.File = &bes.File_SymlinkTargetPath{SymlinkTargetPath: sub(g.v)}
		case wire.FilePathPrefix:
			file.PathPrefix = append(file.PathPrefix, sub(g.v))
		case wire.FileDigest:
			file.Digest = sub(g.v)
		case wire.FileLength:
			file.Length = int64(g.x)
		}
	}
	return file, true
}

// fastCompletedOutputs is fastCompleted for a Builder that wants the
// artifacts: it also reads the target's output groups, important and
// directory outputs off the wire into the completion Builder.artifacts
// resolves.
func (b *Builder) fastCompletedOutputs(event, id, payload []byte) bool {
	if ok, wellFormed := success(payload); !ok || !wellFormed {
		return false
	}
	num, v, ok := idOf(id)
	if !ok || num != wire.IDTargetCompleted {
		return false
	}
	label, config, aspect, ok := labelID(v, wire.TargetCompletedIDConfiguration, true)
	if !ok || !utf8.Valid(label) || !utf8.Valid(config) || !utf8.Valid(aspect) {
		return false
	}
	sub := substrings(payload)
	tc := &bes.TargetComplete{Success: true}
	for p := payload; len(p) > 0; {
		f, rest, ok := nextField(p)
		if !ok {
			return false
		}
		p = rest
		switch f.num {
		case wire.TargetCompleteOutputGroup:
			if f.typ != protowire.BytesType {
				return false
			}
			g, ok := outputGroup(f.v, sub)
			if !ok {
				return false
			}
			tc.OutputGroup = append(tc.OutputGroup, g)
		case wire.TargetCompleteImportantOutput, wire.TargetCompleteDirectoryOutput:
			if f.typ != protowire.BytesType {
				return false
			}
			file, ok := fileMessage(f.v, sub)
			if !ok {
				return false
			}
			if f.num == wire.TargetCompleteImportantOutput {
				//lint:ignore SA1019 Bazel writes important_output, a deprecated copy of the default group, up to 7.x.
				tc.ImportantOutput = append(tc.ImportantOutput, file)
			} else {
				tc.DirectoryOutput = append(tc.DirectoryOutput, file)
			}
		}
	}
	// The children and the target's state, as without artifacts; nothing
	// is changed unless it reads well.
	if !b.fastCompleted(event, id, payload) {
		return false
	}
	b.completed = append(b.completed, completion{string(label), string(config), string(aspect), tc})
	return true
}

// outputGroup reads an OutputGroup off the wire, its strings made by sub.
func outputGroup(b []byte, sub func([]byte) string) (*bes.OutputGroup, bool) {
	g := &bes.OutputGroup{}
	for len(b) > 0 {
		f, rest, ok := nextField(b)
		if !ok {
			return nil, false
		}
		b = rest
		switch f.num {
		case wire.OutputGroupName:
			if f.typ != protowire.BytesType || !utf8.Valid(f.v) {
				return nil, false
			}
			g.Name = sub(f.v)
		case wire.OutputGroupFileSets:
			if f.typ != protowire.BytesType {
				return nil, false
			}
			sid, ok := stringField(f.v, wire.NamedSetOfFilesIDID)
			if !ok {
				return nil, false
			}
			g.FileSets = append(g.FileSets, &bes.BuildEventId_NamedSetOfFilesId{Id: sub(sid)})
		case wire.OutputGroupIncomplete:
			if f.typ != protowire.VarintType {
				return nil, false
			}
			g.Incomplete = f.x != 0
		case wire.OutputGroupInlineFiles:
			if f.typ != protowire.BytesType {
				return nil, false
			}
			file, ok := fileMessage(f.v, sub)
			if !ok {
				return nil, false
			}
			g.InlineFiles = append(g.InlineFiles, file)
		}
	}
	return g, true
}

// substrings returns a function giving the string of a slice of payload
// (a field's bytes, as nextField returns them) as a substring of one copy
// of payload: one allocation for all the strings of an event, instead of
// one each.
func substrings(payload []byte) func(v []byte) string {
	whole := string(payload)
	return func(v []byte) string {
		i := cap(payload) - cap(v) // v is a slice of payload
		return whole[i : i+len(v)]
	}
}
