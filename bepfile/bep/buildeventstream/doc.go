// Package buildeventstream holds Go types for Bazel's build_event_stream
// protocol (the Build Event Protocol, proto package build_event_stream),
// generated from bepfile/proto/bes/bep/build_event_stream.proto. The
// top-level message is BuildEvent.
//
// The schema is our own copy of Bazel's: it follows current Bazel and
// keeps what Bazel 4.x writes, so both decode without unknown fields.
// Regenerate with `go generate ./bepfile/bep/...`.
//
//go:generate sh ../../proto/gen.sh
package buildeventstream
