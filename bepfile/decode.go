package bepfile

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// Damage is what DecodeBuildEvent (or CheckBuildEvent) found in an encoded
// build_event_stream.BuildEvent beyond what protobuf decodes as it is. The
// encoding itself is never changed: a repair is made on a copy, for the
// decoded message only. Paths are JSON paths of Bazel's field names
// ("progress.stderr", "testResult.testActionOutput"), without indexes: a
// repeated field or map is named once however many of its elements are
// concerned.
type Damage struct {
	// Repaired lists the string fields whose bytes were not valid UTF-8
	// (bazelbuild/bazel#11125: a Progress event's stderr as the terminal
	// got it). Go's protobuf refuses such a proto3 string; the decoded
	// message holds the string with each invalid byte replaced by U+FFFD.
	Repaired []string
	// Corrupt lists the parts of the event that are not well-formed
	// protobuf (a nested message cut short or garbled, a known field with
	// another wire type than the schema's, a packed field that does not
	// parse), each as "path: cause". The decoded message holds what came
	// before the fault in each such message; the bytes after it (or the
	// garbled field) are left out.
	Corrupt []string
	// Unknown lists the fields and enum values the event holds that bes's
	// schema does not know (a newer Bazel, or another tool). They are no
	// damage: protobuf keeps unknown fields and open enums keep unknown
	// numbers, and the decoded message holds both.
	Unknown []Unknown
}

// Damaged reports whether the decoded message differs from what the
// encoding says: a string was repaired or a part was corrupt. An event
// with only unknown fields or values is not damaged.
func (d *Damage) Damaged() bool { return len(d.Repaired) > 0 || len(d.Corrupt) > 0 }

// String describes the damage on one line, for example
//
//	invalid UTF-8 in progress.stderr (replaced by U+FFFD); corrupt testResult: unexpected EOF (decoded in part)
//
// Unknown fields and values are left out (see Unknown.String). It is ""
// when the event is not damaged.
func (d *Damage) String() string {
	var parts []string
	if len(d.Repaired) > 0 {
		parts = append(parts, "invalid UTF-8 in "+strings.Join(d.Repaired, ", ")+" (replaced by U+FFFD)")
	}
	for _, c := range d.Corrupt {
		parts = append(parts, "corrupt "+c+" (decoded in part)")
	}
	return strings.Join(parts, "; ")
}

func (d *Damage) repaired(path string) {
	for _, p := range d.Repaired {
		if p == path {
			return
		}
	}
	d.Repaired = append(d.Repaired, path)
}

func (d *Damage) unknown(u Unknown) {
	for _, x := range d.Unknown {
		if x.key() == u.key() {
			return
		}
	}
	d.Unknown = append(d.Unknown, u)
}

// Unknown is a field or an enum value that bes's schema does not know.
type Unknown struct {
	// Path is, for an enum value, the JSON path of its field
	// ("testResult.status"); for an unknown field, the JSON path of the
	// message holding it ("" for the BuildEvent itself).
	Path string
	// Field names an unknown field: its number when read from the wire
	// ("42"), its quoted JSON name when read from Bazel's JSON file
	// (`"someOtherFutureField"`). "" for an enum value.
	Field string
	// Value is the enum value not understood: its number ("99"), or its
	// quoted name in Bazel's JSON file (`"NEW_STATUS"`, which the decoded
	// message holds as UnknownEnumNumber of the name). "" for a field.
	Value string
}

// String says what was not understood, for example
//
//	testResult.status: value 99 unknown to bes (a newer Bazel?)
//	testResult: field 42 unknown to bes (a newer Bazel?)
func (u Unknown) String() string {
	if u.Field == "" {
		return u.Path + ": value " + u.Value + " unknown to bes (a newer Bazel?)"
	}
	p := u.Path
	if p == "" {
		p = "BuildEvent"
	}
	return p + ": field " + u.Field + " unknown to bes (a newer Bazel?)"
}

// key identifies the field an Unknown is about, whatever the value.
func (u Unknown) key() string {
	if u.Field == "" {
		return u.Path
	}
	return u.Path + "\x00" + u.Field
}

// Notices says once per input and field what bes did not understand. It is
// safe for concurrent use; a nil *Notices says nothing.
type Notices struct {
	mu   sync.Mutex
	seen map[string]bool
}

// New returns the lines not given before for input, one per field of us,
// each "INPUT: " followed by Unknown.String:
//
//	test.bep: testResult.status: value 99 unknown to bes (a newer Bazel?)
//
// An enum field whose value was noticed once is not noticed again for
// another value.
func (n *Notices) New(input string, us []Unknown) []string {
	if n == nil || len(us) == 0 {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.seen == nil {
		n.seen = map[string]bool{}
	}
	var out []string
	for _, u := range us {
		k := input + "\x00" + u.key()
		if n.seen[k] {
			continue
		}
		n.seen[k] = true
		out = append(out, input+": "+u.String())
	}
	return out
}

// UnknownEnumNumber is the number a decoded message holds for an enum
// value that Bazel's JSON file names and bes's schema does not know (a
// newer Bazel's): a number in [2^29, 2^29+2^28), derived from the name by
// FNV-1a, which no enum of Bazel's uses. Like the number the binary file
// gives for the same value, it has no name in the enum, so a view treats
// both alike (a TestStatus without a name is no pass).
func UnknownEnumNumber(name string) protoreflect.EnumNumber {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	n := protoreflect.EnumNumber(1<<29 | h&(1<<28-1))
	unknownNames.LoadOrStore(n, name)
	return n
}

// unknownNames remembers the names UnknownEnumNumber was given, by number,
// for UnknownEnumName.
var unknownNames sync.Map // protoreflect.EnumNumber → string

// UnknownEnumName returns the name that Bazel's JSON file gave an enum
// value unknown to bes, when n is the UnknownEnumNumber of a name this
// process read: views show "NEW_STATUS" rather than the made-up number.
// Safe for concurrent use.
func UnknownEnumName(n protoreflect.EnumNumber) (string, bool) {
	v, ok := unknownNames.Load(n)
	if !ok {
		return "", false
	}
	return v.(string), true
}

// ErrNotBuildEvent is wrapped by the error of DecodeBuildEvent and
// CheckBuildEvent for an encoding that is not a BuildEvent at its top
// level.
var ErrNotBuildEvent = errors.New("invalid BuildEvent")

// DecodeBuildEvent decodes an encoded build_event_stream.BuildEvent (an
// Event's Payload) into be, leniently: the one rule every command decodes
// Bazel's events with.
//
//   - A string field whose bytes are not valid UTF-8 (bazelbuild/bazel#11125;
//     Go's protobuf refuses such proto3 strings) is decoded with each
//     invalid byte replaced by U+FFFD, and named in Damage.Repaired.
//   - A nested message that is not well-formed protobuf is decoded up to
//     the fault, and named in Damage.Corrupt.
//   - Unknown fields and enum values are decoded as protobuf does (kept),
//     and named in Damage.Unknown.
//
// payload is never modified, and be never aliases it. The cost over
// proto.Unmarshal is one walk of the wire encoding, without allocation for
// an event with nothing to report; a damaged event is decoded from a
// repaired copy.
//
// The error is non-nil, wrapping ErrNotBuildEvent, only when the
// BuildEvent's own top level is not well-formed (its id or payload field
// cannot even be delimited): the event cannot be decoded, and be holds the
// fields before the fault, if any. Damage then names the fault too.
func DecodeBuildEvent(payload []byte, be *buildeventstream.BuildEvent) (Damage, error) {
	d, top := CheckBuildEvent(payload)
	b := payload
	if d.Damaged() {
		info := buildEventInfo()
		b = (&walker{repair: true}).walk(info, payload, nil)
	}
	if err := unmarshalBE.Unmarshal(b, be); err != nil {
		// The walk found nothing protobuf refuses, yet it refused: report
		// it rather than hide it.
		proto.Reset(be)
		if top == nil {
			top = fmt.Errorf("%w: %w", ErrNotBuildEvent, err)
		}
		d.Corrupt = append(d.Corrupt, "BuildEvent: "+err.Error())
	}
	return d, top
}

// unmarshalBE decodes a BuildEvent; required fields (of the proto2 messages
// it embeds) are not insisted on.
var unmarshalBE = proto.UnmarshalOptions{AllowPartial: true}

// CheckBuildEvent reports what DecodeBuildEvent would find in an encoded
// BuildEvent, without decoding it: one walk of the wire encoding, which
// allocates nothing for an event with nothing to report. The error is
// DecodeBuildEvent's.
func CheckBuildEvent(payload []byte) (Damage, error) {
	w := walker{record: true}
	w.walk(buildEventInfo(), payload, nil)
	if w.top != nil {
		return w.d, fmt.Errorf("%w: %w", ErrNotBuildEvent, w.top)
	}
	return w.d, nil
}

// msgInfo is what the walk needs of a message type: its fields by number.
type msgInfo struct {
	dense  []*fieldInfo // by number, for numbers below denseMax
	sparse map[protowire.Number]*fieldInfo
}

const denseMax = 1 << 10

func (m *msgInfo) field(num protowire.Number) *fieldInfo {
	if num < protowire.Number(len(m.dense)) {
		return m.dense[num]
	}
	return m.sparse[num]
}

// fieldInfo is what the walk needs of a field.
type fieldInfo struct {
	name   string // JSON name
	kind   protoreflect.Kind
	wire   protowire.Type // of one element, unpacked
	list   bool           // repeated (not a map): a scalar one may be packed
	msg    *msgInfo       // message and group kinds
	values protoreflect.EnumValueDescriptors
}

var (
	infoOnce sync.Once
	beInfo   *msgInfo
)

// buildEventInfo returns the msgInfo of build_event_stream.BuildEvent,
// with every message type it reaches, made once.
func buildEventInfo() *msgInfo {
	infoOnce.Do(func() {
		beInfo = newMsgInfo((*buildeventstream.BuildEvent)(nil).ProtoReflect().Descriptor(), map[protoreflect.FullName]*msgInfo{})
	})
	return beInfo
}

func newMsgInfo(md protoreflect.MessageDescriptor, done map[protoreflect.FullName]*msgInfo) *msgInfo {
	if m := done[md.FullName()]; m != nil {
		return m
	}
	m := &msgInfo{}
	done[md.FullName()] = m
	fields := md.Fields()
	maxDense := protowire.Number(0)
	for i := 0; i < fields.Len(); i++ {
		if n := fields.Get(i).Number(); n < denseMax && n > maxDense {
			maxDense = n
		}
	}
	m.dense = make([]*fieldInfo, maxDense+1)
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		f := &fieldInfo{name: fd.JSONName(), kind: fd.Kind(), wire: wireType(fd.Kind()), list: fd.IsList()}
		switch fd.Kind() {
		case protoreflect.MessageKind, protoreflect.GroupKind:
			f.msg = newMsgInfo(fd.Message(), done)
		case protoreflect.EnumKind:
			f.values = fd.Enum().Values()
		}
		if n := fd.Number(); n < denseMax {
			m.dense[n] = f
		} else {
			if m.sparse == nil {
				m.sparse = map[protowire.Number]*fieldInfo{}
			}
			m.sparse[n] = f
		}
	}
	return m
}

// wireType is the wire type of one value of kind k.
func wireType(k protoreflect.Kind) protowire.Type {
	switch k {
	case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind,
		protoreflect.Uint32Kind, protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		return protowire.VarintType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	}
	return protowire.BytesType
}

// walker walks an encoded message along its schema. In check mode it
// records what it finds in d; in repair mode it returns a copy of the
// message that proto.Unmarshal accepts: invalid UTF-8 replaced, corrupt
// parts left out.
type walker struct {
	d      Damage // what the walk found, when record is set
	record bool
	repair bool
	top    error // the BuildEvent's own top level is malformed
	// depth is the number of messages around the one being walked, and
	// stack the fields leading to it (the first len(stack) of them).
	depth int
	stack [32]*fieldInfo
}

// path returns the JSON path of the message being walked, with name
// appended if it is not "".
func (w *walker) path(name string) string {
	var b strings.Builder
	for _, f := range w.stack[:min(w.depth, len(w.stack))] {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(f.name)
	}
	if w.depth > len(w.stack) {
		b.WriteString(".…")
	}
	if name != "" {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(name)
	}
	return b.String()
}

// corrupt records a fault in the message being walked: in its field
// name, if not "". A fault in the BuildEvent's own top level makes the
// event undecodable (w.top).
func (w *walker) corrupt(name, cause string) {
	if !w.record {
		return
	}
	p := w.path(name)
	if w.depth == 0 && w.top == nil {
		w.top = errors.New(cause)
		if name != "" {
			w.top = fmt.Errorf("%s: %s", name, cause)
		}
	}
	if p == "" {
		p = "BuildEvent"
	}
	w.d.Corrupt = append(w.d.Corrupt, p+": "+cause)
}

// walk walks the encoded message b of type m. In repair mode it appends
// the repaired message to out and returns it.
func (w *walker) walk(m *msgInfo, b []byte, out []byte) []byte {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			w.corrupt("", protowire.ParseError(n).Error())
			return out
		}
		if num > protowire.MaxValidNumber {
			// ConsumeTag takes numbers up to 2^31-1; protobuf refuses
			// those over 2^29-1, as the fuzzer found.
			w.corrupt("", fmt.Sprintf("invalid field number %d", num))
			return out
		}
		vlen := protowire.ConsumeFieldValue(num, typ, b[n:])
		if vlen < 0 {
			w.corrupt("", fmt.Sprintf("field %d: %v", num, protowire.ParseError(vlen)))
			return out
		}
		whole, v := b[:n+vlen], b[n:n+vlen]
		b = b[n+vlen:]
		f := m.field(num)
		if f == nil {
			if w.record {
				w.d.unknown(Unknown{Path: w.path(""), Field: strconv.Itoa(int(num))})
			}
			out = w.keep(out, whole)
			continue
		}
		if typ != f.wire {
			if typ == protowire.BytesType && f.list && f.wire != protowire.BytesType {
				out = w.packed(f, num, v, whole, out)
				continue
			}
			w.corrupt(f.name, fmt.Sprintf("wire type %s, want %s", wireTypeName(typ), wireTypeName(f.wire)))
			continue // left out of the repair
		}
		switch f.kind {
		case protoreflect.StringKind:
			s, _ := protowire.ConsumeBytes(v)
			if utf8.Valid(s) {
				out = w.keep(out, whole)
				continue
			}
			if w.record {
				w.d.repaired(w.path(f.name))
			}
			if w.repair {
				out = protowire.AppendTag(out, num, typ)
				out = protowire.AppendString(out, validUTF8(s))
			}
		case protoreflect.MessageKind:
			s, _ := protowire.ConsumeBytes(v)
			if !w.push(f) {
				continue
			}
			if w.repair {
				sub := w.walk(f.msg, s, nil)
				out = protowire.AppendTag(out, num, typ)
				out = protowire.AppendBytes(out, sub)
			} else {
				w.walk(f.msg, s, nil)
			}
			w.depth--
		case protoreflect.GroupKind:
			s := v[:len(v)-protowire.SizeTag(num)] // without the end tag
			if !w.push(f) {
				continue
			}
			if w.repair {
				out = protowire.AppendTag(out, num, typ)
				out = w.walk(f.msg, s, out)
				out = protowire.AppendTag(out, num, protowire.EndGroupType)
			} else {
				w.walk(f.msg, s, nil)
			}
			w.depth--
		case protoreflect.EnumKind:
			x, _ := protowire.ConsumeVarint(v)
			w.enum(f, x)
			out = w.keep(out, whole)
		default:
			out = w.keep(out, whole)
		}
	}
	return out
}

// maxDepth is how deep messages may nest: protobuf's own limit
// (proto.UnmarshalOptions.RecursionLimit's default), which also bounds the
// walk's recursion.
const maxDepth = 10000

// push enters the message of field f, and reports whether it may: a
// message nested deeper than maxDepth is corrupt, and left out.
func (w *walker) push(f *fieldInfo) bool {
	if w.depth >= maxDepth {
		w.corrupt(f.name, "messages nested too deep")
		return false
	}
	if w.depth < len(w.stack) {
		w.stack[w.depth] = f
	}
	w.depth++
	return true
}

// keep appends a field's encoding unchanged, in repair mode.
func (w *walker) keep(out, whole []byte) []byte {
	if w.repair {
		return append(out, whole...)
	}
	return out
}

// enum records an enum value the schema does not name.
func (w *walker) enum(f *fieldInfo, x uint64) {
	if !w.record || f.values.ByNumber(protoreflect.EnumNumber(int32(x))) != nil {
		return
	}
	w.d.unknown(Unknown{Path: w.path(f.name), Value: strconv.FormatInt(int64(int32(x)), 10)})
}

// packed walks a packed repeated scalar field: a corrupt one is left out.
func (w *walker) packed(f *fieldInfo, num protowire.Number, v, whole, out []byte) []byte {
	p, _ := protowire.ConsumeBytes(v)
	for len(p) > 0 {
		var n int
		switch f.wire {
		case protowire.VarintType:
			var x uint64
			x, n = protowire.ConsumeVarint(p)
			if n >= 0 && f.kind == protoreflect.EnumKind {
				w.enum(f, x)
			}
		case protowire.Fixed32Type:
			_, n = protowire.ConsumeFixed32(p)
		case protowire.Fixed64Type:
			_, n = protowire.ConsumeFixed64(p)
		default:
			n = -1
		}
		if n < 0 {
			w.corrupt(f.name, "packed field does not parse")
			return out
		}
		p = p[n:]
	}
	return w.keep(out, whole)
}

// validUTF8 returns s with each byte that is not part of a valid UTF-8
// sequence replaced by U+FFFD, as Go's conversion of a string to runes
// and Java's decoder (which Bazel uses) do.
func validUTF8(s []byte) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.Write(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}
