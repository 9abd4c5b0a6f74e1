package store_test

import (
	"testing"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/storetest"
)

// TestMemoryConformance runs the storage contract's suite on BuildGrid's
// in-memory storage through the Memory adapter; it keeps facts, so the
// suite's Facts case runs.
func TestMemoryConformance(t *testing.T) {
	if _, ok := any(store.NewMemory(nil, nil)).(store.FactsReader); !ok {
		t.Error("Memory is no store.FactsReader")
	}
	storetest.Run(t, func(t *testing.T) store.Backend { return store.NewMemory(nil, nil) })
}
