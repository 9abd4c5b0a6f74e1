package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"gocloud.dev/blob"
)

// The services the tests need run on loopback, started by
// testdata/services/start.sh (PostgreSQL from Debian's package, versitygw
// for S3), which prints BES_TEST_POSTGRES and BES_TEST_S3; .ci/run starts
// them. Without them a test fails on CI (CI set), and skips elsewhere,
// saying how to start them; BES_TEST_NO_SERVICES=1 skips on purpose.

// serviceURL returns the environment variable name, or ends the test.
func serviceURL(t testing.TB, name string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	switch {
	case os.Getenv("BES_TEST_NO_SERVICES") == "1":
		t.Skipf("BES_TEST_NO_SERVICES=1: skipping the test that needs %s (PostgreSQL / S3 on loopback)", name)
	case os.Getenv("CI") != "":
		t.Fatalf("%s is not set on CI: .ci/run starts the services with eval \"$(testdata/services/start.sh)\" (or set BES_TEST_NO_SERVICES=1 to skip)", name)
	}
	t.Skipf("%s is not set: start PostgreSQL and S3 on loopback with eval \"$(testdata/services/start.sh)\" (BES_TEST_NO_SERVICES=1 skips on purpose)", name)
	return ""
}

func randomName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// newCatalog returns the URL of an empty catalog: a schema of its own in
// the test database (search_path), dropped when the test ends.
func newCatalog(t testing.TB) string {
	t.Helper()
	base := serviceURL(t, "BES_TEST_POSTGRES")
	ctx := context.Background()
	c, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("BES_TEST_POSTGRES: %v", err)
	}
	schema := randomName("t_")
	if _, err := c.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		c.Close(ctx)
		t.Fatal(err)
	}
	c.Close(ctx)
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Error(err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// newS3Blobs returns the URL of an empty prefix of the test bucket, whose
// blobs are deleted when the test ends.
func newS3Blobs(t testing.TB) string {
	t.Helper()
	base := serviceURL(t, "BES_TEST_S3")
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + randomName("run-")
	raw := u.String()
	t.Cleanup(func() {
		s, err := BlobsURL(raw)
		if err != nil {
			t.Error(err)
			return
		}
		ctx := context.Background()
		b, err := blob.OpenBucket(ctx, s)
		if err != nil {
			t.Error(err)
			return
		}
		defer b.Close()
		it := b.List(nil)
		for {
			o, err := it.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Error(err)
				return
			}
			b.Delete(ctx, o.Key)
		}
	})
	return raw
}
