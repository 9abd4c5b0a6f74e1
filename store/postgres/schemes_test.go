package postgres

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCloudSchemesCompiledIn: gs:// and azblob:// reach their
// gocloud.dev drivers (gcsblob, azureblob), which read credentials as
// their SDKs do. Offline, quickly, with no network: without credentials
// opening such a bucket fails with an error that says what is missing,
// never gocloud.dev's "no driver registered" for an unknown scheme; with
// the SDKs' own emulator settings pointed at a closed loopback port, the
// bucket opens and a read fails on the connection, in the driver.
func TestCloudSchemesCompiledIn(t *testing.T) {
	home := t.TempDir()
	// No credentials anywhere the SDKs look: no gcloud or Azure CLI
	// configuration, an application-credentials file that does not
	// exist, the GCE metadata server on a closed port.
	t.Setenv("HOME", home)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(home, "no-such-credentials.json"))
	t.Setenv("GCE_METADATA_HOST", "127.0.0.1:1")
	for _, v := range []string{"STORAGE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST_GRPC", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY",
		"AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGEBLOB_CONNECTIONSTRING", "AZURE_STORAGE_DOMAIN",
		"AZURE_STORAGE_PROTOCOL", "AZURE_STORAGE_IS_LOCAL_EMULATOR"} {
		t.Setenv(v, "")
	}
	notUnknown := func(t *testing.T, raw string, err error) {
		t.Helper()
		if s := err.Error(); strings.Contains(s, "no driver registered") || strings.Contains(s, "unknown scheme") {
			t.Fatalf("%s: the driver is not compiled in: %v", raw, err)
		}
	}
	quick := func(t *testing.T, raw string, start time.Time, err error) {
		t.Helper()
		if took := time.Since(start); errors.Is(err, context.DeadlineExceeded) || took > 8*time.Second {
			t.Fatalf("%s: waited %v (on the network?): %v", raw, took, err)
		}
	}
	for _, c := range []struct {
		url, want string
		// emulated is the bucket on a closed loopback port, by the SDK's
		// own settings (azureblob reads its environment once, at its first
		// use, so the Azure one is in the URL's parameters).
		emulated  string
		emulate   map[string]string
		wantReach string // what the read's error says
	}{
		{"gs://bes-test-bucket/team", "no Google credentials",
			"gs://bes-test-bucket/team", map[string]string{"STORAGE_EMULATOR_HOST": "127.0.0.1:1"}, "127.0.0.1:1"},
		{"azblob://bes-test-container/team", "AccountName is required",
			"azblob://bes-test-container/team?storage_account=devstoreaccount1&localemu=true&protocol=http&domain=127.0.0.1:1", nil, "non-TLS"},
	} {
		scheme := strings.SplitN(c.url, ":", 2)[0]
		t.Run(scheme+"/no-credentials", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			b, err := openBucket(ctx, c.url)
			t.Logf("%s: %v (%v)", c.url, err, time.Since(start).Round(time.Millisecond))
			if err == nil {
				b.b.Close()
				t.Fatalf("%s: opened without credentials", c.url)
			}
			notUnknown(t, c.url, err)
			quick(t, c.url, start, err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: %v, want an error saying %q", c.url, err, c.want)
			}
		})
		t.Run(scheme+"/emulator", func(t *testing.T) {
			for k, v := range c.emulate {
				t.Setenv(k, v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			b, err := openBucket(ctx, c.emulated)
			if err != nil {
				t.Fatalf("%s with %v: %v", c.emulated, c.emulate, err)
			}
			defer b.b.Close()
			// gcsblob retries a refused connection until its context ends.
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			defer rcancel()
			_, err = b.open(rctx, "streams/x.bess")
			t.Logf("%s: read: %v (%v)", c.emulated, err, time.Since(start).Round(time.Millisecond))
			if err == nil {
				t.Fatalf("%s: read a blob from a closed port", c.emulated)
			}
			notUnknown(t, c.emulated, err)
			if took := time.Since(start); took > 8*time.Second {
				t.Fatalf("%s: waited %v: %v", c.emulated, took, err)
			}
			if !strings.Contains(err.Error(), c.wantReach) {
				t.Errorf("%s: %v, want an error of the driver saying %q", c.emulated, err, c.wantReach)
			}
		})
	}
}
