// Package failuredetails holds Go types for Bazel's failure details
// (proto package failure_details), attached to failed actions, targets and
// builds in the Build Event Protocol.
package failuredetails
