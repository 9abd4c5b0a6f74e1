package commands

import (
	"fmt"
	"io"
	"strconv"
	"sync"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/bepfile/wire"
)

// eventReport is what reading one event the lenient way found (the rule of
// bepfile.DecodeBuildEvent).
type eventReport struct {
	damage bepfile.Damage
	// err is set when the event's Bazel payload could not be decoded at
	// all: dump prints an error object in its place.
	err error
	// foreign is the type URL of a payload of a type bes does not know
	// (another build tool's events through a BES): dump prints it as
	// protojson prints an Any it cannot resolve, type and base64 value.
	foreign string
}

// bad reports whether the event counts as damaged input (exit 9).
func (r *eventReport) bad() bool { return r.err != nil || r.foreign != "" || r.damage.Damaged() }

// inspectEvent checks ev as dump's JSON would decode it, without decoding:
// the table format reports what the JSON formats report.
func inspectEvent(ev *bepfile.Event) eventReport {
	var rep eventReport
	payload := ev.Payload
	if !ev.IsBazel() {
		typeURL, value, ok := bazelAny(ev.Raw)
		switch {
		case !ok:
			return rep // no Bazel payload: the envelope was checked when read
		case typeURL != bepfile.BazelEventTypeURL:
			if !knownType(typeURL) {
				rep.foreign = typeURL
			}
			return rep
		}
		payload = value
	}
	rep.damage, rep.err = bepfile.CheckBuildEvent(payload)
	return rep
}

// bazelAny returns the type URL and value of the event.bazel_event Any of
// an encoded OrderedBuildEvent, walking the wire.
func bazelAny(raw []byte) (typeURL string, value []byte, ok bool) {
	event := bepfile.LastBytesField(raw, wire.OBEEvent)
	if event == nil {
		return "", nil, false
	}
	var anyMsg []byte
	found := false
	bepfile.EachField(event, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		if num == wire.BESBazelEvent && typ == protowire.BytesType {
			anyMsg, found = v, true
		}
	})
	if !found {
		return "", nil, false
	}
	bepfile.EachField(anyMsg, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) {
		switch {
		case num == wire.AnyTypeURL && typ == protowire.BytesType:
			typeURL = string(v)
		case num == wire.AnyValue && typ == protowire.BytesType:
			value = v
		}
	})
	return typeURL, value, true
}

// knownType reports whether protojson can resolve the type URL.
func knownType(typeURL string) bool {
	_, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	return err == nil
}

// damageLog reports, on standard error, each damaged event once (naming
// its file, byte offset and event index, or else its stream and sequence
// number) and what the events hold that bes does not know, once per
// input and field. It is safe for concurrent use: a query's filter decodes
// events on another goroutine than the one that prints them.
type damageLog struct {
	errw    io.Writer // a *lockedWriter shared with the other writers of stderr
	notices *bepfile.Notices
	mu      sync.Mutex
	sources map[string]string       // stream key → the file it was read from
	seen    map[*bepfile.Event]bool // damaged events reported
	damaged bool
}

func newDamageLog(errw io.Writer, notices *bepfile.Notices) *damageLog {
	return &damageLog{errw: errw, notices: notices, sources: map[string]string{}, seen: map[*bepfile.Event]bool{}}
}

// setSource records that the stream was read from file.
func (l *damageLog) setSource(key, file string) {
	l.mu.Lock()
	l.sources[key] = file
	l.mu.Unlock()
}

// where names an event: "FILE: byte N (event I)" when it was read from a
// file, else "stream KEY, event SEQ". l.mu is held.
func (l *damageLog) where(s *bepfile.Stream, ev *bepfile.Event) (where, input string) {
	if file := l.sources[s.Key]; file != "" {
		if off, idx, ok := ev.Position(); ok {
			return fmt.Sprintf("%s: byte %d (event %d)", file, off, idx), file
		}
		return fmt.Sprintf("%s: stream %s, event %d", file, s.Key, ev.Seq), file
	}
	return fmt.Sprintf("stream %s, event %d", s.Key, ev.Seq), "stream " + s.Key
}

// report reports what reading ev of s found.
func (l *damageLog) report(s *bepfile.Stream, ev *bepfile.Event, rep *eventReport) {
	if !rep.bad() && len(rep.damage.Unknown) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	where, input := l.where(s, ev)
	for _, line := range l.notices.New(input, rep.damage.Unknown) {
		fmt.Fprintf(l.errw, "bes: %s\n", safeCell(line))
	}
	if !rep.bad() || l.seen[ev] {
		return
	}
	l.seen[ev] = true
	l.damaged = true
	var msg string
	switch {
	case rep.err != nil:
		msg = rep.err.Error() + " (printed as an error object; every other event is used)"
	case rep.foreign != "":
		msg = "payload of type " + strconv.Quote(rep.foreign) + " unknown to bes (printed as its type and base64 value)"
	default:
		msg = rep.damage.String()
	}
	fmt.Fprintf(l.errw, "bes: %s: %s\n", safeCell(where), safeCell(msg))
}

// sawDamage reports whether some damaged event was reported.
func (l *damageLog) sawDamage() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.damaged
}

// lockedWriter serializes writes to w: the lines of a command's goroutines
// reach standard error whole.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lockedWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.Write(p)
}

// lenientResolver resolves Any type URLs for protojson as the global
// registry does, and any other to google.protobuf.BytesValue: an Any whose
// value fixAny wrapped in a BytesValue then prints as protojson prints a
// message with a JSON form of its own, {"@type": URL, "value": base64}.
type lenientResolver struct{}

func (lenientResolver) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	return protoregistry.GlobalTypes.FindMessageByName(name)
}

func (lenientResolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if mt, err := protoregistry.GlobalTypes.FindMessageByURL(url); err == nil {
		return mt, nil
	}
	return bytesValueType, nil
}

func (lenientResolver) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByName(name)
}

func (lenientResolver) FindExtensionByNumber(m protoreflect.FullName, n protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByNumber(m, n)
}

var bytesValueType = (&wrapperspb.BytesValue{}).ProtoReflect().Type()

// fixAny prepares the bazel_event Any of obe for protojson by the lenient
// rule: a Bazel payload is decoded with bepfile.DecodeBuildEvent and, if
// damaged, replaced by the encoding of the repaired message (obe is a
// decoded copy: the stored bytes are not touched); the value of a type bes
// does not know is wrapped for lenientResolver. msg is scratch space.
func fixAny(obe *buildpb.OrderedBuildEvent, msg *bes.BuildEvent) eventReport {
	var rep eventReport
	a := obe.GetEvent().GetBazelEvent()
	if a == nil {
		return rep
	}
	switch {
	case a.GetTypeUrl() == bepfile.BazelEventTypeURL:
		rep.damage, rep.err = bepfile.DecodeBuildEvent(a.GetValue(), msg)
		if rep.err == nil && rep.damage.Damaged() {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
			if err != nil {
				rep.err = err
				return rep
			}
			a.Value = b
		}
	case !knownType(a.GetTypeUrl()):
		rep.foreign = a.GetTypeUrl()
		b, err := proto.Marshal(wrapperspb.Bytes(a.GetValue()))
		if err != nil {
			rep.err = err
			return rep
		}
		a.Value = b
	}
	return rep
}

// source returns the file the stream was read from, or "".
func (l *damageLog) source(key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sources[key]
}
