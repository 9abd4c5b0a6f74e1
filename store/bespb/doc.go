// Package bespb holds Go types and gRPC stubs for bes's own query API
// (proto package bes.v1: StreamQuery/StreamEventStreams, an answer of any
// size as a stream of messages under 4 MiB each), generated from
// store/proto/bes/v1/query.proto. Stream ids and events are genproto's
// google.devtools.build.v1 types.
// Regenerate with `go generate ./store/bespb/...`.
//
//go:generate sh ../proto/gen.sh
package bespb
