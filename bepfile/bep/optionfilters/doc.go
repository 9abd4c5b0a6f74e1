// Package optionfilters holds Go types for Bazel's option tags (proto
// package options), used by the structured command line.
package optionfilters
