// Package bepfile reads Bazel Build Event Protocol (BEP) data from files and
// streams, in every form it is commonly stored in, and yields it as
// OrderedBuildEvents of one or more streams.
//
// A [Reader] understands five forms (see [Format]):
//
//   - [FormatOBE]: varint-delimited google.devtools.build.v1.OrderedBuildEvent
//     messages, as a Build Event Service receives them;
//   - [FormatBEP]: Bazel's --build_event_binary_file, varint-delimited
//     build_event_stream.BuildEvent messages;
//   - [FormatPublish]: varint-delimited PublishBuildToolEventStreamRequest
//     and PublishLifecycleEventRequest messages, as a recording BES proxy
//     writes them (a file may mix both);
//   - [FormatNDJSON]: Bazel's --build_event_json_file, one JSON BuildEvent
//     per line;
//
// each optionally compressed with gzip or zstd, which is always detected
// from the magic number. With [FormatAuto] the form is detected from a
// bounded prefix of the (decompressed) input.
//
// Bazel's own files (BEP, NDJSON) carry no stream id and no sequence
// numbers; the reader wraps their events exactly as Bazel's BES client does
// (see [Options.BuildID]), so a binary file and the BES stream of the same
// run give the same stream key and byte-identical payloads.
//
// The reader streams: it holds one buffered reader of bounded size, reads
// one frame at a time, never allocates a frame larger than
// [Options.MaxEventSize], and does not decode Bazel payloads beyond a
// protowire walk of their top-level fields (except for NDJSON, which must be
// parsed). Each returned [Event] owns its bytes and may be retained (unless
// [Options.Reuse] asks for events that alias the reader's buffer).
//
// [Reader.Next] returns io.EOF only at a clean end of input. Every other
// problem is an [*Error] naming the input, the byte offset of the start of
// the offending frame (or line), the event index and the cause; a cut-off
// input wraps [io.ErrUnexpectedEOF]. All events complete before the problem
// have already been returned.
package bepfile
