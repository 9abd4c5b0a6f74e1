package bepjson

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	buildpb "google.golang.org/genproto/googleapis/devtools/build/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/bepfile"
	"github.com/bes-cli/bes/bepfile/bepgen"
	"github.com/bes-cli/bes/bepfile/bepgen/naive"
)

// readItems reads every event of an input, in order.
func readItems(t testing.TB, r io.Reader, name string) []Item {
	t.Helper()
	rd, err := bepfile.NewReader(r, name, bepfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var items []Item
	for {
		s, ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return items
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		items = append(items, Item{Stream: s, Event: ev})
	}
}

// sliceSource is the Source of items.
func sliceSource(items []Item) Source {
	return func(fn func(Item) error) error {
		for _, it := range items {
			if err := fn(it); err != nil {
				return err
			}
		}
		return nil
	}
}

// testInputs are the real files of testdata/ and a generated BES capture
// of three streams, by name.
func testInputs(t *testing.T) map[string][]Item {
	var capture bytes.Buffer
	if _, err := bepgen.WriteOBE(&capture, bepgen.CaptureConfig{Seed: 1, Streams: 3, MinTargets: 20, MaxTargets: 40}); err != nil {
		t.Fatal(err)
	}
	inputs := map[string][]Item{"capture.obe": readItems(t, &capture, "capture.obe")}
	for _, name := range []string{"test_mixed.bep", "build_keep_going_fail.bep", "bes_test_mixed.obe", "bes_test_mixed.lifecycle.obe", "test_cached.json"} {
		f, err := os.Open(filepath.Join("..", "..", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		inputs[name] = readItems(t, f, name)
		f.Close()
	}
	return inputs
}

// TestFastPath checks that the encoder's fast path writes the same JSON
// values as protojson of the whole OrderedBuildEvent.
func TestFastPath(t *testing.T) {
	for name, items := range testInputs(t) {
		enc := NewEncoder(nil)
		n, fast := 0, 0
		for _, it := range items {
			s, ev := it.Stream, it.Event
			got, rep := enc.Append(nil, s, ev)
			if rep.Bad() {
				t.Fatalf("%s: event %d: %+v", name, ev.Seq, rep)
			}
			obe, err := ev.OrderedBuildEvent(s)
			if err != nil {
				t.Fatal(err)
			}
			want, err := Marshal(obe)
			if err != nil {
				t.Fatal(err)
			}
			var g, w buildpb.OrderedBuildEvent
			if err := protojson.Unmarshal(got, &g); err != nil {
				t.Fatalf("%s: event %d: invalid JSON %v:\n%s", name, ev.Seq, err, got)
			}
			if err := protojson.Unmarshal(want, &w); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&g, &w) {
				t.Fatalf("%s: event %d:\n got %s\nwant %s", name, ev.Seq, got, want)
			}
			n++
			if _, _, ok := enc.appendFast(nil, s, ev); ok && ev.IsBazel() {
				fast++
			}
		}
		if n == 0 || fast == 0 && !strings.Contains(name, "lifecycle") {
			t.Errorf("%s: %d of %d events took the fast path", name, fast, n)
		}
	}
}

// TestWriteNDJSONOrder checks that WriteNDJSON, whose workers encode
// batches in parallel, writes every item's line in the order of the
// source, as one encoder does, and reports each event once, in order.
func TestWriteNDJSONOrder(t *testing.T) {
	for name, items := range testInputs(t) {
		// A skipped frame among the events, as a reader reports it.
		bad := &bepfile.Error{Name: name, Offset: 42, Index: 3, Err: errors.New("invalid varint")}
		items := append(items[:len(items)/2:len(items)/2], append([]Item{{Bad: bad}}, items[len(items)/2:]...)...)
		var want []byte
		enc := NewEncoder(nil)
		for _, it := range items {
			want, _ = enc.AppendItem(want, it)
			want = append(want, '\n')
		}
		var got bytes.Buffer
		var reported []*bepfile.Event
		src := sliceSource(items)
		err := WriteNDJSON(context.Background(), &got, src, Options{Report: func(_ *bepfile.Stream, ev *bepfile.Event, _ *Report) {
			reported = append(reported, ev)
		}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("%s: WriteNDJSON differs from one encoder's lines (%d against %d bytes)", name, got.Len(), len(want))
		}
		if !strings.Contains(got.String(), `{"error":"invalid varint","file":"`+name+`","offset":42,"index":3}`+"\n") {
			t.Errorf("%s: no error object of the skipped frame", name)
		}
		if len(reported) != len(items)-1 {
			t.Fatalf("%s: %d events reported, want %d", name, len(reported), len(items)-1)
		}
		j := 0
		for _, it := range items {
			if it.Event != nil {
				if reported[j] != it.Event {
					t.Fatalf("%s: report %d is of another event", name, j)
				}
				j++
			}
		}
	}
}

// TestWriteNDJSONSourceError checks that an error of the source ends the
// writing with that error, after the lines of the items before it.
func TestWriteNDJSONSourceError(t *testing.T) {
	items := testInputs(t)["test_mixed.bep"]
	stop := errors.New("read failed")
	src := func(fn func(Item) error) error {
		if err := sliceSource(items[:3])(fn); err != nil {
			return err
		}
		return stop
	}
	var got bytes.Buffer
	if err := WriteNDJSON(context.Background(), &got, src, Options{}); !errors.Is(err, stop) {
		t.Fatalf("err = %v, want %v", err, stop)
	}
	if n := strings.Count(got.String(), "\n"); n != 3 {
		t.Errorf("%d lines before the error, want 3", n)
	}
}

// BenchmarkWriteNDJSON writes a generated binary BEP file of about 16 MB
// as NDJSON ($BES_BENCH_SIZE is not read: the command's BenchmarkDumpNDJSON
// measures the whole dump), beside naive: protodelim and protojson of each
// event.
func BenchmarkWriteNDJSON(b *testing.B) {
	var file bytes.Buffer
	if _, err := bepgen.WriteBEP(&file, bepgen.Config{Seed: 1, Size: 16e6}); err != nil {
		b.Fatal(err)
	}
	b.Run("bes", func(b *testing.B) {
		items := readItems(b, bytes.NewReader(file.Bytes()), "gen.bep")
		src := sliceSource(items)
		b.SetBytes(int64(file.Len()))
		b.ReportAllocs()
		for b.Loop() {
			bw := bufio.NewWriterSize(io.Discard, 64<<10)
			if err := WriteNDJSON(context.Background(), bw, src, Options{}); err != nil {
				b.Fatal(err)
			}
			bw.Flush()
		}
	})
	b.Run("naive", func(b *testing.B) {
		b.SetBytes(int64(file.Len()))
		b.ReportAllocs()
		for b.Loop() {
			if err := naive.DumpNDJSON(bytes.NewReader(file.Bytes()), io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}
