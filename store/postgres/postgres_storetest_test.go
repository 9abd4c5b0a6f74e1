package postgres

import (
	"context"
	"testing"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/storetest"
)

// TestConformanceFile runs the storage contract's suite on a PostgreSQL
// catalog with the bodies in a directory (file://).
func TestConformanceFile(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend {
		return open(t, newCatalog(t), "file://"+t.TempDir())
	})
}

// TestConformanceS3 runs the suite on a PostgreSQL catalog with the bodies
// in an S3-compatible server (versitygw).
func TestConformanceS3(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend {
		return open(t, newCatalog(t), newS3Blobs(t))
	})
}

// open opens a Store that tells the suite it can open a second Store on the
// same catalog and bucket, as another replica would (storetest.Reopener).
func open(t *testing.T, catalog, blobs string) store.Backend {
	t.Helper()
	s, err := Open(context.Background(), catalog, blobs)
	if err != nil {
		t.Fatal(err)
	}
	return reopenable{s, catalog, blobs}
}

type reopenable struct {
	*Store
	catalog, blobs string
}

func (r reopenable) Reopen(t *testing.T) store.Backend {
	s, err := Open(context.Background(), r.catalog, r.blobs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
