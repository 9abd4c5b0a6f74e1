// Package wire is the one vocabulary of the BEP and BES wire formats that
// bes reads and writes without protobuf-go: the field numbers (and the few
// enum values) of the messages its fast paths walk with protowire, each
// named after its proto field. The comment of every constant gives the
// field's full proto name, and a test checks each number against the
// descriptors generated from the protos (bepfile/bep for Bazel's
// build_event_stream.proto, genproto for google/devtools/build/v1, the
// well-known types), so that a number copied wrong cannot hide.
//
// Names are the message's name and the field's, in Go's spelling:
// BuildEventProgress is build_event_stream.BuildEvent.progress. Three
// prefixes shorten the long ones: ID for build_event_stream.BuildEventId
// (IDTestResult is BuildEventId.test_result; the nested id messages keep
// their names, as TestResultIDRun), OBE for
// google.devtools.build.v1.OrderedBuildEvent, BES for
// google.devtools.build.v1.BuildEvent (the envelope of a Bazel event in a
// BES stream: BESBazelEvent is its bazel_event).
package wire

import "google.golang.org/protobuf/encoding/protowire"

// build_event_stream.BuildEvent: the id, children and last_message, and the
// members of the oneof payload (11 and 19 are reserved, 31 is not used).
const (
	BuildEventID          protowire.Number = 1  // build_event_stream.BuildEvent.id
	BuildEventChildren    protowire.Number = 2  // build_event_stream.BuildEvent.children
	BuildEventLastMessage protowire.Number = 20 // build_event_stream.BuildEvent.last_message

	BuildEventProgress                      protowire.Number = 3  // build_event_stream.BuildEvent.progress
	BuildEventAborted                       protowire.Number = 4  // build_event_stream.BuildEvent.aborted
	BuildEventStarted                       protowire.Number = 5  // build_event_stream.BuildEvent.started
	BuildEventExpanded                      protowire.Number = 6  // build_event_stream.BuildEvent.expanded
	BuildEventAction                        protowire.Number = 7  // build_event_stream.BuildEvent.action
	BuildEventCompleted                     protowire.Number = 8  // build_event_stream.BuildEvent.completed
	BuildEventTestSummary                   protowire.Number = 9  // build_event_stream.BuildEvent.test_summary
	BuildEventTestResult                    protowire.Number = 10 // build_event_stream.BuildEvent.test_result
	BuildEventUnstructuredCommandLine       protowire.Number = 12 // build_event_stream.BuildEvent.unstructured_command_line
	BuildEventOptionsParsed                 protowire.Number = 13 // build_event_stream.BuildEvent.options_parsed
	BuildEventFinished                      protowire.Number = 14 // build_event_stream.BuildEvent.finished
	BuildEventNamedSetOfFiles               protowire.Number = 15 // build_event_stream.BuildEvent.named_set_of_files
	BuildEventWorkspaceStatus               protowire.Number = 16 // build_event_stream.BuildEvent.workspace_status
	BuildEventConfiguration                 protowire.Number = 17 // build_event_stream.BuildEvent.configuration
	BuildEventConfigured                    protowire.Number = 18 // build_event_stream.BuildEvent.configured
	BuildEventFetch                         protowire.Number = 21 // build_event_stream.BuildEvent.fetch
	BuildEventStructuredCommandLine         protowire.Number = 22 // build_event_stream.BuildEvent.structured_command_line
	BuildEventBuildToolLogs                 protowire.Number = 23 // build_event_stream.BuildEvent.build_tool_logs
	BuildEventBuildMetrics                  protowire.Number = 24 // build_event_stream.BuildEvent.build_metrics
	BuildEventWorkspaceInfo                 protowire.Number = 25 // build_event_stream.BuildEvent.workspace_info
	BuildEventBuildMetadata                 protowire.Number = 26 // build_event_stream.BuildEvent.build_metadata
	BuildEventConvenienceSymlinksIdentified protowire.Number = 27 // build_event_stream.BuildEvent.convenience_symlinks_identified
	BuildEventTargetSummary                 protowire.Number = 28 // build_event_stream.BuildEvent.target_summary
	BuildEventExecRequest                   protowire.Number = 29 // build_event_stream.BuildEvent.exec_request
	BuildEventTestProgress                  protowire.Number = 30 // build_event_stream.BuildEvent.test_progress
	BuildEventSkyvalueUploaded              protowire.Number = 32 // build_event_stream.BuildEvent.skyvalue_uploaded
)

// build_event_stream.BuildEventId: members of the oneof id, and the fields
// of the id messages bes reads.
const (
	IDPattern                 protowire.Number = 4  // build_event_stream.BuildEventId.pattern
	IDTargetCompleted         protowire.Number = 5  // build_event_stream.BuildEventId.target_completed
	IDTestSummary             protowire.Number = 7  // build_event_stream.BuildEventId.test_summary
	IDTestResult              protowire.Number = 8  // build_event_stream.BuildEventId.test_result
	IDTargetConfigured        protowire.Number = 16 // build_event_stream.BuildEventId.target_configured
	IDCoverageActionsFinished protowire.Number = 27 // build_event_stream.BuildEventId.coverage_actions_finished
	IDNamedSet                protowire.Number = 13 // build_event_stream.BuildEventId.named_set

	PatternExpandedIDPattern protowire.Number = 1 // build_event_stream.BuildEventId.PatternExpandedId.pattern

	TargetConfiguredIDLabel  protowire.Number = 1 // build_event_stream.BuildEventId.TargetConfiguredId.label
	TargetConfiguredIDAspect protowire.Number = 2 // build_event_stream.BuildEventId.TargetConfiguredId.aspect

	TargetCompletedIDLabel         protowire.Number = 1 // build_event_stream.BuildEventId.TargetCompletedId.label
	TargetCompletedIDAspect        protowire.Number = 2 // build_event_stream.BuildEventId.TargetCompletedId.aspect
	TargetCompletedIDConfiguration protowire.Number = 3 // build_event_stream.BuildEventId.TargetCompletedId.configuration

	TestResultIDLabel         protowire.Number = 1 // build_event_stream.BuildEventId.TestResultId.label
	TestResultIDRun           protowire.Number = 2 // build_event_stream.BuildEventId.TestResultId.run
	TestResultIDShard         protowire.Number = 3 // build_event_stream.BuildEventId.TestResultId.shard
	TestResultIDAttempt       protowire.Number = 4 // build_event_stream.BuildEventId.TestResultId.attempt
	TestResultIDConfiguration protowire.Number = 5 // build_event_stream.BuildEventId.TestResultId.configuration

	TestSummaryIDLabel         protowire.Number = 1 // build_event_stream.BuildEventId.TestSummaryId.label
	TestSummaryIDConfiguration protowire.Number = 2 // build_event_stream.BuildEventId.TestSummaryId.configuration

	ConfigurationIDID protowire.Number = 1 // build_event_stream.BuildEventId.ConfigurationId.id

	NamedSetOfFilesIDID protowire.Number = 1 // build_event_stream.BuildEventId.NamedSetOfFilesId.id
)

// The payloads bes reads on the wire.
const (
	ProgressStdout protowire.Number = 1 // build_event_stream.Progress.stdout
	ProgressStderr protowire.Number = 2 // build_event_stream.Progress.stderr

	BuildStartedUUID            protowire.Number = 1 // build_event_stream.BuildStarted.uuid
	BuildStartedStartTimeMillis protowire.Number = 2 // build_event_stream.BuildStarted.start_time_millis
	BuildStartedCommand         protowire.Number = 5 // build_event_stream.BuildStarted.command
	BuildStartedStartTime       protowire.Number = 9 // build_event_stream.BuildStarted.start_time

	BuildFinishedFinishTimeMillis protowire.Number = 2 // build_event_stream.BuildFinished.finish_time_millis
	BuildFinishedExitCode         protowire.Number = 3 // build_event_stream.BuildFinished.exit_code
	BuildFinishedFinishTime       protowire.Number = 5 // build_event_stream.BuildFinished.finish_time
	ExitCodeName                  protowire.Number = 1 // build_event_stream.BuildFinished.ExitCode.name
	ExitCodeCode                  protowire.Number = 2 // build_event_stream.BuildFinished.ExitCode.code

	TargetConfiguredTargetKind protowire.Number = 1 // build_event_stream.TargetConfigured.target_kind
	TargetConfiguredTestSize   protowire.Number = 2 // build_event_stream.TargetConfigured.test_size

	ActionExecutedSuccess protowire.Number = 1 // build_event_stream.ActionExecuted.success
	TargetCompleteSuccess protowire.Number = 1 // build_event_stream.TargetComplete.success

	TargetCompleteOutputGroup     protowire.Number = 2 // build_event_stream.TargetComplete.output_group
	TargetCompleteImportantOutput protowire.Number = 4 // build_event_stream.TargetComplete.important_output
	TargetCompleteDirectoryOutput protowire.Number = 8 // build_event_stream.TargetComplete.directory_output
	OutputGroupName               protowire.Number = 1 // build_event_stream.OutputGroup.name
	OutputGroupFileSets           protowire.Number = 3 // build_event_stream.OutputGroup.file_sets
	OutputGroupIncomplete         protowire.Number = 4 // build_event_stream.OutputGroup.incomplete
	OutputGroupInlineFiles        protowire.Number = 5 // build_event_stream.OutputGroup.inline_files

	// ActionExecutedStartTime is set by Bazel 5 and later.
	ActionExecutedStartTime protowire.Number = 12 // build_event_stream.ActionExecuted.start_time

	// The members of File's oneof file are uri, contents and
	// symlink_target_path.
	FileName              protowire.Number = 1 // build_event_stream.File.name
	FileURI               protowire.Number = 2 // build_event_stream.File.uri
	FileContents          protowire.Number = 3 // build_event_stream.File.contents
	FileSymlinkTargetPath protowire.Number = 7 // build_event_stream.File.symlink_target_path
	FilePathPrefix        protowire.Number = 4 // build_event_stream.File.path_prefix
	FileDigest            protowire.Number = 5 // build_event_stream.File.digest
	FileLength            protowire.Number = 6 // build_event_stream.File.length

	NamedSetOfFilesFiles    protowire.Number = 1 // build_event_stream.NamedSetOfFiles.files
	NamedSetOfFilesFileSets protowire.Number = 2 // build_event_stream.NamedSetOfFiles.file_sets

	TestResultTestActionOutput            protowire.Number = 2  // build_event_stream.TestResult.test_action_output
	TestResultTestAttemptDurationMillis   protowire.Number = 3  // build_event_stream.TestResult.test_attempt_duration_millis
	TestResultCachedLocally               protowire.Number = 4  // build_event_stream.TestResult.cached_locally
	TestResultStatus                      protowire.Number = 5  // build_event_stream.TestResult.status
	TestResultTestAttemptStartMillisEpoch protowire.Number = 6  // build_event_stream.TestResult.test_attempt_start_millis_epoch
	TestResultExecutionInfo               protowire.Number = 8  // build_event_stream.TestResult.execution_info
	TestResultStatusDetails               protowire.Number = 9  // build_event_stream.TestResult.status_details
	TestResultTestAttemptStart            protowire.Number = 10 // build_event_stream.TestResult.test_attempt_start
	TestResultTestAttemptDuration         protowire.Number = 11 // build_event_stream.TestResult.test_attempt_duration

	ExecutionInfoStrategy       protowire.Number = 2 // build_event_stream.TestResult.ExecutionInfo.strategy
	ExecutionInfoHostname       protowire.Number = 3 // build_event_stream.TestResult.ExecutionInfo.hostname
	ExecutionInfoCachedRemotely protowire.Number = 6 // build_event_stream.TestResult.ExecutionInfo.cached_remotely

	TestSummaryTotalRunCount          protowire.Number = 1  // build_event_stream.TestSummary.total_run_count
	TestSummaryPassed                 protowire.Number = 3  // build_event_stream.TestSummary.passed
	TestSummaryFailed                 protowire.Number = 4  // build_event_stream.TestSummary.failed
	TestSummaryOverallStatus          protowire.Number = 5  // build_event_stream.TestSummary.overall_status
	TestSummaryTotalNumCached         protowire.Number = 6  // build_event_stream.TestSummary.total_num_cached
	TestSummaryFirstStartTimeMillis   protowire.Number = 7  // build_event_stream.TestSummary.first_start_time_millis
	TestSummaryTotalRunDurationMillis protowire.Number = 9  // build_event_stream.TestSummary.total_run_duration_millis
	TestSummaryRunCount               protowire.Number = 10 // build_event_stream.TestSummary.run_count
	TestSummaryShardCount             protowire.Number = 11 // build_event_stream.TestSummary.shard_count
	TestSummaryTotalRunDuration       protowire.Number = 12 // build_event_stream.TestSummary.total_run_duration
	TestSummaryFirstStartTime         protowire.Number = 13 // build_event_stream.TestSummary.first_start_time
	TestSummaryAttemptCount           protowire.Number = 15 // build_event_stream.TestSummary.attempt_count
)

// The BES envelope: google.devtools.build.v1's OrderedBuildEvent, its
// BuildEvent and StreamId, from publish_build_event.proto and
// build_events.proto.
const (
	OBEStreamID       protowire.Number = 1 // google.devtools.build.v1.OrderedBuildEvent.stream_id
	OBESequenceNumber protowire.Number = 2 // google.devtools.build.v1.OrderedBuildEvent.sequence_number
	OBEEvent          protowire.Number = 3 // google.devtools.build.v1.OrderedBuildEvent.event

	BESEventTime                 protowire.Number = 1  // google.devtools.build.v1.BuildEvent.event_time
	BESInvocationAttemptStarted  protowire.Number = 51 // google.devtools.build.v1.BuildEvent.invocation_attempt_started
	BESInvocationAttemptFinished protowire.Number = 52 // google.devtools.build.v1.BuildEvent.invocation_attempt_finished
	BESBuildEnqueued             protowire.Number = 53 // google.devtools.build.v1.BuildEvent.build_enqueued
	BESBuildFinished             protowire.Number = 55 // google.devtools.build.v1.BuildEvent.build_finished
	BESComponentStreamFinished   protowire.Number = 59 // google.devtools.build.v1.BuildEvent.component_stream_finished
	BESBazelEvent                protowire.Number = 60 // google.devtools.build.v1.BuildEvent.bazel_event

	BESInvocationAttemptFinishedInvocationStatus protowire.Number = 3 // google.devtools.build.v1.BuildEvent.InvocationAttemptFinished.invocation_status
	BESBuildFinishedStatus                       protowire.Number = 1 // google.devtools.build.v1.BuildEvent.BuildFinished.status
	BESComponentStreamFinishedType               protowire.Number = 1 // google.devtools.build.v1.BuildEvent.BuildComponentStreamFinished.type
	// BESFinishTypeFinished is the value of
	// BuildComponentStreamFinished.type that ends a stream normally.
	BESFinishTypeFinished = 1 // google.devtools.build.v1.BuildEvent.BuildComponentStreamFinished.FINISHED

	BuildStatusResult protowire.Number = 1 // google.devtools.build.v1.BuildStatus.result

	StreamIDBuildID      protowire.Number = 1 // google.devtools.build.v1.StreamId.build_id
	StreamIDComponent    protowire.Number = 3 // google.devtools.build.v1.StreamId.component
	StreamIDInvocationID protowire.Number = 6 // google.devtools.build.v1.StreamId.invocation_id
)

// The two requests of google.devtools.build.v1.PublishBuildEvent, as a
// recording BES proxy keeps them.
const (
	ToolRequestOrderedBuildEvent                         protowire.Number = 4 // google.devtools.build.v1.PublishBuildToolEventStreamRequest.ordered_build_event
	ToolRequestNotificationKeywords                      protowire.Number = 5 // google.devtools.build.v1.PublishBuildToolEventStreamRequest.notification_keywords
	ToolRequestProjectID                                 protowire.Number = 6 // google.devtools.build.v1.PublishBuildToolEventStreamRequest.project_id
	ToolRequestCheckPrecedingLifecycleEventsPresent      protowire.Number = 7 // google.devtools.build.v1.PublishBuildToolEventStreamRequest.check_preceding_lifecycle_events_present
	LifecycleRequestServiceLevel                         protowire.Number = 1 // google.devtools.build.v1.PublishLifecycleEventRequest.service_level
	LifecycleRequestBuildEvent                           protowire.Number = 2 // google.devtools.build.v1.PublishLifecycleEventRequest.build_event
	LifecycleRequestStreamTimeout                        protowire.Number = 3 // google.devtools.build.v1.PublishLifecycleEventRequest.stream_timeout
	LifecycleRequestNotificationKeywords                 protowire.Number = 4 // google.devtools.build.v1.PublishLifecycleEventRequest.notification_keywords
	LifecycleRequestProjectID                            protowire.Number = 6 // google.devtools.build.v1.PublishLifecycleEventRequest.project_id
	LifecycleRequestCheckPrecedingLifecycleEventsPresent protowire.Number = 7 // google.devtools.build.v1.PublishLifecycleEventRequest.check_preceding_lifecycle_events_present
)

// The well-known types inside the envelope.
const (
	AnyTypeURL protowire.Number = 1 // google.protobuf.Any.type_url
	AnyValue   protowire.Number = 2 // google.protobuf.Any.value

	TimestampSeconds protowire.Number = 1 // google.protobuf.Timestamp.seconds
	TimestampNanos   protowire.Number = 2 // google.protobuf.Timestamp.nanos
	DurationSeconds  protowire.Number = 1 // google.protobuf.Duration.seconds
	DurationNanos    protowire.Number = 2 // google.protobuf.Duration.nanos
)
