package wire

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"

	_ "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	_ "google.golang.org/protobuf/types/known/anypb"
	_ "google.golang.org/protobuf/types/known/durationpb"
	_ "google.golang.org/protobuf/types/known/timestamppb"

	_ "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// TestNumbersMatchDescriptors checks every constant of wire.go against the
// descriptor of the proto field (or enum value) its comment names: the
// generated Go of Bazel's build_event_stream.proto (bepfile/bep), of
// google/devtools/build/v1 (genproto) and of the well-known types. A
// constant without such a comment fails, so none escapes the check.
func TestNumbersMatchDescriptors(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "wire.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			pos := fset.Position(vs.Pos())
			if len(vs.Names) != 1 || len(vs.Values) != 1 {
				t.Errorf("%s: one name and one value per constant", pos)
				continue
			}
			name := vs.Names[0].Name
			lit, ok := vs.Values[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.INT {
				t.Errorf("%s: %s: the value must be a number", pos, name)
				continue
			}
			value, err := strconv.Atoi(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			if vs.Comment == nil {
				t.Errorf("%s: %s has no comment naming its proto field", pos, name)
				continue
			}
			full := strings.Fields(vs.Comment.Text())[0]
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(full))
			if err != nil {
				t.Errorf("%s: %s: %s: %v", pos, name, full, err)
				continue
			}
			var want int
			switch d := d.(type) {
			case protoreflect.FieldDescriptor:
				want = int(d.Number())
			case protoreflect.EnumValueDescriptor:
				want = int(d.Number())
			default:
				t.Errorf("%s: %s: %s is no field or enum value", pos, name, full)
				continue
			}
			if value != want {
				t.Errorf("%s = %d, but %s is %d", name, value, full, want)
			}
			checked++
		}
	}
	// The number of constants, so that a parse that finds none cannot pass.
	if checked < 100 {
		t.Errorf("%d constants checked, want every one of wire.go (over 100)", checked)
	}
}
