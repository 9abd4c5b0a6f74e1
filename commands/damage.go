package commands

import (
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepjson"
)

// damageLog reports, on standard error, each damaged event once (naming
// its file, byte offset and event index, or else its stream and sequence
// number) and what the events hold that bes does not know, once per
// input and field. It is safe for concurrent use: a query's filter decodes
// events on another goroutine than the one that prints them.
type damageLog struct {
	errw    io.Writer // a *lockedWriter shared with the other writers of stderr
	notices *bepfile.Notices
	mu      sync.Mutex
	sources map[string]string       // stream key → the file it was read from
	seen    map[*bepfile.Event]bool // damaged events reported
	damaged bool
}

func newDamageLog(errw io.Writer, notices *bepfile.Notices) *damageLog {
	return &damageLog{errw: errw, notices: notices, sources: map[string]string{}, seen: map[*bepfile.Event]bool{}}
}

// setSource records that the stream was read from file.
func (l *damageLog) setSource(key, file string) {
	l.mu.Lock()
	l.sources[key] = file
	l.mu.Unlock()
}

// where names an event: "FILE: byte N (event I)" when it was read from a
// file, else "stream KEY, event SEQ". l.mu is held.
func (l *damageLog) where(s *bepfile.Stream, ev *bepfile.Event) (where, input string) {
	if file := l.sources[s.Key]; file != "" {
		if off, idx, ok := ev.Position(); ok {
			return fmt.Sprintf("%s: byte %d (event %d)", file, off, idx), file
		}
		return fmt.Sprintf("%s: stream %s, event %d", file, s.Key, ev.Seq), file
	}
	return fmt.Sprintf("stream %s, event %d", s.Key, ev.Seq), "stream " + s.Key
}

// report reports what reading ev of s found.
func (l *damageLog) report(s *bepfile.Stream, ev *bepfile.Event, rep *bepjson.Report) {
	if !rep.Bad() && len(rep.Damage.Unknown) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	where, input := l.where(s, ev)
	for _, line := range l.notices.New(input, rep.Damage.Unknown) {
		fmt.Fprintf(l.errw, "bes: %s\n", safeCell(line))
	}
	if !rep.Bad() || l.seen[ev] {
		return
	}
	l.seen[ev] = true
	l.damaged = true
	var msg string
	switch {
	case rep.Err != nil:
		msg = rep.Err.Error() + " (printed as an error object; every other event is used)"
	case rep.Foreign != "":
		msg = "payload of type " + strconv.Quote(rep.Foreign) + " unknown to bes (printed as its type and base64 value)"
	default:
		msg = rep.Damage.String()
	}
	fmt.Fprintf(l.errw, "bes: %s: %s\n", safeCell(where), safeCell(msg))
}

// sawDamage reports whether some damaged event was reported.
func (l *damageLog) sawDamage() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.damaged
}

// lockedWriter serializes writes to w: the lines of a command's goroutines
// reach standard error whole.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lockedWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.Write(p)
}

// source returns the file the stream was read from, or "".
func (l *damageLog) source(key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sources[key]
}
