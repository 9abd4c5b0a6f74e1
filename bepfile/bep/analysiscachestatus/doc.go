// Package analysiscachestatus holds Go types for Bazel's remote analysis
// cache lookup status (proto package devtools_blaze_proto), used by the
// build_metrics build event.
package analysiscachestatus
