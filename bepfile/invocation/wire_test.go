package invocation

import (
	"testing"

	"github.com/bes-cli/bes/bepfile/wire"
)

// TestSharedFieldNumbers: labelID reads the label and aspect of three id
// messages with one number each, and success the flag of two payloads;
// the messages must agree (bepfile/wire checks each against the protos).
func TestSharedFieldNumbers(t *testing.T) {
	for _, c := range []struct {
		what      string
		got, want int32
	}{
		{"TargetConfiguredId.label", int32(wire.TargetConfiguredIDLabel), int32(labelField)},
		{"TargetCompletedId.label", int32(wire.TargetCompletedIDLabel), int32(labelField)},
		{"TestSummaryId.label", int32(wire.TestSummaryIDLabel), int32(labelField)},
		{"TargetConfiguredId.aspect", int32(wire.TargetConfiguredIDAspect), int32(aspectField)},
		{"TargetCompletedId.aspect", int32(wire.TargetCompletedIDAspect), int32(aspectField)},
		{"ActionExecuted.success", int32(wire.ActionExecutedSuccess), int32(successField)},
		{"TargetComplete.success", int32(wire.TargetCompleteSuccess), int32(successField)},
	} {
		if c.got != c.want {
			t.Errorf("%s is field %d, but the fast path reads field %d", c.what, c.got, c.want)
		}
	}
}
