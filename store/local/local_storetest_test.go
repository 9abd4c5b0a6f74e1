package local

import (
	"path/filepath"
	"testing"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/storetest"
)

// TestConformance runs the storage contract's suite on a store directory.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend {
		dir := filepath.Join(t.TempDir(), "store")
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		return reopenable{s}
	})
}

// reopenable is a Store that tells the suite it can open a second Store
// on its directory, as another process would (storetest.Reopener).
type reopenable struct{ *Store }

func (r reopenable) Reopen(t *testing.T) store.Backend {
	s, err := Open(r.Dir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}
