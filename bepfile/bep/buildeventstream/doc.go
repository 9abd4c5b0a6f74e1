// Package buildeventstream holds Go types for Bazel's build_event_stream
// protocol (the Build Event Protocol, proto package build_event_stream),
// generated from bepfile/proto/bes/bep/build_event_stream.proto. The
// top-level message is BuildEvent.
//
// The schema is our own copy of Bazel's, audited on 2026-11-29 against
// Bazel's build_event_stream.proto and the files it imports from 4.0 to
// master (the 4.x, 5.x, 7.x, 8.x and master-era copies listed in
// bepfile/proto/README.md, and real files of Bazel 3.4.1 to 9.1.0): it
// declares every field and enum value any of them writes, including those
// later releases removed, such as BuildEventId.coverage_actions_finished
// (27, Bazel 7.0-7.1), so every release's binary and JSON files decode
// without unknown fields or unnamed enum values. To audit again, compare
// each release's files with ours as that README describes; regenerate with
// `go generate ./bepfile/bep/...`.
//
//go:generate sh ../../proto/gen.sh
package buildeventstream
