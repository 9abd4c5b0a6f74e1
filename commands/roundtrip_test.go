package commands

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestStoreRoundTrip ingests OrderedBuildEvent files and exports them again:
// `bes dump --format obe` of the stored stream is byte for byte the input,
// although the store keeps only a compact form of each event.
func TestStoreRoundTrip(t *testing.T) {
	storeDir := t.TempDir()
	in := filepath.Join("..", "testdata", "bes_test_mixed.obe")
	if _, stderr, code := runCLI(t, "ingest", "--store", storeDir, in); code != 0 {
		t.Fatalf("ingest: exit %d: %s", code, stderr)
	}
	out, stderr, code := runCLI(t, "dump", "--store", storeDir, "--format", "obe", "0fff9624-6330-4348-b7e6-0d35256338b9.3.")
	if code != 0 {
		t.Fatalf("dump: exit %d: %s", code, stderr)
	}
	want, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal([]byte(out), want) {
		t.Fatalf("exported %d bytes, differ from the %d bytes ingested", len(out), len(want))
	}

	// The store holds less than the input: the envelope is kept once.
	var size int64
	entries, _ := os.ReadDir(storeDir)
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".bess" {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			size += fi.Size()
		}
	}
	if size == 0 || size > int64(len(want))*3/4 {
		t.Errorf("stream file is %d bytes for %d bytes of OrderedBuildEvents; want at most 75%%", size, len(want))
	}

	// Files read directly (no store) export the same bytes.
	direct, _, code := runCLI(t, "dump", "--format", "obe", in)
	if code != 0 || direct != out {
		t.Errorf("dump of the file directly differs from the stored stream (exit %d)", code)
	}
}
