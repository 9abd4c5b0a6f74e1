package commands

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// teamCatalog returns the URL of an empty PostgreSQL catalog for a team
// store (issue 14): a schema of its own in the database of
// $BES_TEST_POSTGRES (testdata/services/start.sh), dropped at the end.
// Without it the test fails on CI and skips elsewhere (and with
// BES_TEST_NO_SERVICES=1), as store/postgres's tests do.
func teamCatalog(t *testing.T) string {
	t.Helper()
	base := os.Getenv("BES_TEST_POSTGRES")
	if base == "" {
		switch {
		case os.Getenv("BES_TEST_NO_SERVICES") == "1":
			t.Skip("BES_TEST_NO_SERVICES=1: skipping the team store test (PostgreSQL on loopback)")
		case os.Getenv("CI") != "":
			t.Fatal(`BES_TEST_POSTGRES is not set on CI: .ci/run starts the services with eval "$(testdata/services/start.sh)"`)
		}
		t.Skip(`BES_TEST_POSTGRES is not set: start PostgreSQL and S3 on loopback with eval "$(testdata/services/start.sh)" (BES_TEST_NO_SERVICES=1 skips on purpose)`)
	}
	ctx := context.Background()
	var b [6]byte
	rand.Read(b[:])
	schema := "cli_" + hex.EncodeToString(b[:])
	exec := func(sql string) {
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Fatalf("BES_TEST_POSTGRES: %v", err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec("CREATE SCHEMA " + schema)
	t.Cleanup(func() { exec("DROP SCHEMA " + schema + " CASCADE") })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestTeamStoreCLI runs the commands on a team store (PostgreSQL catalog,
// bodies in a directory) and wants what they print on a directory store:
// the golden files of TestCLI, and the recording back byte for byte.
func TestTeamStoreCLI(t *testing.T) {
	catalog := teamCatalog(t)
	td := func(name string) string { return filepath.Join("..", "testdata", name) }
	s, blobs := "--store="+catalog, "--blobs="+t.TempDir()
	golden := func(name, got string) {
		t.Helper()
		want, err := os.ReadFile(filepath.Join("..", "testdata", "golden", name))
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("team store output differs from %s:\n%s", name, lineDiff(string(want), got))
		}
	}
	run := func(code int, args ...string) string {
		t.Helper()
		out, errs, c := runCLI(t, args...)
		if c != code {
			t.Fatalf("bes %s: exit %d, want %d; stderr:\n%s", strings.Join(args, " "), c, code, errs)
		}
		return out
	}
	golden("ingest.txt", run(ExitOK, "ingest", s, blobs, td("test_mixed.bep"), td("build_keep_going_fail.bep"), td("bes_test_mixed.obe"), td("bes_test_mixed.lifecycle.obe")))
	if out := run(ExitOK, "ingest", s, blobs, td("test_mixed.bep")); !strings.Contains(out, "unchanged") {
		t.Errorf("ingest again: %s", out)
	}
	golden("streams_store.txt", run(ExitOK, "streams", s, blobs))
	golden("streams_match_lifecycle.json", run(ExitOK, "streams", s, blobs, "--match", `\.1\.`, "--format", "json"))
	golden("dump_bes_invocation.txt", run(ExitOK, "dump", s, blobs, "8b58a6b7-1857-43e5-b701-ebbabc33fc5c"))
	rec, err := os.ReadFile(td("bes_test_mixed.obe"))
	if err != nil {
		t.Fatal(err)
	}
	if out := run(ExitOK, "dump", s, blobs, "--format", "obe", "0fff9624-6330-4348-b7e6-0d35256338b9"); !bytes.Equal([]byte(out), rec) {
		t.Errorf("dump --format obe: %d bytes, the recording %d", len(out), len(rec))
	}
	// BES_BLOBS instead of --blobs.
	t.Setenv("BES_BLOBS", strings.TrimPrefix(blobs, "--blobs="))
	golden("streams_store.txt", run(ExitOK, "streams", s))

	// A team store without its blobs, and --blobs without a team store.
	t.Setenv("BES_BLOBS", "")
	if _, errs, c := runCLI(t, "streams", s); c != ExitUsage || !strings.Contains(errs, "needs --blobs") {
		t.Errorf("postgres store without --blobs: exit %d, %q", c, errs)
	}
	if _, errs, c := runCLI(t, "streams", "--store", t.TempDir(), blobs); c != ExitUsage || !strings.Contains(errs, "--blobs goes with a postgres://") {
		t.Errorf("--blobs with a directory store: exit %d, %q", c, errs)
	}
	// --blobs is a command's own: the next command does not inherit it.
	run(ExitOK, "streams", "--store", t.TempDir())
}
