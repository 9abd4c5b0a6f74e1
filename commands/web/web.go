// Package web serves the store as pages over HTTP (`bes serve --http`,
// issue 16): the list of the stored invocations, each invocation's page
// (the page `bes report` writes, which the caller renders), and a test's
// history (store.HistoryReader, the data of `bes history`).
//
// Routes:
//
//	/                          the invocations, newest first; query parameters
//	                           match (a regular expression on the key),
//	                           status (Bazel's exit code name, or "incomplete"),
//	                           command (Bazel's command), page (from 1)
//	/invocation/ID             the page of the invocation ID (or of a full
//	                           stream key); Bazel's --bes_results_url=
//	                           http://HOST:PORT/invocation/ appends the id
//	/history/LABEL             the runs of a test or target (//pkg:name; the
//	                           leading // may be left out), newest first
//	/history?label=LABEL       the same, from the list page's form
//
// The handler only reads: it never writes the store. It is safe for
// concurrent use, as the store it reads is.
package web

import (
	"cmp"
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bes-cli/bes/store"
)

// ErrNoEvents is what Options.Page returns for a stream that holds no
// Bazel event yet (a stream just opened by bes serve, or a lifecycle
// stream): the handler then shows a page that refreshes until they come.
var ErrNoEvents = errors.New("the stream holds no Bazel event yet")

// DefaultPageSize is the invocations one list page shows by default.
const DefaultPageSize = 50

// RefreshSeconds is how often a page of a stream still being received
// reloads itself (an HTTP Refresh header, which browsers follow as they
// follow <meta http-equiv="refresh">).
const RefreshSeconds = 5

// Options configure Handler.
type Options struct {
	// Store is listed for the list page and looked up for /invocation/;
	// only its catalog is read (Backend.List, Backend.Lookup).
	Store store.Backend
	// History answers /history/; nil: those pages are 404, saying why.
	History store.HistoryReader
	// Page writes the page of the tool stream e to w (a whole HTML
	// document), with a link back to the list; ErrNoEvents when the
	// stream holds no Bazel event yet. Nothing must be written to w
	// before an error is returned.
	Page func(ctx context.Context, w io.Writer, e *store.Entry) error
	// Token, when not "", is the bearer token every request must carry
	// ("Authorization: Bearer TOKEN", as the gRPC side asks it); others
	// get 401.
	Token string
	// PageSize is the invocations a list page shows (0: DefaultPageSize).
	PageSize int
	// MaxPages is the invocation pages rendered at once
	// (0: DefaultMaxPages); a request over it waits its turn, or until
	// its client goes away. A page of a large build costs seconds of CPU
	// and a model in memory (BENCHMARKS.md, bes report).
	MaxPages int
	// Log gets one line per request that failed on the server's side
	// (nil: none).
	Log io.Writer
}

// DefaultMaxPages is Options.MaxPages's default.
const DefaultMaxPages = 4

type handler struct {
	opts  Options
	pages chan struct{} // a token per page being rendered
}

// Handler returns the http.Handler of the pages. Paths are matched as
// they come, without cleaning, so that a label's "//" survives.
func Handler(opts Options) http.Handler {
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.MaxPages <= 0 {
		opts.MaxPages = DefaultMaxPages
	}
	return &handler{opts: opts, pages: make(chan struct{}, opts.MaxPages)}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.opts.Token != "" && !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="bes"`)
		http.Error(w, "401 unauthorized: this server wants \"Authorization: Bearer TOKEN\" (bes serve --auth-token-file)", http.StatusUnauthorized)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	path := r.URL.Path
	switch {
	case path == "/":
		h.list(w, r)
	case strings.HasPrefix(path, "/invocation/"):
		h.invocation(w, r, strings.TrimPrefix(path, "/invocation/"))
	case path == "/history" || path == "/history/":
		h.history(w, r, r.URL.Query().Get("label"))
	case strings.HasPrefix(path, "/history/"):
		h.history(w, r, strings.TrimPrefix(path, "/history/"))
	default:
		http.NotFound(w, r)
	}
}

// authorized compares the request's bearer token with the server's in
// constant time.
func (h *handler) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(h.opts.Token)) == 1
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if h.opts.Log != nil {
		fmt.Fprintf(h.opts.Log, "bes: http: %s: %v\n", r.URL.Path, err)
	}
	http.Error(w, "500 internal server error: "+err.Error(), http.StatusInternalServerError)
}

var (
	//go:embed pages.html.tmpl
	pagesTemplate string
	tmpl          = template.Must(template.New("pages").Funcs(template.FuncMap{
		"when":     when,
		"duration": duration,
		"invlink":  invocationLink,
	}).Parse(pagesTemplate))
)

// Row is one invocation of the list: a tool stream's catalog entry.
type Row struct {
	*store.Entry
	// Link is the path of its page: by invocation id, or by key when
	// another tool stream of the store has the same invocation id (a
	// run's .bep beside its BES capture).
	Link string
}

// Status is Bazel's exit code name, or "incomplete" for a stream without
// BuildFinished that did not end (being received, or cut short).
func (r Row) Status() string { return statusOf(r.Entry) }

func statusOf(e *store.Entry) string {
	if e.Result != "" {
		return e.Result
	}
	if !e.Complete {
		return "incomplete"
	}
	return "no result"
}

// Class is the CSS class of the row's status.
func (r Row) Class() string {
	switch s := r.Status(); {
	case s == "SUCCESS":
		return "passed"
	case s == "incomplete" || s == "no result":
		return "unfinished"
	default:
		return "failed"
	}
}

type listPage struct {
	Rows                     []Row
	Total                    int // invocations the filters keep
	Page, Pages              int
	First, Last              int // 1-based positions of the rows shown
	Match, Status, Command   string
	Error                    string   // a bad filter, said on the page
	Statuses, Commands       []string // the values seen, for the filters' choices
	Prev, Next               string   // links, "" when none
	HistoryEnabled           bool
	Stored                   int // invocations in the store
	RefreshSeconds           int
	AnyIncomplete, Filtering bool
}

// list writes the list page: the store's tool streams (component TOOL,
// which Bazel's events are in), newest first (start time, then key; a
// stream without a start time last), filtered and paged.
func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := listPage{Match: q.Get("match"), Status: q.Get("status"), Command: q.Get("command"), HistoryEnabled: h.opts.History != nil, RefreshSeconds: RefreshSeconds}
	p.Filtering = p.Match != "" || p.Status != "" || p.Command != ""
	var re *regexp.Regexp
	if p.Match != "" {
		var err error
		if re, err = regexp.Compile(p.Match); err != nil {
			p.Error = "match: " + err.Error()
			w.WriteHeader(http.StatusBadRequest)
			h.render(w, r, "list", p)
			return
		}
	}
	var all []*store.Entry
	err := h.opts.Store.List(r.Context(), func(e *store.Entry) error {
		if e.Component == toolComponent {
			all = append(all, e)
		}
		return nil
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p.Stored = len(all)
	slices.SortStableFunc(all, newestFirst)
	statuses, commands := map[string]bool{}, map[string]bool{}
	perID := map[string]int{}
	var kept []*store.Entry
	for _, e := range all {
		perID[e.InvocationID]++
		statuses[statusOf(e)] = true
		if e.Command != "" {
			commands[e.Command] = true
		}
		if re != nil && !re.MatchString(e.Key) {
			continue
		}
		if p.Status != "" && !strings.EqualFold(statusOf(e), p.Status) {
			continue
		}
		if p.Command != "" && e.Command != p.Command {
			continue
		}
		kept = append(kept, e)
	}
	p.Statuses, p.Commands = sortedKeys(statuses), sortedKeys(commands)
	p.Total = len(kept)
	p.Pages = max(1, (len(kept)+h.opts.PageSize-1)/h.opts.PageSize)
	p.Page = 1
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			w.WriteHeader(http.StatusBadRequest)
			p.Error = fmt.Sprintf("page: want a number from 1, not %q", v)
			h.render(w, r, "list", p)
			return
		}
		p.Page = n
	}
	from := min((p.Page-1)*h.opts.PageSize, len(kept))
	to := min(from+h.opts.PageSize, len(kept))
	for _, e := range kept[from:to] {
		link := invocationLink(e.InvocationID, e.Key)
		if perID[e.InvocationID] > 1 {
			link = invocationLink("", e.Key)
		}
		p.Rows = append(p.Rows, Row{Entry: e, Link: link})
		if !e.Complete {
			p.AnyIncomplete = true
		}
	}
	p.First, p.Last = from+1, to
	link := func(page int) string {
		v := url.Values{}
		for _, kv := range [][2]string{{"match", p.Match}, {"status", p.Status}, {"command", p.Command}} {
			if kv[1] != "" {
				v.Set(kv[0], kv[1])
			}
		}
		if page > 1 {
			v.Set("page", strconv.Itoa(page))
		}
		if len(v) == 0 {
			return "/"
		}
		return "/?" + v.Encode()
	}
	if p.Page > 1 {
		p.Prev = link(min(p.Page-1, p.Pages))
	}
	if p.Page < p.Pages {
		p.Next = link(p.Page + 1)
	}
	if p.Page == 1 && p.AnyIncomplete {
		// A stream being received: its row's count grows.
		w.Header().Set("Refresh", strconv.Itoa(RefreshSeconds))
	}
	h.render(w, r, "list", p)
}

// toolComponent is google.devtools.build.v1.StreamId.BuildComponent TOOL:
// the stream of Bazel's own events.
const toolComponent = 3

// newestFirst orders entries by start time, newest first, those without
// one last, then by key.
func newestFirst(a, b *store.Entry) int {
	if a.Start.IsZero() != b.Start.IsZero() {
		if a.Start.IsZero() {
			return 1
		}
		return -1
	}
	return cmp.Or(b.Start.Compare(a.Start), cmp.Compare(a.Key, b.Key))
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// invocation writes the page of the invocation ref names: an invocation
// id (its tool stream; of two, the one with more events, then the newer,
// then the first by key)
// or a full stream key. Anything else is 404: a prefix does not do, so
// that a link names one invocation for good.
func (h *handler) invocation(w http.ResponseWriter, r *http.Request, ref string) {
	ref = strings.TrimSuffix(ref, "/")
	if ref == "" {
		http.Redirect(w, r, "/", http.StatusFound)
		return
	}
	entries, err := h.opts.Store.Lookup(r.Context(), ref)
	var amb *store.AmbiguousRefError
	if errors.Is(err, store.ErrNotFound) || errors.As(err, &amb) {
		h.notFound(w, r, fmt.Sprintf("No stored invocation has the id or key %q.", ref))
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var best *store.Entry
	for _, e := range entries {
		if e.Key != ref && (e.InvocationID != ref || e.Component != toolComponent) {
			continue
		}
		if best == nil || e.Key == ref || (best.Key != ref && cmp.Or(cmp.Compare(e.Events, best.Events), e.Start.Compare(best.Start)) > 0) {
			best = e
		}
	}
	if best == nil {
		h.notFound(w, r, fmt.Sprintf("No stored invocation has the id or key %q.", ref))
		return
	}
	select {
	case h.pages <- struct{}{}:
	case <-r.Context().Done():
		return // the client went away
	}
	var buf strings.Builder
	err = h.opts.Page(r.Context(), &buf, best)
	<-h.pages
	if errors.Is(err, ErrNoEvents) {
		w.Header().Set("Refresh", strconv.Itoa(RefreshSeconds))
		h.render(w, r, "waiting", best)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !best.Complete {
		// Still being received (or cut short): the page reloads with the
		// events that came meanwhile.
		w.Header().Set("Refresh", strconv.Itoa(RefreshSeconds))
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, buf.String())
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request, msg string) {
	w.WriteHeader(http.StatusNotFound)
	h.render(w, r, "notfound", msg)
}

type historyPage struct {
	Label   string
	History *store.LabelHistory
	Limit   int
}

// historyLimit bounds the runs a history page lists (the summary counts
// them all).
const historyLimit = 500

// history writes the runs of a label, newest first, with the summary of
// bes history.
func (h *handler) history(w http.ResponseWriter, r *http.Request, label string) {
	if label == "" {
		http.Redirect(w, r, "/", http.StatusFound)
		return
	}
	if !strings.HasPrefix(label, "@") {
		// "/history//pkg:t", "/history/pkg:t" and a link whose "//" a
		// client folded all name //pkg:t.
		label = "//" + strings.TrimLeft(label, "/")
	}
	if h.opts.History == nil {
		h.notFound(w, r, "This store keeps no facts to answer questions across invocations.")
		return
	}
	lh, err := h.opts.History.LabelHistory(r.Context(), label, store.HistoryQuery{Limit: historyLimit})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if lh.Total == 0 {
		h.notFound(w, r, fmt.Sprintf("No run of %s in the store.", label))
		return
	}
	h.render(w, r, "history", historyPage{Label: label, History: lh, Limit: historyLimit})
}

func (h *handler) render(w http.ResponseWriter, r *http.Request, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The pages hold no script: nothing may run or load from elsewhere.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'")
	if err := tmpl.ExecuteTemplate(w, name, data); err != nil && h.opts.Log != nil {
		fmt.Fprintf(h.opts.Log, "bes: http: %s: %v\n", r.URL.Path, err)
	}
}

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func duration(a, b time.Time) string {
	if a.IsZero() || b.IsZero() || b.Before(a) {
		return ""
	}
	return b.Sub(a).Round(10 * time.Millisecond).String()
}

// invocationLink is the path of an invocation's page: by its id, or by
// its key when it has none.
func invocationLink(id, key string) string {
	if id == "" {
		id = key
	}
	return "/invocation/" + url.PathEscape(id)
}
