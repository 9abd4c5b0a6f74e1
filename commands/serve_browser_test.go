package commands

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestServeHTTPBrowser: bes serve --http on 127.0.0.1 in Chromium (the
// browser of report_browser_test.go): the list shows the stored
// invocations, newest first, and its link opens the page of test_mixed,
// which shows //tests:fail, //tests:timeout and //tests:flaky with their
// statuses and TESTS_FAILED, and links back to the list; no request
// leaves the server's origin.
func TestServeHTTPBrowser(t *testing.T) {
	dir, tools := webStore(t, webFiles...)
	var mixed string
	for _, s := range tools {
		if s.Key == s.InvocationID+".3."+s.InvocationID && strings.HasSuffix(sourceOf(t, dir, s.Key), "test_mixed.bep") {
			mixed = s.InvocationID
		}
	}
	if mixed == "" {
		t.Fatal("test_mixed.bep's stream is not stored")
	}
	ctx := browser(t)

	sctx, cancel := context.WithCancel(context.Background())
	httpc, done, log := make(chan string, 1), make(chan error, 1), &syncBuffer{}
	opts := serveOptions{Store: dir, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", MaxEventSize: 1 << 20, Grace: 5 * time.Second,
		OnHTTPListen: func(a string) { httpc <- a }}
	go func() { done <- runServe(sctx, opts, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	var addr string
	select {
	case addr = <-httpc:
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, log.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	v := &pageVisit{origin: "http://" + addr, csp: map[string]string{}, ids: map[string]string{}}
	err := chromedp.Listen(ctx, func(ev any) {
		v.mu.Lock()
		defer v.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			v.ids[string(e.RequestID)] = e.Request.URL
			v.urls = append(v.urls, e.Request.URL)
		case *network.EventLoadingFailed:
			v.csp[string(e.RequestID)] = string(e.BlockedReason)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}

	// The list.
	if err := chromedp.Do(ctx, chromedp.Navigate(v.origin+"/"), chromedp.WaitReady(chromedp.CSS(`#invocations`))); err != nil {
		t.Fatalf("opening the list: %v", err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](`Array.from(document.querySelectorAll('#invocations tbody tr')).map(r => [r.cells[6].innerText, r.cells[2].innerText, r.cells[1].innerText])`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(tools) {
		t.Fatalf("the list shows %d rows, want the %d stored invocations: %q", len(rows), len(tools), rows)
	}
	for i, s := range tools {
		if want := []string{s.InvocationID, s.Result, s.Command}; strings.Join(rows[i], " ") != strings.Join(want, " ") {
			t.Errorf("row %d: %q, want %q (newest first)", i, rows[i], want)
		}
	}
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := distinctColors(t, shot); n < 20 {
		t.Errorf("the list's screenshot has %d colours: blank?", n)
	}

	// Its link to test_mixed, followed as a person would.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`a[href="/invocation/`+mixed+`"]`)),
		chromedp.WaitReady(chromedp.CSS(`html[data-ready="true"]`)),
	); err != nil {
		t.Fatalf("following the link to %s: %v", mixed, err)
	}
	trows, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](`Array.from(document.querySelectorAll('#tests-table tbody tr')).map(r => [r.cells[1].innerText, r.cells[0].innerText])`))
	if err != nil {
		t.Fatal(err)
	}
	header, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#header`)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range trows {
		got[r[0]] = r[1]
	}
	for label, want := range map[string]string{"//tests:fail": "FAILED", "//tests:timeout": "TIMEOUT", "//tests:flaky": "FLAKY"} {
		if got[label] != want {
			t.Errorf("%s: the page shows %q, want %q", label, got[label], want)
		}
	}
	if !strings.Contains(header, "TESTS_FAILED") || !strings.Contains(header, "all invocations") {
		t.Errorf("header %q lacks TESTS_FAILED or the link to the list", header)
	}
	shot, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := distinctColors(t, shot); n < 100 {
		t.Errorf("the page's screenshot has %d colours: blank?", n)
	}

	// And back.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#header a[href="/"]`)), chromedp.WaitReady(chromedp.CSS(`#invocations`))); err != nil {
		t.Fatalf("the link back to the list: %v", err)
	}
	if out := v.outside(); len(out) > 0 {
		t.Errorf("requests left the server's origin: %q", out)
	}
}
