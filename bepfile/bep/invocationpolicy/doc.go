// Package invocationpolicy holds Go types for Bazel's invocation policy
// (proto package blaze.invocation_policy), used by the options_parsed build
// event.
package invocationpolicy
