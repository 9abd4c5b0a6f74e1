// Package strategypolicy holds Go types for Bazel's execution strategy
// policy (proto package blaze.strategy_policy), part of an invocation
// policy.
package strategypolicy
