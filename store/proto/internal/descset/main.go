// Command descset writes a FileDescriptorSet holding the .proto files that
// query_build_events.proto imports from outside this repository
// (google/devtools/build/v1 and google/api/annotations), with everything they
// import in turn, taken from the Go registry of the genproto packages this
// module already depends on.
//
// genproto ships only Go code, not .proto sources; giving protoc this set
// with --descriptor_set_in makes the imports resolve to exactly the
// descriptors our Go dependencies register. Used by ../../gen.sh.
package main

import (
	"fmt"
	"os"

	_ "google.golang.org/genproto/googleapis/api/annotations"
	_ "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// roots are the files query_build_events.proto imports.
var roots = []string{
	"google/api/annotations.proto",
	"google/devtools/build/v1/build_events.proto",
	"google/devtools/build/v1/publish_build_event.proto",
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: descset OUTPUT.pb")
		os.Exit(2)
	}
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, path := range roots {
		fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "descset: %s: %v\n", path, err)
			os.Exit(1)
		}
		add(fd)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	if err != nil {
		fmt.Fprintln(os.Stderr, "descset:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Args[1], b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "descset:", err)
		os.Exit(1)
	}
}
