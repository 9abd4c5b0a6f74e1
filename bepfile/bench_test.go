package bepfile

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"google.golang.org/protobuf/encoding/protodelim"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// repeated returns the file repeated to at least 4 MB, and the number of
// events (frames or lines) in it.
func repeated(b *testing.B, file string) ([]byte, int) {
	one := testdata(b, file)
	n := 0
	if bytes.HasSuffix([]byte(file), []byte(".json")) {
		n = bytes.Count(one, []byte("\n"))
	} else {
		n = len(frames(b, one))
	}
	reps := (4<<20)/len(one) + 1
	return bytes.Repeat(one, reps), n * reps
}

func benchReader(b *testing.B, file string, f Format) { benchReaderOpts(b, file, Options{Format: f}) }

func benchReaderOpts(b *testing.B, file string, opts Options) {
	f := opts.Format
	data, n := repeated(b, file)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(data), file, opts)
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for {
			_, ev, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if ev.IsBazel() || f == FormatOBE {
				got++
			}
		}
		if got != n {
			b.Fatalf("%d events, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/event")
}

// BenchmarkReaderBEP reads test_mixed.bep, repeated to about 4 MB.
func BenchmarkReaderBEP(b *testing.B) { benchReader(b, "test_mixed.bep", FormatAuto) }

// BenchmarkReaderBEPReuse is BenchmarkReaderBEP with Options.Reuse.
func BenchmarkReaderBEPReuse(b *testing.B) {
	benchReaderOpts(b, "test_mixed.bep", Options{Reuse: true})
}

// BenchmarkReaderOBE reads bes_test_mixed.obe, repeated to about 4 MB.
func BenchmarkReaderOBE(b *testing.B) { benchReader(b, "bes_test_mixed.obe", FormatOBE) }

// BenchmarkReaderNDJSON reads test_mixed.json, repeated to about 4 MB.
func BenchmarkReaderNDJSON(b *testing.B) { benchReader(b, "test_mixed.json", FormatAuto) }

// BenchmarkNaiveBEP is the baseline: protodelim and a full proto.Unmarshal
// of every event of BenchmarkReaderBEP's input.
func BenchmarkNaiveBEP(b *testing.B) {
	data, n := repeated(b, "test_mixed.bep")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		br := bufio.NewReaderSize(bytes.NewReader(data), peekSize)
		got := 0
		for {
			ev := &bes.BuildEvent{}
			err := protodelim.UnmarshalOptions{MaxSize: DefaultMaxEventSize}.UnmarshalFrom(br, ev)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			got++
		}
		if got != n {
			b.Fatalf("%d events, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/event")
}

// BenchmarkPayloadKind peeks at every event of test_mixed.bep.
func BenchmarkPayloadKind(b *testing.B) {
	fs := frames(b, testdata(b, "test_mixed.bep"))
	b.ReportAllocs()
	for b.Loop() {
		for _, f := range fs {
			if PayloadKind(f) == "" {
				b.Fatal("no kind")
			}
		}
	}
}

// BenchmarkReaderPrettyJSON reads test_mixed.json pretty-printed as `jq .`
// writes it (every value over many lines: the reader's slow path, which
// scans each value's syntax before decoding it), repeated to about 4 MB.
func BenchmarkReaderPrettyJSON(b *testing.B) {
	one, _ := joinValues(prettyValues(b, testdata(b, "test_mixed.json")), "\n", "\n")
	n := len(jsonLines(b, testdata(b, "test_mixed.json")))
	reps := (4<<20)/len(one) + 1
	data := bytes.Repeat(one, reps)
	n *= reps
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewReader(bytes.NewReader(data), "pretty", Options{})
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for {
			_, ev, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if ev.IsBazel() {
				got++
			}
		}
		if got != n {
			b.Fatalf("%d events, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/event")
}
