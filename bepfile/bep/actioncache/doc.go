// Package actioncache holds Go types for Bazel's action cache statistics
// (proto package blaze, action_cache.proto), used by the build_metrics
// build event.
package actioncache
