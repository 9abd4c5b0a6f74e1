#!/bin/sh
# Regenerates store/buildgridpb from store/proto/buildgrid/v2/
# query_build_events.proto (our own copy of BuildGrid's query API), and
# store/bespb from store/proto/bes/v1/query.proto (bes's own streaming
# query).
#
# Run from anywhere; usually through `go generate ./store/buildgridpb/...`
# or `go generate ./store/bespb/...` (the //go:generate lines are in their
# doc.go).
#
# The imported google/devtools/build/v1 and google/api files are not
# sources here: internal/descset writes them, from the genproto Go packages
# in go.mod, as a descriptor set for protoc's --descriptor_set_in, so the
# generated code refers to genproto's Go types. Needs protoc 3.21.12
# (Debian's protobuf-compiler); protoc-gen-go and protoc-gen-go-grpc are the
# versions pinned by go.mod's tool directive.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

want="libprotoc 3.21.12"
have=$(protoc --version)
if [ "$have" != "$want" ]; then
	echo "gen.sh: need $want (the committed files were made with it), have $have" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$tmp/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc
go run ./store/proto/internal/descset "$tmp/deps.pb"

rm -f store/buildgridpb/*.pb.go store/bespb/*.pb.go

protoc -I store/proto --descriptor_set_in="$tmp/deps.pb" \
	--plugin=protoc-gen-go="$tmp/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$tmp/protoc-gen-go-grpc" \
	--go_out=. --go_opt=module=github.com/bes-cli/bes \
	--go-grpc_out=. --go-grpc_opt=module=github.com/bes-cli/bes \
	store/proto/buildgrid/v2/query_build_events.proto \
	store/proto/bes/v1/query.proto
