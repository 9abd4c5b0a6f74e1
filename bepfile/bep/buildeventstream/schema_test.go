package buildeventstream_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// The schema test checks our .proto copy against files written by a real
// Bazel (4.2.3, see /work/shared/bep-corpus/MANIFEST.md): every binary event
// decodes without unknown fields or unnamed enum values, and protojson
// prints each event as the same JSON value as Bazel's own JSON file (as a
// multiset: Bazel does not write the two files in quite the same order).

var corpus = []string{
	"build_ok",
	"build_keep_going_fail",
	"test_mixed",
	"test_cached",
	"query",
}

func TestSchemaMatchesBazel(t *testing.T) {
	for _, name := range corpus {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("..", "..", "..", "testdata")
			events := readBEP(t, filepath.Join(dir, name+".bep"))
			want := readJSONLines(t, filepath.Join(dir, name+".json"))
			if len(events) != len(want) {
				t.Fatalf("%d binary events, %d JSON lines", len(events), len(want))
			}
			used := make([]bool, len(want))
			for i, ev := range events {
				for _, p := range unknownFields(ev.ProtoReflect(), "BuildEvent") {
					t.Errorf("event %d: unknown field at %s", i, p)
				}
				for _, p := range unnamedEnums(ev.ProtoReflect(), "BuildEvent") {
					t.Errorf("event %d: enum value without a name (prints as a number) at %s", i, p)
				}
				got := marshalJSON(t, ev)
				match := -1
				for j, w := range want {
					if !used[j] && reflect.DeepEqual(got, w) {
						match = j
						break
					}
				}
				if match < 0 {
					t.Errorf("event %d: protojson output matches no line of %s.json:\n%s", i, name, short(got))
					continue
				}
				used[match] = true
			}
			for j, u := range used {
				if !u {
					t.Errorf("%s.json line %d matched no binary event:\n%s", name, j+1, short(want[j]))
				}
			}
		})
	}
}

// short renders a JSON value for an error message, cut to a readable size.
func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 2000 {
		return string(b[:2000]) + "..."
	}
	return string(b)
}

func readBEP(t *testing.T, path string) []*buildeventstream.BuildEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var events []*buildeventstream.BuildEvent
	for {
		ev := &buildeventstream.BuildEvent{}
		err := protodelim.UnmarshalFrom(r, ev)
		if errors.Is(err, io.EOF) {
			return events
		}
		if err != nil {
			t.Fatalf("%s: message %d: %v", path, len(events), err)
		}
		events = append(events, ev)
	}
}

func readJSONLines(t *testing.T, path string) []any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []any
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var v any
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("%s line %d: %v", path, i+1, err)
		}
		lines = append(lines, v)
	}
	return lines
}

func marshalJSON(t *testing.T, ev *buildeventstream.BuildEvent) any {
	t.Helper()
	b, err := protojson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// walk calls visit for m and every message below it (through singular,
// repeated and map fields, and through Any values whose type is linked in),
// with a path such as BuildEvent.completed.output_group[0].
func walk(m protoreflect.Message, path string, visit func(protoreflect.Message, string)) {
	visit(m, path)
	if a, ok := m.Interface().(*anypb.Any); ok {
		if inner, err := a.UnmarshalNew(); err == nil {
			walk(inner.ProtoReflect(), path+"("+a.GetTypeUrl()+")", visit)
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), visit)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				walk(mv.Message(), fmt.Sprintf("%s[%v]", p, k.Interface()), visit)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walk(v.Message(), p, visit)
		}
		return true
	})
}

// unknownFields returns the paths of all messages under m that hold fields
// the schema does not know, with the unknown field numbers.
func unknownFields(m protoreflect.Message, path string) []string {
	var out []string
	walk(m, path, func(m protoreflect.Message, p string) {
		if raw := m.GetUnknown(); len(raw) > 0 {
			out = append(out, fmt.Sprintf("%s (%s, %d bytes)", p, m.Descriptor().FullName(), len(raw)))
		}
	})
	return out
}

// unnamedEnums returns the paths of enum values under m that have no name
// in the schema; protojson would print them as bare numbers.
func unnamedEnums(m protoreflect.Message, path string) []string {
	var out []string
	check := func(ed protoreflect.EnumDescriptor, n protoreflect.EnumNumber, p string) {
		if ed.Values().ByNumber(n) == nil {
			out = append(out, fmt.Sprintf("%s = %d (%s)", p, n, ed.FullName()))
		}
	}
	walk(m, path, func(m protoreflect.Message, p string) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			fp := p + "." + string(fd.Name())
			switch {
			case fd.IsList() && fd.Enum() != nil:
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					check(fd.Enum(), l.Get(i).Enum(), fmt.Sprintf("%s[%d]", fp, i))
				}
			case fd.IsMap() && fd.MapValue().Enum() != nil:
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					check(fd.MapValue().Enum(), mv.Enum(), fmt.Sprintf("%s[%v]", fp, k.Interface()))
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Enum() != nil:
				check(fd.Enum(), v.Enum(), fp)
			}
			return true
		})
	})
	return out
}

// TestNoBareEnumNumbersInJSON is a cross-check of unnamedEnums on the text
// itself: in our JSON output no value of an enum-typed field is a number.
func TestNoBareEnumNumbersInJSON(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "testdata")
	for _, name := range corpus {
		for i, ev := range readBEP(t, filepath.Join(dir, name+".bep")) {
			var bad []string
			walk(ev.ProtoReflect(), "BuildEvent", func(m protoreflect.Message, p string) {
				b, err := protojson.Marshal(m.Interface())
				if err != nil {
					t.Fatal(err)
				}
				var obj map[string]any
				if err := json.Unmarshal(b, &obj); err != nil {
					return // well-known types with a non-object JSON form
				}
				fields := m.Descriptor().Fields()
				for j := 0; j < fields.Len(); j++ {
					fd := fields.Get(j)
					if fd.Enum() == nil && !(fd.IsMap() && fd.MapValue().Enum() != nil) {
						continue
					}
					if hasNumber(obj[fd.JSONName()]) {
						bad = append(bad, p+"."+string(fd.Name()))
					}
				}
			})
			if len(bad) > 0 {
				t.Errorf("%s event %d: enum printed as a number at %s", name, i, strings.Join(bad, ", "))
			}
		}
	}
}

func hasNumber(v any) bool {
	switch v := v.(type) {
	case float64:
		return true
	case []any:
		for _, e := range v {
			if hasNumber(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range v {
			if hasNumber(e) {
				return true
			}
		}
	}
	return false
}
