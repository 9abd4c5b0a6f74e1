package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/local"
	"github.com/bes-cli/bes/store/query"
)

// Exit statuses. They are part of bes's interface: CI scripts gate on them,
// and `bes --help` documents them.
const (
	ExitOK        = 0 // success
	ExitError     = 1 // an error: unreadable or invalid input, a damaged store catalog, I/O, a stream not found
	ExitUsage     = 2 // bad flags or arguments
	ExitPartial   = 3 // an input was cut short: the complete events before the cut were used
	ExitDuplicate = 4 // ingest: a stream with that key and other content is already stored, or a bes serve is receiving it; nothing changed
	ExitBuildFail = 5 // views: the build failed (invocation.VerdictBuildFailed)
	ExitTestFail  = 6 // views: a test failed (invocation.VerdictTestsFailed)
	ExitNoData    = 7 // views and query: no stream or no event to report on
	// ExitIncomplete: views: an invocation did not finish (no BuildFinished
	// and no last message: Bazel was killed, the file was cut), so its
	// verdict is unknown and it never passes (issue 10).
	ExitIncomplete = 8
	// ExitDamaged: some events could not be fully decoded (each named on
	// stderr with file, byte offset and event index); every other event
	// was read and used (issue 10). Also a stored stream whose file is
	// damaged (a checksum that fails, a file cut short: a
	// *bess.CorruptError): one stderr line names the file and the byte
	// offset, and the events before the damage were used (issue 13); it
	// wins over every status but an error and a usage error.
	ExitDamaged = 9
	// ExitOverBudget: query: the expression spent more than its cost limit
	// on an event (query.ErrCostLimit; --cost-limit, default
	// query.DefaultCostLimit), so the query stopped there (issue 13).
	ExitOverBudget = 10
)

const exitStatusHelp = `EXIT STATUS:
   0  success
   1  error: unreadable or invalid input, a damaged store catalog, I/O error, stream not found
   2  usage error: bad flags or arguments, an unknown command
   3  partial: an input was truncated; the complete events before the cut were kept and used
   4  duplicate: a stream with the same key but other content is already stored (ingest without --replace),
      or a bes serve is receiving that stream right now
   5  build failed (summary, tests, failures, report; diff: a target newly fails): Bazel's exit code
      is not SUCCESS and no test ran and failed, or Bazel ended the stream without BuildFinished
      (it refused the command)
   6  tests failed (summary, tests, failures, report; diff: a test newly fails): Bazel's exit code is
      TESTS_FAILED, or it is not SUCCESS and a test failed, timed out or was stopped while it ran
   7  no data: no stream, no event or no test to report on; query: no event matched
   8  did not finish (summary, tests, failures, report): an invocation has no BuildFinished event and
      no last message (Bazel killed, file cut): its verdict is unknown, so it never passes
   9  damaged input: some events could not be decoded (one stderr line each); all others were used;
      or a stored stream's file is damaged (a checksum fails, it is cut short): one stderr line names
      the file and byte offset, and the events before the damage were used
  10  over budget (query): the expression exceeded its cost limit (--cost-limit) on an event;
      the query stopped there`

// usageError is a mistake in the command line: msg says it to the user,
// and cause, if not nil, is the error that found it (a regular
// expression's, a flag parser's), kept for errors.Is and errors.As.
type usageError struct {
	msg   string
	cause error
}

func (e *usageError) Error() string { return e.msg }

// Unwrap returns the cause, nil if there is none.
func (e *usageError) Unwrap() error { return e.cause }

// reportedError carries an exit status for problems that were already
// reported on stderr, one line each, while the command went on.
type reportedError struct {
	code int
	msg  string
}

func (e *reportedError) Error() string { return e.msg }

// ExitCode maps an error returned by the app to bes's exit status. An input
// cut short (a *bepfile.Error wrapping io.ErrUnexpectedEOF) is partial
// input, ExitPartial; a damaged stream file of the store (a
// *local.CorruptError, even one wrapping io.ErrUnexpectedEOF: the store
// lost data it had acknowledged, which is not the input's doing) is
// ExitDamaged, and a damaged catalog (a *local.IndexError) ExitError. A
// query over its cost limit (query.ErrCostLimit) is ExitOverBudget.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var re *reportedError
	if errors.As(err, &re) {
		return re.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return ExitUsage
	}
	if errors.Is(err, query.ErrCostLimit) {
		return ExitOverBudget
	}
	var de *store.DuplicateStreamError
	if errors.As(err, &de) {
		return ExitDuplicate
	}
	var ce *local.CorruptError
	if errors.As(err, &ce) {
		return ExitDamaged
	}
	var ie *local.IndexError
	if errors.As(err, &ie) {
		return ExitError
	}
	var be *bepfile.Error
	if errors.As(err, &be) && errors.Is(be, io.ErrUnexpectedEOF) {
		return ExitPartial
	}
	return ExitError
}

// IsReported reports whether err's message has already been printed.
func IsReported(err error) bool {
	var re *reportedError
	return errors.As(err, &re) && re.msg == ""
}

// outcome folds the results of several inputs or checks into one exit
// status, the gravest winning: an error, then a duplicate, an invocation
// that did not finish, failed tests, a failed build, damaged input, a
// partial input, and no data.
type outcome struct{ code int }

var exitRank = map[int]int{ExitOK: 0, ExitNoData: 1, ExitPartial: 2, ExitDamaged: 3, ExitBuildFail: 4, ExitTestFail: 5, ExitIncomplete: 6, ExitDuplicate: 7, ExitError: 8}

func (o *outcome) add(code int) {
	if exitRank[code] > exitRank[o.code] {
		o.code = code
	}
}

// err returns the outcome as an error whose message has been reported.
func (o *outcome) err() error {
	if o.code == ExitOK {
		return nil
	}
	return &reportedError{code: o.code}
}

// storeDamages records, for one run of the app (in its context), that a
// stored stream's file was found damaged while a command read it: the
// command used the events before the damage and goes on, and Run then
// exits ExitDamaged (issue 13).
type storeDamages struct {
	mu  sync.Mutex
	hit bool
}

type storeDamagesKey struct{}

// withStoreDamages returns ctx carrying d.
func withStoreDamages(ctx context.Context, d *storeDamages) context.Context {
	return context.WithValue(ctx, storeDamagesKey{}, d)
}

// storeDamage reports err on errw, one line naming the file and byte
// offset, and records it in ctx's storeDamages, when err is a damaged
// stream file of the store (a *local.CorruptError, as store/bess and the
// backends give it); it returns false, doing nothing, for any other error,
// which the caller returns as before.
func storeDamage(ctx context.Context, errw io.Writer, err error) bool {
	var ce *local.CorruptError
	if !errors.As(err, &ce) || ctx.Err() != nil {
		return false
	}
	fmt.Fprintf(errw, "bes: %s (the events before it are used; bes store check --repair quarantines it)\n", safeCell(ce.Error()))
	if d, ok := ctx.Value(storeDamagesKey{}).(*storeDamages); ok {
		d.mu.Lock()
		d.hit = true
		d.mu.Unlock()
	}
	return true
}

// result is the error of a run that returned err: ExitDamaged (already
// reported) when a damaged stored stream was found and err is no error of
// its own (nil, or a reported status such as a failed test or no data).
func (d *storeDamages) result(err error) error {
	d.mu.Lock()
	hit := d.hit
	d.mu.Unlock()
	if !hit {
		return err
	}
	var re *reportedError
	if err != nil && (!errors.As(err, &re) || re.msg != "") {
		return err
	}
	switch {
	case err == nil, re.code == ExitNoData, re.code == ExitPartial, re.code == ExitDamaged,
		re.code == ExitBuildFail, re.code == ExitTestFail, re.code == ExitIncomplete:
		return &reportedError{code: ExitDamaged}
	}
	return err
}
