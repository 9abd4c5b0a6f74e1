// Package buildgridpb holds Go types and gRPC stubs for BuildGrid's
// QueryBuildEvents API (proto package buildgrid.v2), generated from
// store/proto/buildgrid/v2/query_build_events.proto. Stream ids and events
// are genproto's google.devtools.build.v1 types.
// Regenerate with `go generate ./store/buildgridpb/...`.
//
//go:generate sh ../proto/gen.sh
package buildgridpb
