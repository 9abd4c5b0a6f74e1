package store_test

import (
	"testing"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/storetest"
)

// TestMemoryConformance runs the storage contract's suite on BuildGrid's
// in-memory storage through the Memory adapter.
func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend { return store.NewMemory(nil, nil) })
}
