// Package query selects build events with expressions in CEL, the Common
// Expression Language (https://cel.dev), and with simple filters by kind,
// label and status. Every filter is a store.Filter, for Stream.Query.
//
// An expression is compiled once, with Compile, and evaluated per event.
// It sees these variables:
//
//	kind      string     Bazel's JSON name of the payload ("testResult",
//	                     "targetCompleted", ...); for an event that is not a
//	                     Bazel event, the JSON name of the envelope's event
//	                     ("componentStreamFinished", "buildEnqueued", ...)
//	label     string     the target label of the event's id (testResult,
//	                     testSummary, targetConfigured, targetCompleted,
//	                     actionCompleted, aborted events of a label, ...);
//	                     "" when the id has none
//	seq       int        the sequence number
//	time      google.protobuf.Timestamp, or null: the envelope's event_time
//	                     (Bazel's own files carry none)
//	stream    string     the stream key
//	event     build_event_stream.BuildEvent, decoded; an empty BuildEvent
//	                     for events that are not Bazel events
//	envelope  google.devtools.build.v1.OrderedBuildEvent, decoded; its
//	                     event.bazel_event is an Any, which CEL unpacks on
//	                     access
//
// Field names are the protobuf names (event.test_result.status), not the
// JSON names kind uses. The container is build_event_stream, so its types
// and enums resolve unqualified (TestStatus.FAILED, Aborted.AbortReason.
// ANALYSIS_FAILURE), and the enum values are also declared as protobuf
// scopes them, as siblings of their enum: build_event_stream.FAILED, or just
// FAILED (and Aborted.ANALYSIS_FAILURE). Enum values are ints, as CEL has them.
//
// Decoding is lazy: kind, label, seq, time and stream come from a walk of the
// event's wire encoding, and the payload is decoded only when an
// evaluation reaches event, once per event, by the rule every command
// reads with (bepfile.DecodeBuildEvent; see WithDecodeReport). An expression such as
// `kind == "testResult" && event.test_result.status != PASSED` decodes only
// the test results.
package query

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/bes-cli/bes/bepfile"
	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
	"github.com/bes-cli/bes/store"
)

// Container is the CEL container expressions are compiled in: names are
// resolved relative to Bazel's proto package first.
const Container = "build_event_stream"

// Variables returns the names of the variables an expression can use, in
// the order the package documentation describes them.
func Variables() []string {
	return []string{"kind", "label", "seq", "time", "stream", "event", "envelope"}
}

// Error is a mistake in an expression found when compiling it: a syntax
// error, an unknown name or field, a type error, or a result that is not a
// bool. Line and Column are 1-based and count Unicode code points.
type Error struct {
	Line, Column int
	Msg          string
	// More is the number of further errors CEL found.
	More int
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg)
	if e.More > 0 {
		s += fmt.Sprintf(" (and %d more)", e.More)
	}
	return s
}

// EvalError is a failure to evaluate an expression on one event, such as a
// missing map key, an index out of range, or a payload that does not
// decode. It ends the query: an event the expression cannot judge is not
// silently left out.
type EvalError struct {
	Stream string // the stream key
	Seq    int64  // the event's sequence number
	Err    error
}

func (e *EvalError) Error() string {
	return fmt.Sprintf("stream %s, seq %d: %v", e.Stream, e.Seq, e.Err)
}

func (e *EvalError) Unwrap() error { return e.Err }

// DefaultCostLimit is the CEL cost one evaluation (one event) may spend
// unless WithCostLimit says otherwise. CEL's cost counts the operations an
// evaluation performs, an element of a list or a byte-sized step of a
// string operation each (cel-go's runtime cost, cel.CostLimit): a test on
// a field costs under 10, event.named_set_of_files.files.exists(f,
// f.name.endsWith(".so")) 7 per file (70,004 for 10,000 files). A million
// stops an expression such as nested map()s, whose cost (and memory)
// multiply with each level (five map()s over lists of ten cost 344,433,
// six 3.4 million), within a fraction of a second and some tens of MB
// (issue 13: eight took 5.6 GB and 34 s, nine ran out of memory).
const DefaultCostLimit = 1_000_000

// ErrCostLimit is what an evaluation over its cost limit wraps (see
// CostError): the query is over budget.
var ErrCostLimit = errors.New("over the cost limit")

// CostError is an evaluation stopped by the cost limit: the expression
// spent more than Limit on one event. It wraps ErrCostLimit, and is the Err
// of an *EvalError.
type CostError struct {
	Limit uint64 // the cost limit of one evaluation (see DefaultCostLimit)
}

func (e *CostError) Error() string {
	return fmt.Sprintf("the expression exceeds the cost limit of %d per event (CEL's count of operations; nested map()s and comprehensions multiply it): simplify it or raise --cost-limit", e.Limit)
}

func (e *CostError) Unwrap() error { return ErrCostLimit }

// Option configures Compile.
type Option func(*config)

type config struct {
	onDecode  func() // called before each payload decode; for tests
	report    DecodeReport
	costLimit uint64
	ctx       context.Context
}

// WithCostLimit sets the CEL cost one evaluation may spend (see
// DefaultCostLimit, which a limit of 0 means). An evaluation over it stops
// with an *EvalError wrapping a *CostError.
func WithCostLimit(limit uint64) Option {
	return func(c *config) { c.costLimit = limit }
}

// WithContext has every evaluation watch ctx: once it is done (the user
// pressed Ctrl-C), an evaluation stops within interruptEvery iterations of
// a comprehension with an *EvalError wrapping context.Cause(ctx).
func WithContext(ctx context.Context) Option {
	return func(c *config) { c.ctx = ctx }
}

// interruptEvery is how many iterations of a comprehension CEL evaluates
// between two looks at the context (cel.InterruptCheckFrequency).
const interruptEvery = 100

// DecodeReport is told what decoding an event's payload found, when it
// found anything: a damaged or undecodable event, fields or enum values
// bes does not know (see bepfile.DecodeBuildEvent). err is the decode's
// error (the event could not be decoded at all: the expression saw what
// could be). It may be called from several goroutines at once.
type DecodeReport func(st *store.Stream, ev *bepfile.Event, d bepfile.Damage, err error)

// WithDecodeReport has fn told what each payload decode found (see
// DecodeReport), so that the command can report it.
func WithDecodeReport(fn DecodeReport) Option {
	return func(c *config) { c.report = fn }
}

// withDecodeHook has fn called before each decode of a payload. Tests count
// decodes with it.
func withDecodeHook(fn func()) Option {
	return func(c *config) { c.onDecode = fn }
}

// Filter is a compiled expression. It is a store.Filter and safe for
// concurrent use.
type Filter struct {
	expr     string
	prog     cel.Program
	adapter  types.Adapter
	kinds    map[string]ref.Val // each kind as a CEL value, made once
	onDecode func()
	report   DecodeReport
	limit    uint64          // the cost limit of one evaluation
	ctx      context.Context // nil: evaluations are not interrupted
}

var _ store.Filter = (*Filter)(nil)

// String returns the expression.
func (f *Filter) String() string { return f.expr }

// Compile parses and type-checks a CEL expression over the variables
// described in the package documentation. The expression must have type
// bool (or dyn, then checked per event). A mistake is returned as an
// *Error with its position. Each evaluation may spend DefaultCostLimit, or
// what WithCostLimit says.
func Compile(expr string, opts ...Option) (*Filter, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("query: CEL environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, compileError(iss.Errors())
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, &Error{Line: 1, Column: 1, Msg: fmt.Sprintf("the expression is %s, want bool", t)}
	}
	if cfg.costLimit == 0 {
		cfg.costLimit = DefaultCostLimit
	}
	popts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize), cel.CostLimit(cfg.costLimit)}
	if cfg.ctx != nil {
		popts = append(popts, cel.InterruptCheckFrequency(interruptEvery))
	}
	prog, err := env.Program(ast, popts...)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	kinds := map[string]ref.Val{}
	for _, k := range Kinds() {
		kinds[k] = types.String(k)
	}
	return &Filter{expr: expr, prog: prog, adapter: env.CELTypeAdapter(), kinds: kinds, onDecode: cfg.onDecode, report: cfg.report,
		limit: cfg.costLimit, ctx: cfg.ctx}, nil
}

// compileError turns CEL's issues into one *Error: the first, with the
// count of the others.
func compileError(errs []*common.Error) error {
	if len(errs) == 0 {
		return &Error{Line: 1, Column: 1, Msg: "invalid expression"}
	}
	e := errs[0]
	msg := e.Message
	// CEL names the container, which users never set; name the variables
	// they can use instead.
	if i := strings.Index(msg, " (in container '"); i >= 0 && strings.HasPrefix(msg, "undeclared reference") {
		msg = msg[:i] + " (variables: " + strings.Join(Variables(), ", ") + ")"
	}
	line, col := e.Location.Line(), e.Location.Column()+1
	if line < 1 {
		line = 1
	}
	if col < 1 {
		col = 1
	}
	return &Error{Line: line, Column: col, Msg: msg, More: len(errs) - 1}
}

// Match evaluates the expression on ev of st. An evaluation error is an
// *EvalError; one over the cost limit wraps a *CostError (ErrCostLimit),
// one interrupted by the context of WithContext wraps its cause.
func (f *Filter) Match(st *store.Stream, ev *bepfile.Event) (bool, error) {
	a := &activation{f: f, st: st, own: newView(ev)}
	a.v = &a.own
	return f.eval(a)
}

func (f *Filter) matchView(st *store.Stream, v *view) (bool, error) {
	return f.eval(&activation{f: f, st: st, v: v})
}

func (f *Filter) eval(a *activation) (bool, error) {
	st, v := a.st, a.v
	var (
		out ref.Val
		err error
	)
	if f.ctx != nil {
		out, _, err = f.prog.ContextEval(f.ctx, a)
	} else {
		out, _, err = f.prog.Eval(a)
	}
	var ce interpreter.EvalCancelledError
	switch {
	case errors.As(err, &ce) && ce.Cause == interpreter.CostLimitExceeded:
		err = &CostError{Limit: f.limit}
	case a.err != nil:
		err = a.err
	}
	if err != nil {
		return false, &EvalError{Stream: st.Key(), Seq: v.seq(), Err: err}
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, &EvalError{Stream: st.Key(), Seq: v.seq(), Err: fmt.Errorf("the expression gave %s, want bool", out.Type().TypeName())}
	}
	return bool(b), nil
}

// activation hands CEL the variables of one event, computing each on first
// use. It implements interpreter.Activation.
type activation struct {
	f        *Filter
	st       *store.Stream
	v        *view
	own      view // the view when the activation has its own
	event    ref.Val
	envelope ref.Val
	err      error // a decode failure, reported after evaluation
}

func (a *activation) Parent() interpreter.Activation { return nil }

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "kind":
		k := a.v.kind()
		if val, ok := a.f.kinds[k]; ok {
			return val, true
		}
		return types.String(k), true
	case "label":
		return types.String(a.v.label()), true
	case "seq":
		return types.Int(a.v.seq()), true
	case "stream":
		return types.String(a.st.Key()), true
	case "time":
		ts, ok := a.v.time()
		if !ok {
			return types.NullValue, true
		}
		return types.Timestamp{Time: ts}, true
	case "event":
		if a.event == nil {
			a.event = a.decodeEvent()
		}
		return a.event, true
	case "envelope":
		if a.envelope == nil {
			a.envelope = a.decodeEnvelope()
		}
		return a.envelope, true
	}
	return nil, false
}

// decodeEvent decodes the payload by the rule every command reads with
// (bepfile.DecodeBuildEvent): invalid UTF-8 as U+FFFD, a corrupt nested
// message in part, and an event that cannot be decoded at all as what
// could be; the filter's DecodeReport hears of each.
func (a *activation) decodeEvent() ref.Val {
	m := &bes.BuildEvent{}
	if p := a.v.payload(); p != nil {
		if a.f.onDecode != nil {
			a.f.onDecode()
		}
		d, err := bepfile.DecodeBuildEvent(p, m)
		if a.f.report != nil && (err != nil || d.Damaged() || len(d.Unknown) > 0) {
			a.f.report(a.st, a.v.ev, d, err)
		}
	}
	return a.f.adapter.NativeToValue(m)
}

// decodeEnvelope decodes the envelope. A Bazel payload the envelope's Any
// holds is repaired as decodeEvent repairs it (in the decoded copy), so
// that CEL can unpack it.
func (a *activation) decodeEnvelope() ref.Val {
	obe, err := a.v.ev.OrderedBuildEvent(a.st.Info())
	if err != nil {
		a.err = fmt.Errorf("decode OrderedBuildEvent: %w", err)
		return types.NewErr("%v", a.err)
	}
	if anyMsg := obe.GetEvent().GetBazelEvent(); anyMsg.GetTypeUrl() == bepfile.BazelEventTypeURL {
		m := &bes.BuildEvent{}
		if d, err := bepfile.DecodeBuildEvent(anyMsg.GetValue(), m); err != nil || d.Damaged() {
			if b, merr := proto.Marshal(m); merr == nil {
				anyMsg.Value = b
			}
		}
	}
	return a.f.adapter.NativeToValue(obe)
}

// newEnv declares the variables, the container, and the enum values of
// build_event_stream under their protobuf names.
func newEnv() (*cel.Env, error) {
	opts := []cel.EnvOption{
		cel.Container(Container),
		cel.Types(&bes.BuildEvent{}, &buildpb.OrderedBuildEvent{}, &buildpb.BuildEvent{}, &buildpb.BuildStatus{}),
		cel.Variable("kind", cel.StringType),
		cel.Variable("label", cel.StringType),
		cel.Variable("seq", cel.IntType),
		cel.Variable("time", cel.NullableType(cel.TimestampType)),
		cel.Variable("stream", cel.StringType),
		cel.Variable("event", cel.ObjectType(string((&bes.BuildEvent{}).ProtoReflect().Descriptor().FullName()))),
		cel.Variable("envelope", cel.ObjectType(string((&buildpb.OrderedBuildEvent{}).ProtoReflect().Descriptor().FullName()))),
	}
	fd := (*bes.BuildEvent)(nil).ProtoReflect().Descriptor().ParentFile()
	opts = appendEnumConstants(opts, fd.Package(), fd.Enums(), fd.Messages())
	return cel.NewEnv(opts...)
}

// appendEnumConstants declares every enum value under the name protobuf
// gives it: a sibling of its enum, in the enclosing package or message
// (build_event_stream.FAILED, build_event_stream.Aborted.ANALYSIS_FAILURE).
// CEL itself names them through the enum (build_event_stream.TestStatus.FAILED).
func appendEnumConstants(opts []cel.EnvOption, scope protoreflect.FullName, enums protoreflect.EnumDescriptors, msgs protoreflect.MessageDescriptors) []cel.EnvOption {
	for i := 0; i < enums.Len(); i++ {
		vals := enums.Get(i).Values()
		for j := 0; j < vals.Len(); j++ {
			v := vals.Get(j)
			opts = append(opts, cel.Constant(string(scope.Append(v.Name())), cel.IntType, types.Int(v.Number())))
		}
	}
	for i := 0; i < msgs.Len(); i++ {
		m := msgs.Get(i)
		opts = appendEnumConstants(opts, m.FullName(), m.Enums(), m.Messages())
	}
	return opts
}
