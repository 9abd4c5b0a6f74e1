// Package commandline holds Go types for Bazel's structured command line
// (proto package command_line), used by the structured_command_line build
// event.
package commandline
