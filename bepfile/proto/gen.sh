#!/bin/sh
# Regenerates the Go packages under bepfile/bep/ from the .proto files in
# bepfile/proto/bes/bep/ (our own copy of Bazel's Build Event Protocol
# schema, see README.md).
#
# Run from anywhere; usually through `go generate ./bepfile/bep/...` (the
# //go:generate line is in bepfile/bep/buildeventstream/doc.go).
#
# Needs protoc 3.21.12 (Debian's protobuf-compiler) with the well-known
# types in /usr/include (or $PROTOC_INCLUDE). protoc-gen-go is the version
# pinned by go.mod's tool directive.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

want="libprotoc 3.21.12"
have=$(protoc --version)
if [ "$have" != "$want" ]; then
	echo "gen.sh: need $want (the committed files were made with it), have $have" >&2
	exit 1
fi
include=${PROTOC_INCLUDE:-/usr/include}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go

for d in actioncache analysiscachestatus buildeventstream commandline \
	failuredetails invocationpolicy optionfilters packageloadmetrics \
	strategypolicy; do
	rm -f bepfile/bep/$d/*.pb.go
done

protoc -I bepfile/proto -I "$include" \
	--plugin=protoc-gen-go="$tmp/protoc-gen-go" \
	--go_out=. --go_opt=module=github.com/bes-cli/bes \
	bepfile/proto/bes/bep/*.proto
