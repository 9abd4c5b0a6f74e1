package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protodelim"
)

// readFrames splits a varint-delimited file of testdata/ into its frames.
func readFrames(t testing.TB, name string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	r := bytes.NewReader(data)
	for r.Len() > 0 {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			t.Fatalf("%s: frame %d: %v", name, len(frames), err)
		}
		if n > uint64(r.Len()) {
			break // a truncated last frame
		}
		b := make([]byte, n)
		io.ReadFull(r, b)
		frames = append(frames, b)
	}
	return frames
}

// readOBEs decodes a varint-delimited file of OrderedBuildEvents with
// protodelim, and returns them with their raw frames.
func readOBEs(t testing.TB, name string) ([]*buildpb.OrderedBuildEvent, [][]byte) {
	t.Helper()
	frames := readFrames(t, name)
	f, err := os.Open(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var obes []*buildpb.OrderedBuildEvent
	for {
		obe := &buildpb.OrderedBuildEvent{}
		err := protodelim.UnmarshalFrom(br, obe)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: event %d: %v", name, len(obes), err)
		}
		obes = append(obes, obe)
	}
	if len(obes) != len(frames) {
		t.Fatalf("%s: %d events, %d frames", name, len(obes), len(frames))
	}
	return obes, frames
}
