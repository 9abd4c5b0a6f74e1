package bepgen

//lint:file-ignore SA1019 The generator writes the fields Bazel 4.2 writes, which the current schema deprecates (the *_millis times, ActionExecuted.label and configuration, important_output, test_timeout_seconds, overall_success, anomaly_report).

import (
	"fmt"
	"strings"

	"github.com/bes-cli/bes/bepfile/bep/commandline"
	"github.com/bes-cli/bes/bepfile/bep/failuredetails"
	"github.com/bes-cli/bes/bepfile/bep/optionfilters"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// Event ids.

func idStarted() *bes.BuildEventId {
	return &bes.BuildEventId{Id: &bes.BuildEventId_Started{Started: &bes.BuildEventId_BuildStartedId{}}}
}

func idProgress(n int32) *bes.BuildEventId {
	return &bes.BuildEventId{Id: &bes.BuildEventId_Progress{Progress: &bes.BuildEventId_ProgressId{OpaqueCount: n}}}
}

func idStructured(label string) *bes.BuildEventId {
	return &bes.BuildEventId{Id: &bes.BuildEventId_StructuredCommandLine{StructuredCommandLine: &bes.BuildEventId_StructuredCommandLineId{CommandLineLabel: label}}}
}

func idConfigured(label string) *bes.BuildEventId {
	return &bes.BuildEventId{Id: &bes.BuildEventId_TargetConfigured{TargetConfigured: &bes.BuildEventId_TargetConfiguredId{Label: label}}}
}

func (g *gen) configID() *bes.BuildEventId_ConfigurationId {
	return &bes.BuildEventId_ConfigurationId{Id: g.config}
}

func (g *gen) idCompleted(label string) *bes.BuildEventId {
	return &bes.BuildEventId{Id: &bes.BuildEventId_TargetCompleted{TargetCompleted: &bes.BuildEventId_TargetCompletedId{Label: label, Configuration: g.configID()}}}
}

func (g *gen) idAction(label, out string) *bes.BuildEventId {
	return &bes.BuildEventId{Id: &bes.BuildEventId_ActionCompleted{ActionCompleted: &bes.BuildEventId_ActionCompletedId{PrimaryOutput: out, Label: label, Configuration: g.configID()}}}
}

func (g *gen) idTestResult(label string, shard, attempt int) *bes.BuildEventId {
	return &bes.BuildEventId{Id: &bes.BuildEventId_TestResult{TestResult: &bes.BuildEventId_TestResultId{
		Label: label, Configuration: g.configID(), Run: 1, Shard: int32(shard), Attempt: int32(attempt)}}}
}

func (g *gen) idTestSummary(label string) *bes.BuildEventId {
	return &bes.BuildEventId{Id: &bes.BuildEventId_TestSummary{TestSummary: &bes.BuildEventId_TestSummaryId{Label: label, Configuration: g.configID()}}}
}

func idNamedSet(n int) *bes.BuildEventId {
	return &bes.BuildEventId{Id: &bes.BuildEventId_NamedSet{NamedSet: &bes.BuildEventId_NamedSetOfFilesId{Id: fmt.Sprint(n)}}}
}

// progress returns the next progress event, announcing the one after it
// and the given events.
func (g *gen) progress(stdout, stderr string, also ...*bes.BuildEventId) *bes.BuildEvent {
	n := g.opaque
	g.opaque++
	return &bes.BuildEvent{
		Id:       idProgress(n),
		Children: append([]*bes.BuildEventId{idProgress(n + 1)}, also...),
		Payload:  &bes.BuildEvent_Progress{Progress: &bes.Progress{Stdout: stdout, Stderr: stderr}},
	}
}

var options = []struct {
	name, value string
	effects     []optionfilters.OptionEffectTag
}{
	{"max_idle_secs", "10800", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_EAGERNESS_TO_EXIT, optionfilters.OptionEffectTag_LOSES_INCREMENTAL_STATE}},
	{"shutdown_on_low_sys_mem", "0", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_EAGERNESS_TO_EXIT}},
	{"connect_timeout_secs", "30", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_BAZEL_INTERNAL_CONFIGURATION}},
	{"output_user_root", "/var/cache/bazel-out", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_AFFECTS_OUTPUTS, optionfilters.OptionEffectTag_LOSES_INCREMENTAL_STATE}},
	{"install_base", "/usr/share/bazel", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_CHANGES_INPUTS}},
	{"rc_source", "client", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_CHANGES_INPUTS}},
	{"default_override", "0:common=--isatty=0", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_CHANGES_INPUTS}},
	{"default_override", "0:common=--terminal_columns=80", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_CHANGES_INPUTS}},
	{"client_env", "USER=ci", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_CHANGES_INPUTS}},
	{"client_env", "HOME=/root", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_CHANGES_INPUTS}},
	{"client_env", "PATH=/usr/local/bin:/usr/bin:/bin", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_CHANGES_INPUTS}},
	{"client_env", "PWD=/src/ws_gen", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_CHANGES_INPUTS}},
	{"client_cwd", "/src/ws_gen", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_CHANGES_INPUTS}},
	{"flaky_test_attempts", "2", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_EXECUTION}},
	{"keep_going", "1", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_EAGERNESS_TO_EXIT}},
	{"build_event_binary_file", "/out/gen.bep", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_AFFECTS_OUTPUTS}},
	{"build_event_json_file", "/out/gen.json", []optionfilters.OptionEffectTag{optionfilters.OptionEffectTag_AFFECTS_OUTPUTS}},
}

func commandLine(label string) *commandline.CommandLine {
	cl := &commandline.CommandLine{CommandLineLabel: label}
	if label == "tool" {
		return cl
	}
	section := func(name string, chunks ...string) *commandline.CommandLineSection {
		return &commandline.CommandLineSection{SectionLabel: name, SectionType: &commandline.CommandLineSection_ChunkList{ChunkList: &commandline.ChunkList{Chunk: chunks}}}
	}
	var opts []*commandline.Option
	for _, o := range options {
		opts = append(opts, &commandline.Option{
			CombinedForm: "--" + o.name + "=" + o.value, OptionName: o.name, OptionValue: o.value,
			EffectTags: o.effects, MetadataTags: []optionfilters.OptionMetadataTag{optionfilters.OptionMetadataTag_HIDDEN},
		})
	}
	cl.Sections = []*commandline.CommandLineSection{
		section("executable", "bazel"),
		{SectionLabel: "command options", SectionType: &commandline.CommandLineSection_OptionList{OptionList: &commandline.OptionList{Option: opts}}},
		section("command", "test"),
		section("residual", "//..."),
	}
	return cl
}

func (g *gen) preamble() []*bes.BuildEvent {
	var args []string
	for _, o := range options {
		args = append(args, "--"+o.name+"="+o.value)
	}
	started := &bes.BuildEvent{
		Id: idStarted(),
		Children: []*bes.BuildEventId{
			idProgress(0),
			{Id: &bes.BuildEventId_UnstructuredCommandLine{UnstructuredCommandLine: &bes.BuildEventId_UnstructuredCommandLineId{}}},
			idStructured("original"), idStructured("canonical"), idStructured("tool"),
			{Id: &bes.BuildEventId_BuildMetadata{BuildMetadata: &bes.BuildEventId_BuildMetadataId{}}},
			{Id: &bes.BuildEventId_OptionsParsed{OptionsParsed: &bes.BuildEventId_OptionsParsedId{}}},
			{Id: &bes.BuildEventId_WorkspaceStatus{WorkspaceStatus: &bes.BuildEventId_WorkspaceStatusId{}}},
			{Id: &bes.BuildEventId_Pattern{Pattern: &bes.BuildEventId_PatternExpandedId{Pattern: []string{"//..."}}}},
			{Id: &bes.BuildEventId_BuildFinished{BuildFinished: &bes.BuildEventId_BuildFinishedId{}}},
		},
		Payload: &bes.BuildEvent_Started{Started: &bes.BuildStarted{
			Uuid: g.uuid, StartTimeMillis: g.start,
			OptionsDescription: strings.Join(args, " "),
			Command:            "test", WorkingDirectory: "/src/ws_gen", WorkspaceDirectory: "/src/ws_gen",
			ServerPid: int64(1000 + g.r.IntN(60000)),
		}},
	}
	var children []*bes.BuildEventId
	for _, p := range g.pkgs {
		for _, t := range p.targets {
			children = append(children, idConfigured(t.label))
		}
	}
	evs := []*bes.BuildEvent{
		started,
		{Id: idStructured("tool"), Payload: &bes.BuildEvent_StructuredCommandLine{StructuredCommandLine: commandLine("tool")}},
		{Id: &bes.BuildEventId{Id: &bes.BuildEventId_BuildMetadata{BuildMetadata: &bes.BuildEventId_BuildMetadataId{}}}, Payload: &bes.BuildEvent_BuildMetadata{BuildMetadata: g.buildMetadata()}},
		{Id: idStructured("canonical"), Payload: &bes.BuildEvent_StructuredCommandLine{StructuredCommandLine: commandLine("canonical")}},
		{Id: &bes.BuildEventId{Id: &bes.BuildEventId_UnstructuredCommandLine{UnstructuredCommandLine: &bes.BuildEventId_UnstructuredCommandLineId{}}},
			Payload: &bes.BuildEvent_UnstructuredCommandLine{UnstructuredCommandLine: &bes.UnstructuredCommandLine{Args: append([]string{"test"}, args...)}}},
		{Id: &bes.BuildEventId{Id: &bes.BuildEventId_OptionsParsed{OptionsParsed: &bes.BuildEventId_OptionsParsedId{}}},
			Payload: &bes.BuildEvent_OptionsParsed{OptionsParsed: &bes.OptionsParsed{StartupOptions: args[:5], CmdLine: args[5:], ExplicitCmdLine: args[13:]}}},
		{Id: idStructured("original"), Payload: &bes.BuildEvent_StructuredCommandLine{StructuredCommandLine: commandLine("original")}},
		{Id: &bes.BuildEventId{Id: &bes.BuildEventId_Pattern{Pattern: &bes.BuildEventId_PatternExpandedId{Pattern: []string{"//..."}}}},
			Children: children, Payload: &bes.BuildEvent_Expanded{Expanded: &bes.PatternExpanded{}}},
		g.progress("", "Loading: \nLoading: 0 packages loaded\n", &bes.BuildEventId{Id: &bes.BuildEventId_Workspace{Workspace: &bes.BuildEventId_WorkspaceConfigId{}}}),
		{Id: &bes.BuildEventId{Id: &bes.BuildEventId_Workspace{Workspace: &bes.BuildEventId_WorkspaceConfigId{}}},
			Payload: &bes.BuildEvent_WorkspaceInfo{WorkspaceInfo: &bes.WorkspaceConfig{LocalExecRoot: strings.TrimPrefix(g.outBase, "file://")}}},
		g.progress("", fmt.Sprintf("Analyzing: %d targets (%d packages loaded, 0 targets configured)\n", g.stats.Targets, len(g.pkgs))),
		{Id: &bes.BuildEventId{Id: &bes.BuildEventId_Configuration{Configuration: g.configID()}},
			Payload: &bes.BuildEvent_Configuration{Configuration: &bes.Configuration{
				Mnemonic: "k8-fastbuild", PlatformName: "k8", Cpu: "k8",
				MakeVariable: map[string]string{"COMPILATION_MODE": "fastbuild", "TARGET_CPU": "k8", "GENDIR": "bazel-out/k8-fastbuild/bin", "BINDIR": "bazel-out/k8-fastbuild/bin"},
			}}},
	}
	return evs
}

// buildMetadata is the BuildMetadata event's payload: COMMIT_SHA when the
// invocation has a commit (Config.Commit), else empty.
func (g *gen) buildMetadata() *bes.BuildMetadata {
	if g.commit == "" {
		return &bes.BuildMetadata{}
	}
	return &bes.BuildMetadata{Metadata: map[string]string{"COMMIT_SHA": g.commit}}
}

func (g *gen) configured(t *target) *bes.BuildEvent {
	ev := &bes.BuildEvent{Id: idConfigured(t.label)}
	if t.aborted {
		ev.Payload = &bes.BuildEvent_Aborted{Aborted: &bes.Aborted{
			Reason:      bes.Aborted_ANALYSIS_FAILURE,
			Description: fmt.Sprintf("no such package '%s/missing': BUILD file not found in any of the following directories.\n - /src/ws_gen/%s/missing", t.pkg, t.pkg),
		}}
		return ev
	}
	ev.Children = []*bes.BuildEventId{g.idCompleted(t.label)}
	c := &bes.TargetConfigured{TargetKind: "genrule rule"}
	if t.test {
		c.TargetKind, c.TestSize = "sh_test rule", t.size
	}
	ev.Payload = &bes.BuildEvent_Configured{Configured: c}
	return ev
}

func (g *gen) workspaceStatus() *bes.BuildEvent {
	return &bes.BuildEvent{
		Id: &bes.BuildEventId{Id: &bes.BuildEventId_WorkspaceStatus{WorkspaceStatus: &bes.BuildEventId_WorkspaceStatusId{}}},
		Payload: &bes.BuildEvent_WorkspaceStatus{WorkspaceStatus: &bes.WorkspaceStatus{Item: []*bes.WorkspaceStatus_Item{
			{Key: "BUILD_EMBED_LABEL"}, {Key: "BUILD_HOST", Value: "vm"},
			{Key: "BUILD_TIMESTAMP", Value: fmt.Sprint(g.start / 1000)}, {Key: "BUILD_USER", Value: "root"},
		}}},
	}
}

func (g *gen) binFile(path string) *bes.File {
	return &bes.File{PathPrefix: []string{"bazel-out", "k8-fastbuild", "bin"}, Name: path,
		File: &bes.File_Uri{Uri: g.outBase + "/bazel-out/k8-fastbuild/bin/" + path}}
}

// action returns the progress event and the ActionExecuted event of one
// action of t.
func (g *gen) action(t *target, typ, out string, cmd []string, fail bool) []*bes.BuildEvent {
	g.done++
	id := g.idAction(t.label, out)
	stderr := ""
	if g.r.IntN(4) == 0 {
		stderr = fmt.Sprintf("[%d / %d] %d actions running\n    %s %s; %ds linux-sandbox\n", g.done, g.total, 1+g.r.IntN(4), typ, t.label, g.r.IntN(3))
	}
	a := &bes.ActionExecuted{
		Success: !fail, Type: typ, Label: t.label, Configuration: g.configID(),
		PrimaryOutput: &bes.File{File: &bes.File_Uri{Uri: g.outBase + "/" + out}},
		CommandLine:   cmd,
	}
	if fail {
		msg := fmt.Sprintf("Executing genrule %s failed: (Exit 1): bash failed: error executing command /bin/bash -c 'source external/bazel_tools/tools/genrule/genrule-setup.sh; ./gen.sh > %s'", t.label, out)
		a.ExitCode = 1
		a.Stderr = &bes.File{Name: "stderr", File: &bes.File_Uri{Uri: fmt.Sprintf("%s/bazel-out/_tmp/actions/stderr-%d", g.outBase, g.done)}}
		a.FailureDetail = &failuredetails.FailureDetail{Message: msg, Category: &failuredetails.FailureDetail_Spawn{Spawn: &failuredetails.Spawn{Code: failuredetails.Spawn_NON_ZERO_EXIT, SpawnExitCode: 1}}}
		stderr = "ERROR: /src/ws_gen/" + t.pkg + "/BUILD:1:8: " + msg + "\ngen.sh: line 3: generator crashed: segmentation fault\n"
	}
	g.tick(40)
	return []*bes.BuildEvent{
		g.progress("", stderr, id),
		{Id: id, Payload: &bes.BuildEvent_Action{Action: a}},
	}
}

// execute returns the events of building (and testing) one target.
func (g *gen) execute(t *target) []*bes.BuildEvent {
	if t.aborted {
		return []*bes.BuildEvent{{Id: g.idCompleted(t.label), Payload: &bes.BuildEvent_Aborted{Aborted: &bes.Aborted{Reason: bes.Aborted_ANALYSIS_FAILURE}}}}
	}
	var evs []*bes.BuildEvent
	var outputs []*bes.File
	if !t.test {
		out := "bazel-out/k8-fastbuild/bin/" + t.pkg + "/" + t.name + ".txt"
		evs = append(evs, g.action(t, "Genrule", out, []string{"/bin/bash", "-c",
			"source external/bazel_tools/tools/genrule/genrule-setup.sh; echo " + t.pkg + "/" + t.name + " > " + out}, t.fails)...)
		outputs = []*bes.File{g.binFile(t.pkg + "/" + t.name + ".txt")}
	} else {
		base := "bazel-out/k8-fastbuild/bin/" + t.pkg + "/" + t.name
		evs = append(evs, g.action(t, "SourceSymlinkManifest", base+".runfiles_manifest", nil, false)...)
		evs = append(evs, g.action(t, "SymlinkTree", base+".runfiles/MANIFEST", nil, false)...)
		evs = append(evs, g.action(t, "ExecutableSymlink", base, nil, false)...)
		outputs = []*bes.File{g.binFile(t.pkg + "/" + t.name)}
	}
	set := g.nset
	g.nset++
	evs = append(evs, &bes.BuildEvent{Id: idNamedSet(set), Payload: &bes.BuildEvent_NamedSetOfFiles{NamedSetOfFiles: &bes.NamedSetOfFiles{Files: outputs}}})
	done := &bes.BuildEvent{Id: g.idCompleted(t.label)}
	tc := &bes.TargetComplete{Success: !t.fails}
	if t.fails {
		done.Children = []*bes.BuildEventId{g.idAction(t.label, "bazel-out/k8-fastbuild/bin/"+t.pkg+"/"+t.name+".txt")}
		tc.FailureDetail = &failuredetails.FailureDetail{
			Message:  "Executing genrule " + t.label + " failed: (Exit 1): bash failed",
			Category: &failuredetails.FailureDetail_Spawn{Spawn: &failuredetails.Spawn{Code: failuredetails.Spawn_NON_ZERO_EXIT, SpawnExitCode: 1}},
		}
	} else {
		tc.OutputGroup = []*bes.OutputGroup{{Name: "default", FileSets: []*bes.BuildEventId_NamedSetOfFilesId{{Id: fmt.Sprint(set)}}}}
		tc.ImportantOutput = outputs
	}
	done.Payload = &bes.BuildEvent_Completed{Completed: tc}
	if !t.test {
		return append(evs, done)
	}
	tc.TestTimeoutSeconds = 60
	if t.size == bes.TestSize_MEDIUM {
		tc.TestTimeoutSeconds = 300
	}
	for s := 1; s <= t.shards; s++ {
		done.Children = append(done.Children, g.idTestResult(t.label, s, 1))
	}
	done.Children = append(done.Children, g.idTestSummary(t.label))
	evs = append(evs, done)

	sum := &bes.TestSummary{OverallStatus: t.status, RunCount: 1}
	if t.shards > 1 {
		sum.ShardCount = int32(t.shards)
	}
	first, last, total := int64(0), int64(0), int64(0)
	logDir := g.outBase + "/bazel-out/k8-fastbuild/testlogs/" + t.pkg + "/" + t.name
	for s := 1; s <= t.shards; s++ {
		dir := logDir
		if t.shards > 1 {
			dir = fmt.Sprintf("%s/shard_%d_of_%d", logDir, s, t.shards)
		}
		n := t.attempts()
		for a := 1; a <= n; a++ {
			status := t.status
			switch {
			case t.status == bes.TestStatus_FLAKY && a == 1:
				status = bes.TestStatus_FAILED
			case t.status == bes.TestStatus_FLAKY:
				status = bes.TestStatus_PASSED
			}
			log, xml := dir+"/test.log", dir+"/test.xml"
			if a < n {
				log = fmt.Sprintf("%s/test_attempts/attempt_%d.log", dir, a)
				xml = fmt.Sprintf("%s/test_attempts/attempt_%d.xml", dir, a)
			}
			dur := int64(50 + g.r.IntN(900))
			if status == bes.TestStatus_TIMEOUT {
				dur = tc.TestTimeoutSeconds*1000 + int64(g.r.IntN(200))
			}
			startMs := g.tick(30)
			if first == 0 {
				first = startMs
			}
			last = startMs + dur
			total += dur
			res := &bes.TestResult{
				Status: status, CachedLocally: t.cached,
				TestAttemptStartMillisEpoch: startMs, TestAttemptDurationMillis: dur,
				TestActionOutput: []*bes.File{{Name: "test.log", File: &bes.File_Uri{Uri: log}}, {Name: "test.xml", File: &bes.File_Uri{Uri: xml}}},
				ExecutionInfo:    &bes.TestResult_ExecutionInfo{Strategy: "linux-sandbox"},
			}
			if status == bes.TestStatus_FAILED || status == bes.TestStatus_TIMEOUT {
				res.ExecutionInfo.ExitCode = 1
				if status == bes.TestStatus_TIMEOUT {
					res.ExecutionInfo.ExitCode = 142
				}
			}
			if t.cached {
				res.ExecutionInfo.Strategy = ""
			} else {
				evs = append(evs, g.action(t, "TestRunner", strings.TrimPrefix(log, g.outBase+"/"), []string{"external/bazel_tools/tools/test/test-setup.sh", t.pkg + "/" + t.name}, false)...)
			}
			ev := &bes.BuildEvent{Id: g.idTestResult(t.label, s, a), Payload: &bes.BuildEvent_TestResult{TestResult: res}}
			if a < n {
				ev.Children = []*bes.BuildEventId{g.idTestResult(t.label, s, a+1)}
			}
			evs = append(evs, ev)
			if status == bes.TestStatus_FAILED || status == bes.TestStatus_TIMEOUT {
				evs = append(evs, g.progress(g.testOutput(t, status), fmt.Sprintf("FAIL: %s (see %s)\n", t.label, strings.TrimPrefix(log, "file://"))))
				sum.Failed = append(sum.Failed, &bes.File{File: &bes.File_Uri{Uri: log}})
			} else if a == n {
				sum.Passed = append(sum.Passed, &bes.File{File: &bes.File_Uri{Uri: log}})
			}
			sum.TotalRunCount++
			if t.cached {
				sum.TotalNumCached++
			}
		}
	}
	sum.FirstStartTimeMillis, sum.LastStopTimeMillis, sum.TotalRunDurationMillis = first, last, total
	if t.status != bes.TestStatus_PASSED {
		sum.AttemptCount = 2
	}
	evs = append(evs, &bes.BuildEvent{Id: g.idTestSummary(t.label), Payload: &bes.BuildEvent_TestSummary{TestSummary: sum}})
	return evs
}

// testOutput is the test log a failed attempt prints, as Bazel streams it.
func (g *gen) testOutput(t *target, status bes.TestStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "==================== Test output for %s:\n", t.label)
	for i := range 5 + g.r.IntN(40) {
		fmt.Fprintf(&b, "[ RUN      ] %sTest.Case%03d\n", t.name, i)
		fmt.Fprintf(&b, "[       OK ] %sTest.Case%03d (%d ms)\n", t.name, i, g.r.IntN(50))
	}
	if status == bes.TestStatus_TIMEOUT {
		b.WriteString("-- Test timed out at 2026-11-23 12:00:00 UTC --\n")
	} else {
		fmt.Fprintf(&b, "%s_test.sh:42: Failure\nExpected equality of these values:\n  want\n    Which is: %d\n  got\n    Which is: %d\n[  FAILED  ] %sTest.Broken\n", t.name, g.r.IntN(100), g.r.IntN(100), t.name)
	}
	b.WriteString("================================================================================\n")
	return b.String()
}

func (g *gen) epilogue() []*bes.BuildEvent {
	exit := &bes.BuildFinished_ExitCode{Name: "SUCCESS"}
	switch {
	case g.stats.FailedBuilds > 0 || g.anyAborted():
		exit = &bes.BuildFinished_ExitCode{Name: "BUILD_FAILURE", Code: 1}
	case g.stats.Failed > 0 || g.stats.TimedOut > 0:
		exit = &bes.BuildFinished_ExitCode{Name: "TESTS_FAILED", Code: 3}
	}
	finish := g.tick(1000)
	idFinished := &bes.BuildEventId{Id: &bes.BuildEventId_BuildFinished{BuildFinished: &bes.BuildEventId_BuildFinishedId{}}}
	idLogs := &bes.BuildEventId{Id: &bes.BuildEventId_BuildToolLogs{BuildToolLogs: &bes.BuildEventId_BuildToolLogsId{}}}
	idMetrics := &bes.BuildEventId{Id: &bes.BuildEventId_BuildMetrics{BuildMetrics: &bes.BuildEventId_BuildMetricsId{}}}
	summary := fmt.Sprintf("INFO: Elapsed time: %.3fs, Critical Path: 4.51s\nINFO: %d processes: %d linux-sandbox.\nINFO: Build completed, %d tests FAILED, %d total actions\n",
		float64(finish-g.start)/1000, g.done, g.done, g.stats.Failed+g.stats.TimedOut, g.done)
	return []*bes.BuildEvent{
		g.progress("", summary, idFinished),
		{Id: idFinished, Children: []*bes.BuildEventId{idLogs, idMetrics},
			Payload: &bes.BuildEvent_Finished{Finished: &bes.BuildFinished{
				OverallSuccess: exit.Code == 0, ExitCode: exit, FinishTimeMillis: finish,
				AnomalyReport: &bes.BuildFinished_AnomalyReport{},
			}}},
		{Id: idMetrics, Payload: &bes.BuildEvent_BuildMetrics{BuildMetrics: &bes.BuildMetrics{
			ActionSummary: &bes.BuildMetrics_ActionSummary{ActionsCreated: int64(g.total + g.total/8), ActionsExecuted: int64(g.done)},
			MemoryMetrics: &bes.BuildMetrics_MemoryMetrics{},
			TargetMetrics: &bes.BuildMetrics_TargetMetrics{TargetsLoaded: int64(g.stats.Targets), TargetsConfigured: int64(g.stats.Targets)},
			TimingMetrics: &bes.BuildMetrics_TimingMetrics{CpuTimeInMs: (finish - g.start) / 3, WallTimeInMs: finish - g.start},
		}}},
		{Id: idLogs, LastMessage: true, Payload: &bes.BuildEvent_BuildToolLogs{BuildToolLogs: &bes.BuildToolLogs{Log: []*bes.File{
			{Name: "elapsed time", File: &bes.File_Contents{Contents: fmt.Appendf(nil, "%.6f", float64(finish-g.start)/1000)}},
			{Name: "critical path", File: &bes.File_Contents{Contents: []byte("Critical Path: 4.51s, Remote (0.00% of the time)")}},
			{Name: "command.profile.gz", File: &bes.File_Uri{Uri: strings.TrimSuffix(g.outBase, "/execroot/bep_gen") + "/command.profile.gz"}},
		}}}},
	}
}

func (g *gen) anyAborted() bool {
	for _, p := range g.pkgs {
		for _, t := range p.targets {
			if t.aborted {
				return true
			}
		}
	}
	return false
}
