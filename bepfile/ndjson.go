package bepfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

var (
	jsonStrict = protojson.UnmarshalOptions{}
	jsonIn     = protojson.UnmarshalOptions{DiscardUnknown: true}
	jsonOut    = proto.MarshalOptions{Deterministic: true}
)

// nextNDJSON reads one line of Bazel's JSON file: a BuildEvent in the
// proto3 JSON mapping. Its payload is the event's deterministic binary
// encoding (which may differ from the bytes Bazel writes to its binary
// file, e.g. in the order of map entries), wrapped as in FormatBEP. Blank
// lines are skipped. A last line without a newline that is a cut-off JSON
// value is a truncation (wrapping io.ErrUnexpectedEOF).
func (r *Reader) nextNDJSON() (*Stream, *Event, error) {
	r.found = Damage{}
	if r.finished {
		return r.finishEvent()
	}
	for {
		start := r.off
		line, complete, err := r.readLine()
		if err != nil {
			return nil, nil, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		index := r.index
		r.index++
		msg := &buildeventstream.BuildEvent{}
		found, err := decodeJSONEvent(line, msg)
		if err != nil {
			if !complete && truncatedJSON(line) {
				return nil, nil, r.errorAt(start, index, fmt.Errorf("line %d: truncated JSON: %w", r.line, io.ErrUnexpectedEOF), false)
			}
			return nil, nil, r.errorAt(start, index, fmt.Errorf("line %d: invalid JSON BuildEvent: %w", r.line, err), true)
		}
		payload, err := jsonOut.Marshal(msg)
		if err != nil {
			return nil, nil, r.errorAt(start, index, fmt.Errorf("line %d: %w", r.line, err), true)
		}
		s, ev, err := r.bepEvent(payload)
		if err != nil {
			return nil, nil, r.errorAt(start, index, fmt.Errorf("line %d: %w", r.line, err), true)
		}
		r.found = found
		ev.setPos(start, index)
		return s, ev, nil
	}
}

// readLine returns the next line without its line ending; complete says it
// ended in a newline. The line is valid until the next read. A line longer
// than MaxEventSize is a fatal error; at the end of the input readLine
// returns io.EOF.
func (r *Reader) readLine() (line []byte, complete bool, err error) {
	start, index := r.off, r.index
	r.line++
	buf := r.scratch[:0]
	defer func() { r.scratch = buf[:0] }()
	for {
		chunk, err := r.br.ReadSlice('\n')
		r.off += int64(len(chunk))
		n, limit := len(buf)+len(chunk), r.opts.MaxEventSize
		switch err {
		case nil:
			n -= len(chunk) - len(bytes.TrimRight(chunk, "\r\n")) // the line ending
		case bufio.ErrBufferFull:
			limit++ // the chunk may end in the '\r' of "\r\n"
		}
		if n > limit {
			return nil, false, r.errorAt(start, index, fmt.Errorf("line %d: %w", r.line, &SizeTooLargeError{Size: uint64(n), Max: r.opts.MaxEventSize}), false)
		}
		switch {
		case err == nil:
			if len(buf) == 0 {
				line = chunk // no copy: used before the next read
			} else {
				buf = append(buf, chunk...)
				line = buf
			}
			return bytes.TrimRight(line, "\r\n"), true, nil
		case err == bufio.ErrBufferFull:
			buf = append(buf, chunk...)
		case err == io.EOF:
			buf = append(buf, chunk...)
			if len(buf) == 0 {
				r.err = io.EOF
				return nil, false, io.EOF
			}
			return buf, false, nil
		default:
			return nil, false, r.errorAt(start, index, fmt.Errorf("line %d: %w", r.line, r.readError(err)), false)
		}
	}
}

// truncatedJSON reports whether line is the start of a JSON value cut off.
func truncatedJSON(line []byte) bool {
	err := json.NewDecoder(bytes.NewReader(line)).Decode(new(json.RawMessage))
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// Found returns what the reader found in the event Next last returned and
// could not take as it was; it is empty but for Bazel's JSON file
// (FormatNDJSON), whose lines are decoded as they are read:
// Damage.Unknown names the fields bes does not know (dropped from the
// event: they have no number) and the enum names it does not know (held as
// UnknownEnumNumber of the name), Damage.Repaired the line when it was not
// valid UTF-8 (decoded with U+FFFD in place of the invalid bytes). The
// Damage is valid until the next call to Next.
func (r *Reader) Found() Damage { return r.found }

// decodeJSONEvent decodes one line of Bazel's JSON file into msg, by one
// rule with the binary form (see DecodeBuildEvent): a field bes does not
// know is dropped and noticed, an enum name it does not know is kept as
// UnknownEnumNumber(name) (so that the event gives the verdict the binary
// file's unknown number gives) and noticed, invalid UTF-8 is decoded as
// U+FFFD. The common line, which protojson decodes strictly, costs one
// decode; the others are fixed up on a generic JSON tree first.
func decodeJSONEvent(line []byte, msg *buildeventstream.BuildEvent) (Damage, error) {
	err := jsonStrict.Unmarshal(line, msg)
	if err == nil {
		return Damage{}, nil
	}
	var d Damage
	var tree any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if dec.Decode(&tree) != nil || dec.More() {
		return d, err // not one JSON value: protojson's error says why
	}
	if !utf8.Valid(line) {
		d.repaired("line") // encoding/json decoded it with U+FFFD
	}
	fixJSON(msg.ProtoReflect().Descriptor(), tree, "", &d)
	fixed, merr := json.Marshal(tree)
	if merr == nil {
		if jsonStrict.Unmarshal(fixed, msg) == nil {
			return d, nil
		}
		// Something the fix-up does not handle: decode as before, with
		// what protojson drops dropped.
		if jsonIn.Unmarshal(fixed, msg) == nil {
			return d, nil
		}
	}
	return Damage{}, err
}

// fixJSON walks the JSON value v of a message of type md (path its JSON
// path), deleting the members md does not have and replacing the enum
// names it does not know by UnknownEnumNumber, and records both in d.
// Messages with a JSON form of their own (google.protobuf's) are left to
// protojson.
func fixJSON(md protoreflect.MessageDescriptor, v any, path string, d *Damage) {
	obj, ok := v.(map[string]any)
	if !ok || md.FullName().Parent() == "google.protobuf" {
		return
	}
	fields := md.Fields()
	for name, val := range obj {
		fd := fields.ByJSONName(name)
		if fd == nil {
			fd = fields.ByTextName(name)
		}
		if fd == nil {
			if !strings.HasPrefix(name, "[") { // an extension: protojson's to judge
				d.unknown(Unknown{Path: path, Field: strconv.Quote(name)})
				delete(obj, name)
			}
			continue
		}
		fpath := joinPath(path, fd.JSONName())
		switch {
		case fd.IsMap():
			m, ok := val.(map[string]any)
			if !ok {
				continue
			}
			vd := fd.MapValue()
			for k, x := range m {
				m[k] = fixJSONValue(vd, x, fpath, d)
			}
		case fd.IsList():
			l, ok := val.([]any)
			if !ok {
				continue
			}
			for i, x := range l {
				l[i] = fixJSONValue(fd, x, fpath, d)
			}
		default:
			obj[name] = fixJSONValue(fd, val, fpath, d)
		}
	}
}

// fixJSONValue fixes one value of field fd (an element, for lists and
// maps) and returns it.
func fixJSONValue(fd protoreflect.FieldDescriptor, v any, path string, d *Damage) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		fixJSON(fd.Message(), v, path, d)
	case protoreflect.EnumKind:
		name, ok := v.(string)
		if !ok || fd.Enum().FullName() == "google.protobuf.NullValue" || fd.Enum().Values().ByName(protoreflect.Name(name)) != nil {
			return v
		}
		d.unknown(Unknown{Path: path, Value: strconv.Quote(name)})
		return json.Number(strconv.Itoa(int(UnknownEnumNumber(name))))
	}
	return v
}

// joinPath appends a field's JSON name to a JSON path.
func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
