package commands

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bes-cli/bes/commands/web"
	"github.com/bes-cli/bes/store"
)

// webFiles are the testdata files the pages' tests store: four Bazel
// invocations (test_mixed, test_cached, build_keep_going_fail, and the BES
// capture of another test_mixed run with its lifecycle streams).
var webFiles = []string{"test_mixed.bep", "test_cached.bep", "build_keep_going_fail.bep", "bes_test_mixed.obe", "bes_test_mixed.lifecycle.obe"}

// storedTool is what `bes streams --format json` says of a tool stream.
type storedTool struct {
	Key          string    `json:"key"`
	InvocationID string    `json:"invocation_id"`
	Component    string    `json:"component"`
	Command      string    `json:"command"`
	Result       string    `json:"result"`
	Start        time.Time `json:"start"`
}

// webStore ingests files into a new store and returns its directory and
// its tool streams as bes streams lists them, newest first.
func webStore(t *testing.T, files ...string) (string, []storedTool) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	args := []string{"ingest", "--store", dir}
	for _, f := range files {
		args = append(args, td(f))
	}
	// A file cut short is stored as far as it goes (exit 3).
	if _, stderr, code := runCLI(t, args...); code != 0 && code != ExitPartial {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	out, stderr, code := runCLI(t, "streams", "--store", dir, "--format", "json")
	if code != 0 {
		t.Fatalf("streams: exit %d: %s", code, stderr)
	}
	var all, tools []storedTool
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Component == "TOOL" {
			tools = append(tools, s)
		}
	}
	slices.SortFunc(tools, func(a, b storedTool) int { return b.Start.Compare(a.Start) })
	return dir, tools
}

// webHandler serves the pages of the store in dir as bes serve --http
// does.
func webHandler(t *testing.T, dir string, opts web.Options) http.Handler {
	t.Helper()
	st, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts.Store = st
	opts.History, _ = st.(store.HistoryReader)
	opts.Page = servedPage(dir)
	return web.Handler(opts)
}

// get requests path of h and returns the status, the body and the headers.
func get(t *testing.T, h http.Handler, path string, header ...string) (int, string, http.Header) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String(), rec.Header()
}

var listedInvocation = regexp.MustCompile(`<td><a href="/invocation/([^"]+)">`)

// listed returns the invocation ids a list page links to, in order.
func listed(body string) []string {
	var ids []string
	for _, m := range listedInvocation.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

func idsOf(tools []storedTool) []string {
	var ids []string
	for _, s := range tools {
		ids = append(ids, s.InvocationID)
	}
	return ids
}

// TestWebList: the list shows the stored tool streams, newest first, as
// bes streams lists them; paged; filtered by key, status and command.
func TestWebList(t *testing.T) {
	dir, tools := webStore(t, webFiles...)
	if len(tools) != 4 {
		t.Fatalf("%d tool streams stored, want 4", len(tools))
	}
	h := webHandler(t, dir, web.Options{})
	code, body, hdr := get(t, h, "/")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %d %s", code, hdr.Get("Content-Type"))
	}
	if got, want := listed(body), idsOf(tools); !slices.Equal(got, want) {
		t.Errorf("/ lists %q, want the tool streams newest first %q", got, want)
	}
	if !strings.Contains(body, "1–4 of 4 invocations") {
		t.Errorf("/ lacks its count")
	}

	// Paged, two a page.
	hp := webHandler(t, dir, web.Options{PageSize: 2})
	var pages []string
	for _, path := range []string{"/", "/?page=2", "/?page=3"} {
		code, body, _ := get(t, hp, path)
		if code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		pages = append(pages, strings.Join(listed(body), " "))
		if path == "/" && !strings.Contains(body, `<a href="/?page=2" rel="next">`) {
			t.Errorf("/ has no link to page 2")
		}
		if path == "/?page=2" && (!strings.Contains(body, `<a href="/" rel="prev">`) || strings.Contains(body, `rel="next"`)) {
			t.Errorf("page 2 of 2: want a link back and none forward")
		}
	}
	ids := idsOf(tools)
	if want := []string{ids[0] + " " + ids[1], ids[2] + " " + ids[3], ""}; !slices.Equal(pages, want) {
		t.Errorf("pages %q, want %q", pages, want)
	}
	if code, _, _ := get(t, hp, "/?page=zero"); code != 400 {
		t.Errorf("page=zero: %d, want 400", code)
	}

	// Filters.
	var failedBuild, tests []string
	for _, s := range tools {
		if s.Result == "BUILD_FAILURE" {
			failedBuild = append(failedBuild, s.InvocationID)
		}
		if s.Command == "test" {
			tests = append(tests, s.InvocationID)
		}
	}
	if len(failedBuild) != 1 || len(tests) != 3 {
		t.Fatalf("stored: %d BUILD_FAILURE, %d test commands; want 1 and 3", len(failedBuild), len(tests))
	}
	for path, want := range map[string][]string{
		"/?status=BUILD_FAILURE":                       failedBuild,
		"/?status=build_failure":                       failedBuild,
		"/?command=test":                               tests,
		"/?match=" + ids[2][:8] + "&command=test":      {ids[2]},
		"/?match=%5E" + ids[2][:8] + "&status=SUCCESS": nil,
		"/?command=build&status=TESTS_FAILED":          nil,
	} {
		code, body, _ := get(t, h, path)
		if code != 200 {
			t.Errorf("%s: %d", path, code)
		}
		if got := listed(body); !slices.Equal(got, want) {
			t.Errorf("%s lists %q, want %q", path, got, want)
		}
		if len(want) == 0 && !strings.Contains(body, "No invocation matches (4 stored)") {
			t.Errorf("%s: no line saying nothing matches", path)
		}
	}
	if code, body, _ := get(t, h, "/?match=%28"); code != 400 || !strings.Contains(body, "missing closing )") {
		t.Errorf("match=(: %d, want 400 saying why:\n%s", code, body)
	}
}

// TestWebInvocation: /invocation/ID is bes report's page of the
// invocation with a link back to the list; an unknown id, a prefix and a
// bad path are 404; a stream not complete reloads.
func TestWebInvocation(t *testing.T) {
	dir, tools := webStore(t, webFiles...)
	h := webHandler(t, dir, web.Options{})
	var mixed storedTool
	for _, s := range tools {
		if strings.HasSuffix(s.Key, ".3."+s.InvocationID) && strings.HasPrefix(s.Key, s.InvocationID) && s.Command == "test" {
			if filepath.Base(sourceOf(t, dir, s.Key)) == "test_mixed.bep" {
				mixed = s
			}
		}
	}
	if mixed.Key == "" {
		t.Fatal("test_mixed.bep's stream is not stored")
	}
	code, body, hdr := get(t, h, "/invocation/"+mixed.InvocationID)
	if code != 200 {
		t.Fatalf("/invocation/%s: %d\n%s", mixed.InvocationID, code, body)
	}
	if hdr.Get("Refresh") != "" {
		t.Errorf("a complete stream's page reloads")
	}
	// The data page.js draws the tests from, and the header.
	data := regexp.MustCompile(`(?s)<script type="application/json" id="bes-data">(.*?)</script>`).FindStringSubmatch(body)
	if data == nil {
		t.Fatal("the page has no data")
	}
	var d struct {
		Tests []struct {
			Label  string `json:"label"`
			Status string `json:"status"`
		} `json:"tests"`
	}
	if err := json.Unmarshal([]byte(data[1]), &d); err != nil {
		t.Fatal(err)
	}
	statuses := map[string]string{}
	for _, r := range d.Tests {
		statuses[r.Label] = r.Status
	}
	for label, want := range map[string]string{"//tests:fail": "FAILED", "//tests:timeout": "TIMEOUT", "//tests:flaky": "FLAKY"} {
		if statuses[label] != want {
			t.Errorf("%s: %q on the page, want %q", label, statuses[label], want)
		}
	}
	if !strings.Contains(body, "TESTS_FAILED") || !strings.Contains(body, `<dt>list</dt><dd><a href="/">all invocations</a>`) {
		t.Errorf("the page lacks TESTS_FAILED or its link to the list")
	}
	// The same page by its key; bes report's page of the same stream is
	// the same but for the link.
	if code, byKey, _ := get(t, h, "/invocation/"+mixed.Key); code != 200 || byKey != body {
		t.Errorf("/invocation/KEY: %d, same page %v", code, byKey == body)
	}
	report, stderr, rc := runCLI(t, "report", "--store", dir, "--log-lines", "0", "--test-log-bytes", "0", mixed.Key)
	if rc != ExitTestFail {
		t.Fatalf("report: exit %d: %s", rc, stderr)
	}
	if strings.Replace(body, "\n"+`<div><dt>list</dt><dd><a href="/">all invocations</a></dd></div>`, "", 1) != report {
		t.Errorf("the served page is not bes report's page with a link to the list")
	}

	for _, path := range []string{"/invocation/no-such-invocation", "/invocation/" + mixed.InvocationID[:8], "/elsewhere"} {
		if code, _, _ := get(t, h, path); code != 404 {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}

	// A stream cut short (or still being received) reloads itself.
	dir2, tools2 := webStore(t, "truncated-test_mixed.bep")
	h2 := webHandler(t, dir2, web.Options{})
	code, body, hdr = get(t, h2, "/invocation/"+tools2[0].InvocationID)
	if code != 200 || hdr.Get("Refresh") != "5" || !strings.Contains(body, "did not finish") {
		t.Errorf("the page of a stream not complete: %d, Refresh %q, did not finish %v", code, hdr.Get("Refresh"), strings.Contains(body, "did not finish"))
	}
	if _, body, hdr := get(t, h2, "/"); hdr.Get("Refresh") != "5" || !strings.Contains(body, `<td class="unfinished">incomplete</td>`) {
		t.Errorf("the list of an incomplete stream: Refresh %q", hdr.Get("Refresh"))
	}
}

// sourceOf is the source bes streams gives a stored stream.
func sourceOf(t *testing.T, dir, key string) string {
	t.Helper()
	out, _, code := runCLI(t, "streams", "--store", dir, "--format", "json", "--match", "^"+regexp.QuoteMeta(key)+"$")
	if code != 0 {
		t.Fatalf("streams: exit %d", code)
	}
	var s []struct {
		Source string `json:"source"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || len(s) != 1 {
		t.Fatalf("streams %s: %v %s", key, err, out)
	}
	return s[0].Source
}

// TestWebHistory: /history/LABEL shows bes history's runs and summary.
func TestWebHistory(t *testing.T) {
	dir, _ := webStore(t, webFiles...)
	h := webHandler(t, dir, web.Options{})
	out, stderr, code := runCLI(t, "history", "--store", dir, "--format", "json", "//tests:flaky")
	if code != 0 {
		t.Fatalf("history: exit %d: %s", code, stderr)
	}
	var hist struct {
		Total  int `json:"total_runs"`
		Passed int `json:"passed"`
		Cached int `json:"cached"`
		Flaky  int `json:"flaky"`
		Runs   []struct {
			Status       string `json:"status"`
			FromCache    bool   `json:"from_cache"`
			InvocationID string `json:"invocation_id"`
		}
	}
	if err := json.Unmarshal([]byte(out), &hist); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range hist.Runs {
		want = append(want, r.InvocationID)
	}
	for _, path := range []string{"/history//tests:flaky", "/history/tests:flaky", "/history?label=%2F%2Ftests%3Aflaky"} {
		code, body, _ := get(t, h, path)
		if code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		if got := listed(body); len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s lists %q, want bes history's %q", path, got, want)
		}
		summary := fmt.Sprintf("%d runs: %d passed (%d from cache), %d flaky", hist.Total, hist.Passed, hist.Cached, hist.Flaky)
		if !strings.Contains(body, "History of //tests:flaky") || !strings.Contains(body, summary) {
			t.Errorf("%s: no summary %q", path, summary)
		}
		// A run passed from a cache reads as bes history prints it (issue 15).
		cached := 0
		for _, r := range hist.Runs {
			if r.FromCache {
				cached++
			}
		}
		if cached == 0 || strings.Count(body, "PASSED (cached)") != cached {
			t.Errorf("%s: %d rows PASSED (cached), want bes history's %d", path, strings.Count(body, "PASSED (cached)"), cached)
		}
	}
	if code, _, _ := get(t, h, "/history//tests:no_such_test"); code != 404 {
		t.Errorf("a label never run: %d, want 404", code)
	}
}

// TestWebAuth: with a token, every page wants it as "Authorization:
// Bearer"; without, or with another, 401.
func TestWebAuth(t *testing.T) {
	dir, tools := webStore(t, "test_mixed.bep")
	h := webHandler(t, dir, web.Options{Token: "s3cret-token"})
	for _, path := range []string{"/", "/invocation/" + tools[0].InvocationID, "/history//tests:flaky", "/nothing"} {
		if code, _, hdr := get(t, h, path); code != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s without a token: %d, want 401 asking for a bearer token", path, code)
		}
		if code, _, _ := get(t, h, path, "Authorization", "Bearer wrong"); code != 401 {
			t.Errorf("%s with another token: %d, want 401", path, code)
		}
		if code, _, _ := get(t, h, path, "Authorization", "s3cret-token"); code != 401 {
			t.Errorf("%s with the token but not as Bearer: %d, want 401", path, code)
		}
	}
	if code, body, _ := get(t, h, "/", "Authorization", "Bearer s3cret-token"); code != 200 || !slices.Equal(listed(body), idsOf(tools)) {
		t.Errorf("/ with the token: %d, lists %q", code, listed(body))
	}
}

// startServeHTTP runs bes serve with opts (its store, --http and
// security; the rest set here) and returns the address of its pages, its
// log, and the function that stops it and checks it ended well.
func startServeHTTP(t *testing.T, opts serveOptions) (string, *syncBuffer, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := &syncBuffer{}
	httpc := make(chan string, 1)
	done := make(chan error, 1)
	opts.Listen, opts.MaxEventSize, opts.Grace = "127.0.0.1:0", 1<<20, 5*time.Second
	opts.OnHTTPListen = func(a string) { httpc <- a }
	go func() { done <- runServe(ctx, opts, log) }()
	var addr string
	select {
	case addr = <-httpc:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v\n%s", err, log.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve did not start")
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return addr, log, stop
}

// fetchPage gets url with client, with the Authorization header auth
// unless "".
func fetchPage(t *testing.T, client *http.Client, url, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestServeHTTP: bes serve --http serves the pages beside the gRPC side,
// with its token and its TLS; --http on an address other machines reach
// needs TLS or --insecure, as --listen, and a warning without a token.
func TestServeHTTP(t *testing.T) {
	dir, tools := webStore(t, "test_mixed.bep")
	page := "/invocation/" + tools[0].InvocationID
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("page-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, log, stop := startServeHTTP(t, serveOptions{Store: dir, HTTP: "127.0.0.1:0", TokenFile: tok})
	if code, _ := fetchPage(t, http.DefaultClient, "http://"+addr+page, ""); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, body := fetchPage(t, http.DefaultClient, "http://"+addr+page, "Bearer page-token"); code != 200 || !strings.Contains(body, "TESTS_FAILED") {
		t.Errorf("with the token: %d", code)
	}
	stop()
	if !strings.Contains(log.String(), "bes: serving pages on http://"+addr+"/ (bearer token)\n") {
		t.Errorf("log lacks the pages' line:\n%s", log.String())
	}

	// TLS: the pages are https, with the certificate of the gRPC side.
	cert, key := tlsFiles(t)
	pemBytes, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	addr, log, stop = startServeHTTP(t, serveOptions{Store: dir, HTTP: "127.0.0.1:0", TLSCert: cert, TLSKey: key})
	if code, body := fetchPage(t, client, "https://"+addr+"/", ""); code != 200 || !strings.Contains(body, tools[0].InvocationID) {
		t.Errorf("https: %d", code)
	}
	if code, _ := fetchPage(t, http.DefaultClient, "http://"+addr+"/", ""); code != 400 {
		t.Errorf("plain http to the TLS pages: %d, want 400", code)
	}
	stop()
	if !strings.Contains(log.String(), "bes: serving pages on https://"+addr+"/ (TLS)\n") {
		t.Errorf("log lacks the pages' line:\n%s", log.String())
	}

	// Reachable from other machines: TLS or --insecure, and a warning
	// without a token.
	_, stderr, code := runCLI(t, "serve", "--store", dir, "--http", "0.0.0.0:0")
	if code != ExitUsage || !strings.Contains(stderr, "--http 0.0.0.0:0 is not a loopback address") {
		t.Errorf("--http 0.0.0.0:0 without TLS: exit %d: %s", code, stderr)
	}
	addr, log, stop = startServeHTTP(t, serveOptions{Store: dir, HTTP: "0.0.0.0:0", TLSCert: cert, TLSKey: key})
	stop()
	if !strings.Contains(log.String(), "bes: warning: "+addr+" is reachable from other machines and pages need no token") {
		t.Errorf("no warning for pages open to other machines:\n%s", log.String())
	}
}

// TestServeHTTPLive: the page of a stream bes serve is receiving shows the
// events stored so far and reloads; once the stream is finished it shows
// the whole invocation and reloads no more.
func TestServeHTTPLive(t *testing.T) {
	evs := readToolOBEs(t)
	grpcc := make(chan string, 1)
	addr, _, _ := startServeHTTP(t, serveOptions{Store: filepath.Join(t.TempDir(), "store"), HTTP: "127.0.0.1:0", OnListen: func(a string) { grpcc <- a }})
	grpcAddr := <-grpcc
	id := strings.TrimPrefix(besToolKey, "0fff9624-6330-4348-b7e6-0d35256338b9.3.")
	page := "http://" + addr + "/invocation/" + id

	// The first half: Bazel is still building.
	half := len(evs) / 2
	cancel, cc := sendAcked(t, grpcAddr, evs[:half], half)
	resp, err := http.Get(page)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Refresh") != "5" || !strings.Contains(string(body), "did not finish") || strings.Contains(string(body), "TESTS_FAILED") {
		t.Errorf("half the stream: %d, Refresh %q, did not finish %v", resp.StatusCode, resp.Header.Get("Refresh"), strings.Contains(string(body), "did not finish"))
	}
	if code, list := fetchPage(t, http.DefaultClient, "http://"+addr+"/", ""); code != 200 || !strings.Contains(list, `<td class="unfinished">incomplete</td>`) {
		t.Errorf("the list does not show the stream being received as incomplete")
	}
	cancel()
	cc.Close()

	// The rest, on a new call as Bazel reconnects: the stream finishes.
	cancel, cc = sendAcked(t, grpcAddr, evs, len(evs))
	defer cc.Close()
	defer cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(page)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Refresh") == "" && strings.Contains(string(body), "TESTS_FAILED") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the finished stream's page: Refresh %q, TESTS_FAILED %v", resp.Header.Get("Refresh"), strings.Contains(string(body), "TESTS_FAILED"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWebSameInvocation: a run's .bep and its BES capture are two tool
// streams of one invocation id: the list links each by its key, and the
// id names the one with more events (of two as long, the first by key).
func TestWebSameInvocation(t *testing.T) {
	dir, tools := webStore(t, "bes_test_mixed.bep", "bes_test_mixed.obe")
	if len(tools) != 2 || tools[0].InvocationID != tools[1].InvocationID {
		t.Fatalf("stored %v: want two tool streams of one invocation", tools)
	}
	h := webHandler(t, dir, web.Options{})
	_, body, _ := get(t, h, "/")
	got := listed(body)
	slices.Sort(got)
	want := []string{tools[0].Key, tools[1].Key}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the list links to %q, want the keys %q", got, want)
	}
	pages := map[string]string{}
	for _, k := range want {
		code, page, _ := get(t, h, "/invocation/"+k)
		if code != 200 || !strings.Contains(page, "TESTS_FAILED") {
			t.Errorf("/invocation/%s: %d", k, code)
		}
		pages[k] = page
	}
	out, _, _ := runCLI(t, "streams", "--store", dir, "--format", "json", "--match", ".3.")
	var counts []struct {
		Key    string `json:"key"`
		Events int    `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &counts); err != nil || len(counts) != 2 {
		t.Fatalf("streams: %v %s", err, out)
	}
	if pages[want[0]] == pages[want[1]] {
		t.Fatal("the two streams' pages are the same: the test cannot tell them apart")
	}
	most := counts[0] // bes streams lists them by key
	if counts[1].Events > most.Events {
		most = counts[1]
	}
	if _, page, _ := get(t, h, "/invocation/"+tools[0].InvocationID); page != pages[most.Key] {
		t.Errorf("/invocation/ID is not the page of %s, the stream with more events", most.Key)
	}
}
