package bepfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
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

// nextNDJSON reads one JSON value of Bazel's JSON file: a BuildEvent in
// the proto3 JSON mapping. Its payload is the event's deterministic binary
// encoding (which may differ from the bytes Bazel writes to its binary
// file, e.g. in the order of map entries), wrapped as in FormatBEP.
//
// The values may be laid out in any way: one per line as Bazel writes
// them (the fast path: a line that decodes strictly is taken whole), over
// several lines (`jq . build.json`), several on one line. White space
// between them is skipped. See readValue for what is not a value.
func (r *Reader) nextNDJSON() (*Stream, *Event, error) {
	r.found = Damage{}
	if r.finished {
		return r.finishEvent()
	}
	if err := r.skipSpace(); err != nil {
		return nil, nil, err
	}
	start, line, index := r.off, r.line+1, r.index
	r.index++
	msg := &buildeventstream.BuildEvent{}
	var found Damage
	var strictErr error
	v := r.peekLine()
	if v != nil {
		strictErr = jsonStrict.Unmarshal(v, msg)
	}
	if v != nil && strictErr == nil {
		// One BuildEvent alone on its line, as Bazel writes it: protojson
		// takes nothing but one whole value.
		r.consume(len(v), 0)
	} else {
		lineLen := len(v)
		v, err := r.readValue(start, line, index)
		if err != nil {
			return nil, nil, err
		}
		if len(v) != lineLen {
			strictErr = nil // not the line protojson refused
		}
		if found, err = decodeJSONEvent(v, msg, strictErr); err != nil {
			r.endLine()
			return nil, nil, r.errorAt(start, index, fmt.Errorf("line %d: invalid JSON BuildEvent: %w", line, err), true)
		}
	}
	r.endLine()
	payload, err := jsonOut.Marshal(msg)
	if err != nil {
		return nil, nil, r.errorAt(start, index, fmt.Errorf("line %d: %w", line, err), true)
	}
	s, ev, err := r.bepEvent(payload)
	if err != nil {
		return nil, nil, r.errorAt(start, index, fmt.Errorf("line %d: %w", line, err), true)
	}
	r.found = found
	ev.setPos(start, index)
	return s, ev, nil
}

// buffered returns the bytes buffered in the reader, reading once if
// there are none; it returns no bytes only at the end of the input (err
// io.EOF) or on a read error.
func (r *Reader) buffered() ([]byte, error) {
	if n := r.br.Buffered(); n > 0 {
		p, _ := r.br.Peek(n)
		return p, nil
	}
	if _, err := r.br.Peek(1); err != nil && r.br.Buffered() == 0 {
		return nil, err
	}
	p, _ := r.br.Peek(r.br.Buffered())
	return p, nil
}

// bufferMore returns the bytes buffered in the reader, more than have of
// them, reading once (a short read on a pipe is enough). The error is
// bufio.ErrBufferFull when have bytes fill the buffer, and io.EOF (or a
// read error) when no more bytes come.
func (r *Reader) bufferMore(have int) ([]byte, error) {
	if n := r.br.Buffered(); n > have {
		p, _ := r.br.Peek(n)
		return p, nil
	}
	if have >= r.br.Size() {
		p, _ := r.br.Peek(have)
		return p, bufio.ErrBufferFull
	}
	p, err := r.br.Peek(have + 1)
	if len(p) <= have {
		return p, err
	}
	p, _ = r.br.Peek(r.br.Buffered())
	return p, nil
}

// consume discards n buffered bytes holding newlines line breaks.
func (r *Reader) consume(n, newlines int) {
	r.br.Discard(n)
	r.off += int64(n)
	r.line += newlines
}

// skipSpace skips JSON white space. At the end of the input it returns
// io.EOF; a read error is fatal.
func (r *Reader) skipSpace() error {
	for {
		p, err := r.buffered()
		if len(p) == 0 {
			if err == io.EOF {
				r.err = io.EOF
				return io.EOF
			}
			return r.errorAt(r.off, r.index, fmt.Errorf("line %d: %w", r.line+1, r.readError(err)), false)
		}
		i := 0
		for i < len(p) && isSpace(p[i]) {
			i++
		}
		r.consume(i, bytes.Count(p[:i], []byte("\n")))
		if i < len(p) {
			return nil
		}
	}
}

// endLine consumes the white space after a value up to the end of its line,
// as far as it is buffered, so that Offset is the end of the line.
func (r *Reader) endLine() {
	p, _ := r.br.Peek(r.br.Buffered())
	for i, c := range p {
		switch c {
		case ' ', '\t', '\r':
			continue
		case '\n':
			r.consume(i+1, 1)
			return
		}
		r.consume(i, 0)
		return
	}
	r.consume(len(p), 0)
}

// peekLine returns the rest of the current line, without its line ending
// and trailing blanks, if it is buffered whole (or can be, reading as
// little as it takes), starts with '{', ends with '}' and is not longer
// than MaxEventSize: most likely one BuildEvent as Bazel writes it. Else it
// returns nil. Nothing is consumed.
func (r *Reader) peekLine() []byte {
	p, _ := r.buffered()
	if len(p) == 0 || p[0] != '{' {
		return nil
	}
	nl := bytes.IndexByte(p, '\n')
	for nl < 0 {
		if len(p) > r.opts.MaxEventSize+2 {
			return nil
		}
		seen := len(p)
		var err error
		if p, err = r.bufferMore(seen); err != nil {
			return nil // a line longer than the buffer, or the last line
		}
		if nl = bytes.IndexByte(p[seen:], '\n'); nl >= 0 {
			nl += seen
		}
	}
	line := bytes.TrimRight(p[:nl], " \t\r")
	if len(line) > r.opts.MaxEventSize || line[len(line)-1] != '}' {
		return nil
	}
	return line
}

// readValue reads the JSON value at the reader's position (start, on line
// line, the index-th value; its first byte is not white space) and returns
// its bytes, valid until the next read. The value is bounded by
// MaxEventSize: a longer one is a fatal error, and its bytes are never
// held beyond that. At the end of the input a value cut off is a
// truncation: a fatal error wrapping io.ErrUnexpectedEOF, located at the
// value's start.
//
// What is not JSON (garbage between values, a value cut off in the middle
// of the file and followed by others) is skipped, with a resumable error
// located at its start, up to the next line that starts with '{': where
// Bazel's next event starts (each starts a line of its own), and where jq
// (or any pretty-printer that indents) starts the next top-level value. A
// value that is JSON but no BuildEvent is the caller's to judge.
//
// Once a value is longer than the reader's buffer (1 MiB), its first bytes
// are no longer buffered: should it turn out not to be JSON, the skip goes
// on from the fault rather than from the first line after its start.
func (r *Reader) readValue(start int64, line, index int) ([]byte, error) {
	var sc jsonScanner
	held := r.scratch[:0] // the value's bytes consumed from br (a long value)
	defer func() { r.scratch = held[:0] }()
	tooLarge := func(size int) error {
		return r.errorAt(start, index, fmt.Errorf("line %d: %w", line, &SizeTooLargeError{Size: uint64(size), Max: r.opts.MaxEventSize}), false)
	}
	scanned := 0 // bytes of p fed to sc
	for {
		p, err := r.bufferMore(scanned)
		if len(p) > scanned {
			n, res := sc.scan(p[scanned:])
			scanned += n
			switch {
			case res == scanDone:
				if size := len(held) + scanned; size > r.opts.MaxEventSize {
					return nil, tooLarge(size)
				}
				return r.take(&held, p, scanned), nil
			case res == scanError:
				return nil, r.skipBad(start, line, index, held, p, scanned, sc.err)
			case len(held)+scanned > r.opts.MaxEventSize:
				return nil, tooLarge(len(held) + scanned)
			}
			continue
		}
		switch {
		case err == bufio.ErrBufferFull:
			// The value goes on beyond the buffer: hold what was read.
			held = append(held, p...)
			r.consume(len(p), bytes.Count(p, []byte("\n")))
			scanned = 0
		case err == io.EOF:
			if sc.atEOF() { // a number alone, at the very end
				return r.take(&held, p, scanned), nil
			}
			from, prevNL := 1, false
			if len(held) > 0 {
				from, prevNL = 0, held[len(held)-1] == '\n'
			}
			if k := nextValueStart(p, from, prevNL); k >= 0 {
				// A value cut off in the middle of the file, taking in
				// the values after it as its members.
				r.consume(k, bytes.Count(p[:k], []byte("\n")))
				return nil, r.errorAt(start, index, fmt.Errorf("line %d: invalid JSON BuildEvent: %s", line, cutOff(r.off, r.line+1)), true)
			}
			return nil, r.errorAt(start, index, fmt.Errorf("line %d: truncated JSON: %w", line, io.ErrUnexpectedEOF), false)
		default:
			return nil, r.errorAt(start, index, fmt.Errorf("line %d: %w", line, r.readError(err)), false)
		}
	}
}

// take consumes the last n bytes of a value from p (its first bytes being
// held, if any) and returns the value.
func (r *Reader) take(held *[]byte, p []byte, n int) []byte {
	v := p[:n]
	if len(*held) > 0 {
		*held = append(*held, v...)
		v = *held
	}
	r.consume(n, bytes.Count(p[:n], []byte("\n")))
	return v
}

// nextValueStart returns the offset in p, from from on, of the first '{'
// that starts a line (prevNL: p follows a line break), or -1.
func nextValueStart(p []byte, from int, prevNL bool) int {
	for i := from; i < len(p); {
		j := bytes.IndexByte(p[i:], '{')
		if j < 0 {
			return -1
		}
		i += j
		if (i == 0 && prevNL) || (i > 0 && p[i-1] == '\n') {
			return i
		}
		i++
	}
	return -1
}

// cutOff says that a value was cut off before the next one, at byte off
// on line line.
func cutOff(off int64, line int) string {
	return fmt.Sprintf("cut off: not closed before the next value at byte %d (line %d)", off, line)
}

// skipBad skips a value that is not JSON (see readValue) and returns the
// resumable error for it. held are its bytes consumed already, p the
// buffered ones that follow, p[fault] the byte at fault, why what is wrong
// with it.
func (r *Reader) skipBad(start int64, line, index int, held, p []byte, fault int, why string) error {
	at := r.off + int64(fault)
	atLine := r.line + 1 + bytes.Count(p[:fault], []byte("\n"))
	from, prevNL := 1, false
	if len(held) > 0 {
		from, prevNL = 0, held[len(held)-1] == '\n'
	}
	first := true
	for {
		if k := nextValueStart(p, from, prevNL); k >= 0 {
			r.consume(k, bytes.Count(p[:k], []byte("\n")))
			if first && (k <= fault || len(bytes.TrimLeft(p[fault:k], " \t\r\n")) == 0) {
				// A value cut off before the next one: what is at fault
				// is the next value.
				return r.errorAt(start, index, fmt.Errorf("line %d: invalid JSON BuildEvent: %s", line, cutOff(r.off, r.line+1)), true)
			}
			break
		}
		first = false
		r.consume(len(p), bytes.Count(p, []byte("\n")))
		if len(p) > 0 {
			prevNL = p[len(p)-1] == '\n'
		}
		from = 0
		var err error
		if p, err = r.buffered(); len(p) == 0 {
			if err == io.EOF {
				break
			}
			return r.errorAt(start, index, fmt.Errorf("line %d: %w", line, r.readError(err)), false)
		}
	}
	return r.errorAt(start, index, fmt.Errorf("line %d: invalid JSON BuildEvent: %s at byte %d (line %d); skipped to byte %d", line, why, at, atLine, r.off), true)
}

// jsonScanner checks the syntax of one JSON value (RFC 8259) as its bytes
// come, to find where it ends without decoding it. It does not check
// UTF-8 (the decoding repairs it) and does not limit nesting (the value's
// size is limited).
type jsonScanner struct {
	state scanState
	stack []byte // the open containers: '{' or '['
	key   bool   // the string being read is an object key
	lit   string // the rest of the literal being read
	hex   int    // the hex digits of a \u escape still to come
	err   string // why the byte at fault is
}

type scanState uint8

const (
	scanValue      scanState = iota // a value is due
	scanArrayStart                  // after '[': a value or ']'
	scanObjStart                    // after '{': a key or '}'
	scanKey                         // after ',' in an object
	scanColon                       // after a key
	scanAfter                       // after a value in a container: ',' or its end
	scanString
	scanEscape
	scanUnicode
	scanLiteral
	scanMinus // number: after '-'
	scanZero  // after a leading 0
	scanInt   // in the integer part
	scanDot   // after '.'
	scanFrac  // in the fraction
	scanE     // after 'e'
	scanESign // after the exponent's sign
	scanExp   // in the exponent
)

type scanResult uint8

const (
	scanMore  scanResult = iota // the value goes on after p
	scanDone                    // the value ended
	scanError                   // p[n] is no JSON where it is
)

// jsonPlain are the bytes a JSON string holds as they are.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scan reads p, the next bytes of the value. It returns how many of them
// belong to the value and whether it ended (with p[n-1]), or p[n] is at
// fault (s.err says why), or all of p belongs to it and it goes on.
func (s *jsonScanner) scan(p []byte) (n int, res scanResult) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch s.state {
		case scanString:
			for i < len(p) && jsonPlain[p[i]] {
				i++
			}
			if i == len(p) {
				return i, scanMore
			}
			switch c = p[i]; {
			case c == '"':
				if s.key {
					s.state = scanColon
				} else if s.ended() {
					return i + 1, scanDone
				}
			case c == '\\':
				s.state = scanEscape
			default:
				return i, s.fail(c, "in a string (a control character must be escaped)")
			}
		case scanEscape:
			switch c {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.state = scanString
			case 'u':
				s.state, s.hex = scanUnicode, 4
			default:
				return i, s.fail(c, "in a string escape")
			}
		case scanUnicode:
			if !isHex(c) {
				return i, s.fail(c, "in a \\u escape")
			}
			if s.hex--; s.hex == 0 {
				s.state = scanString
			}
		case scanValue, scanArrayStart:
			switch {
			case isSpace(c):
			case c == ']' && s.state == scanArrayStart:
				if s.pop() {
					return i + 1, scanDone
				}
			case c == '{':
				s.stack, s.state = append(s.stack, '{'), scanObjStart
			case c == '[':
				s.stack, s.state = append(s.stack, '['), scanArrayStart
			case c == '"':
				s.state, s.key = scanString, false
			case c == '-':
				s.state = scanMinus
			case c == '0':
				s.state = scanZero
			case c >= '1' && c <= '9':
				s.state = scanInt
			case c == 't':
				s.state, s.lit = scanLiteral, "rue"
			case c == 'f':
				s.state, s.lit = scanLiteral, "alse"
			case c == 'n':
				s.state, s.lit = scanLiteral, "ull"
			default:
				return i, s.fail(c, "looking for the beginning of a value")
			}
		case scanObjStart, scanKey:
			switch {
			case isSpace(c):
			case c == '"':
				s.state, s.key = scanString, true
			case c == '}' && s.state == scanObjStart:
				if s.pop() {
					return i + 1, scanDone
				}
			default:
				return i, s.fail(c, "looking for an object key")
			}
		case scanColon:
			switch {
			case isSpace(c):
			case c == ':':
				s.state = scanValue
			default:
				return i, s.fail(c, "after an object key (want ':')")
			}
		case scanAfter:
			obj := s.stack[len(s.stack)-1] == '{'
			switch {
			case isSpace(c):
			case c == ',' && obj:
				s.state = scanKey
			case c == ',':
				s.state = scanValue
			case (c == '}' && obj) || (c == ']' && !obj):
				if s.pop() {
					return i + 1, scanDone
				}
			case obj:
				return i, s.fail(c, "after an object member (want ',' or '}')")
			default:
				return i, s.fail(c, "after an array element (want ',' or ']')")
			}
		case scanLiteral:
			if c != s.lit[0] {
				return i, s.fail(c, "in a literal (true, false or null)")
			}
			if s.lit = s.lit[1:]; s.lit == "" && s.ended() {
				return i + 1, scanDone
			}
		case scanMinus:
			switch {
			case c == '0':
				s.state = scanZero
			case c >= '1' && c <= '9':
				s.state = scanInt
			default:
				return i, s.fail(c, "in a number")
			}
		case scanDot, scanE, scanESign:
			switch {
			case c >= '0' && c <= '9' && s.state == scanDot:
				s.state = scanFrac
			case c >= '0' && c <= '9':
				s.state = scanExp
			case s.state == scanE && (c == '+' || c == '-'):
				s.state = scanESign
			default:
				return i, s.fail(c, "in a number")
			}
		case scanZero, scanInt, scanFrac, scanExp:
			switch {
			case c >= '0' && c <= '9' && s.state != scanZero:
			case c == '.' && (s.state == scanZero || s.state == scanInt):
				s.state = scanDot
			case (c == 'e' || c == 'E') && s.state != scanExp:
				s.state = scanE
			default:
				// The byte after the number: the number ends before it.
				if s.ended() {
					return i, scanDone
				}
				i--
			}
		}
	}
	return len(p), scanMore
}

// ended notes that a value ended; it reports whether it was the
// top-level one.
func (s *jsonScanner) ended() bool {
	if len(s.stack) == 0 {
		return true
	}
	s.state = scanAfter
	return false
}

// pop closes the innermost container; it reports whether it was the
// top-level value.
func (s *jsonScanner) pop() bool {
	s.stack = s.stack[:len(s.stack)-1]
	return s.ended()
}

// atEOF reports whether the value ends where the input does: a number
// alone.
func (s *jsonScanner) atEOF() bool {
	switch s.state {
	case scanZero, scanInt, scanFrac, scanExp:
		return len(s.stack) == 0
	}
	return false
}

func (s *jsonScanner) fail(c byte, where string) scanResult {
	if c >= 0x20 && c < 0x7f {
		s.err = fmt.Sprintf("invalid character %q %s", rune(c), where)
	} else {
		s.err = fmt.Sprintf("invalid byte 0x%02x %s", c, where)
	}
	return scanError
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
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

// decodeJSONEvent decodes one JSON value of Bazel's JSON file into msg, by
// one rule with the binary form (see DecodeBuildEvent): a field bes does
// not know is dropped and noticed, an enum name it does not know is kept as
// UnknownEnumNumber(name) (so that the event gives the verdict the binary
// file's unknown number gives) and noticed, invalid UTF-8 is decoded as
// U+FFFD and the strings holding it named as repaired. The common value,
// which protojson decodes strictly, costs one decode; the others are fixed
// up on a generic JSON tree first. strictErr, if not nil, is protojson's
// error for value already.
func decodeJSONEvent(value []byte, msg *buildeventstream.BuildEvent, strictErr error) (Damage, error) {
	err := strictErr
	if err == nil {
		if err = jsonStrict.Unmarshal(value, msg); err == nil {
			return Damage{}, nil
		}
	}
	var d Damage
	var tree any
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	if dec.Decode(&tree) != nil || dec.More() {
		return d, err // not one JSON value: protojson's error says why
	}
	badUTF8 := !utf8.Valid(value) // encoding/json decoded it with U+FFFD
	fixJSON(msg.ProtoReflect().Descriptor(), tree, "", &d, badUTF8)
	if badUTF8 && len(d.Repaired) == 0 {
		d.repaired("BuildEvent") // in a member name, or a field dropped
	}
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
func fixJSON(md protoreflect.MessageDescriptor, v any, path string, d *Damage, badUTF8 bool) {
	obj, ok := v.(map[string]any)
	if !ok || md.FullName().Parent() == "google.protobuf" {
		return
	}
	fields := md.Fields()
	// In name order, so that what is reported comes in the same order
	// every time (a Go map's order is random).
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		val := obj[name]
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
			for _, k := range slices.Sorted(maps.Keys(m)) {
				m[k] = fixJSONValue(vd, m[k], fpath, d, badUTF8)
			}
		case fd.IsList():
			l, ok := val.([]any)
			if !ok {
				continue
			}
			for i, x := range l {
				l[i] = fixJSONValue(fd, x, fpath, d, badUTF8)
			}
		default:
			obj[name] = fixJSONValue(fd, val, fpath, d, badUTF8)
		}
	}
}

// fixJSONValue fixes one value of field fd (an element, for lists and
// maps) and returns it. If the value's JSON text was not valid UTF-8
// (badUTF8), a string holding U+FFFD is named as repaired.
func fixJSONValue(fd protoreflect.FieldDescriptor, v any, path string, d *Damage, badUTF8 bool) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		fixJSON(fd.Message(), v, path, d, badUTF8)
	case protoreflect.StringKind:
		if s, ok := v.(string); ok && badUTF8 && strings.ContainsRune(s, utf8.RuneError) {
			d.repaired(path)
		}
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
