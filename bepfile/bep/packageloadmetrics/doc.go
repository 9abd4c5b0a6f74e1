// Package packageloadmetrics holds Go types for Bazel's per-package load
// metrics (proto package devtools.build.lib.packages.metrics), used by the
// build_metrics build event.
package packageloadmetrics
