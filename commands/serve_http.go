package commands

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/bes-cli/bes/commands/render/htmlreport"
	"github.com/bes-cli/bes/commands/web"
	"github.com/bes-cli/bes/store"
)

// The pages of bes serve --http (issue 16): the handlers are package web;
// this file starts them beside the gRPC server, with its rules: TLS when
// --tls-cert is given, the --auth-token-file token as "Authorization:
// Bearer", loopback unless --insecure or TLS.

// httpFlagUsage is the usage of bes serve's --http flag.
const httpFlagUsage = "also serve the store as pages on `HOST:PORT` (the invocations, each invocation's bes report page, a test's history); Bazel's --bes_results_url=http://HOST:PORT/invocation/ then prints a working link. Loopback unless TLS or --insecure, as --listen; the bearer token and TLS apply"

// checkHTTPExposure checks --http by the rules of --listen (checkExposure):
// an address other machines reach needs TLS or --insecure.
func checkHTTPExposure(opts serveOptions) (loopback bool, err error) {
	if opts.HTTP == "" {
		return true, nil
	}
	o := opts
	o.Listen = opts.HTTP
	loop, err := checkExposure(o)
	var ue *usageError
	if errors.As(err, &ue) {
		// Say which flag: checkExposure speaks of --listen.
		return loop, &usageError{msg: strings.Replace(ue.msg, "--listen", "--http", 1), cause: err}
	}
	return loop, err
}

// startHTTP starts serving the pages of st on lis, bound for opts.HTTP
// (nothing when opts.HTTP is ""), logging to log, and returns the function
// that stops it (waiting up to opts.Grace for the requests in progress).
// On an error it closes lis.
func startHTTP(ctx context.Context, opts serveOptions, lis net.Listener, st store.Backend, log io.Writer) (stop func(), err error) {
	if opts.HTTP == "" {
		return func() {}, nil
	}
	defer func() {
		if err != nil {
			lis.Close()
		}
	}()
	loop, err := checkHTTPExposure(opts)
	if err != nil {
		return nil, err
	}
	wo := web.Options{Store: st, Page: servedPage(opts.Store), Log: log}
	if h, ok := st.(store.HistoryReader); ok {
		wo.History = h
	}
	if opts.TokenFile != "" {
		if wo.Token, err = readTokenFile(opts.TokenFile); err != nil {
			return nil, fmt.Errorf("--auth-token-file: %w", err)
		}
	}
	srv := &http.Server{
		Handler:           web.Handler(wo),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		// What net/http says (a TLS handshake that failed) goes to the
		// server's log, not to the process's default logger.
		ErrorLog: stdlog.New(log, "bes: http: ", 0),
	}
	scheme, what := "http", ""
	if opts.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme, what = "https", "TLS"
	}
	if wo.Token != "" {
		what = joinNonEmpty(what, "bearer token")
	}
	done := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			done <- srv.ServeTLS(lis, "", "")
		} else {
			done <- srv.Serve(lis)
		}
	}()
	addr := lis.Addr().String()
	if what != "" {
		fmt.Fprintf(log, "bes: serving pages on %s://%s/ (%s)\n", scheme, addr, what)
	} else {
		fmt.Fprintf(log, "bes: serving pages on %s://%s/\n", scheme, addr)
	}
	if !loop && wo.Token == "" {
		fmt.Fprintf(log, "bes: warning: %s is reachable from other machines and pages need no token (--auth-token-file): anyone who reaches it can read the store\n", addr)
	}
	if opts.OnHTTPListen != nil {
		opts.OnHTTPListen(addr)
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), opts.Grace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(log, "bes: http: %v\n", err)
		}
	}, nil
}

func joinNonEmpty(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}

// servedPage renders the page of a stored tool stream as bes report does
// (reportDataFor, reportConsole, reportPage, htmlreport.Write), with a
// link back to the list first among the header's fields. It shows no
// local log tails (--log-lines 0): they are files of the server's
// machine, not the store's.
func servedPage(storeDir string) func(ctx context.Context, w io.Writer, e *store.Entry) error {
	return func(ctx context.Context, w io.Writer, e *store.Entry) error {
		opts := reportOptions{viewOptions: viewOptions{Store: storeDir, Match: exactKey(e.Key)}}
		// What reading says (a damaged event) is on the page's data as
		// bes report gives it; a served page says it to no terminal.
		invs, _, err := loadInvocations(ctx, "report", opts.viewOptions, nil, io.Discard)
		if err != nil {
			return err
		}
		if len(invs) == 0 {
			return web.ErrNoEvents
		}
		inv := invs[0]
		data, err := reportDataFor(ctx, opts, inv, nil)
		if err != nil {
			return err
		}
		console, err := reportConsole(ctx, opts, inv, nil)
		if err != nil {
			return err
		}
		page := reportPage(inv, data)
		page.Console = console
		page.Fields = append([]htmlreport.Field{{Name: "list", Value: "all invocations", Link: "/"}}, page.Fields...)
		return htmlreport.Write(w, page)
	}
}
