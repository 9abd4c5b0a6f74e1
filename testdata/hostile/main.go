// Command hostile runs the hostile client of store/server/hostile against
// a Build Event Service from the command line (the tests run it in-process:
// commands/serve_hostile_test.go). BENCHMARKS.md's `bes serve` figures use
// its -queries mode.
//
//	go run ./testdata/hostile -addr 127.0.0.1:8980 -queries 20 -pattern '.*'
//	go run ./testdata/hostile -addr 127.0.0.1:8980 -abandon 2000 -huge 4 -huge-size 24MiB
//	go run ./testdata/hostile -addr 127.0.0.1:8980 -stream -pattern .
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/store/server/hostile"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8980", "`HOST:PORT` of the server (plain text: loopback only)")
	prefix := flag.String("prefix", "hostile", "build ids start with it")
	queries := flag.Int("queries", 0, "run `N` QueryEventStreams(-pattern)")
	stream := flag.Bool("stream", false, "run bes.v1.StreamQuery/StreamEventStreams(-pattern) once, with gRPC's default 4 MiB receive limit, and count what came")
	pattern := flag.String("pattern", ".*", "the queries' build_id_pattern")
	par := flag.Int("par", 4, "queries or streams at once")
	abandon := flag.Int("abandon", 0, "open `N` streams, send 3 events on each, and vanish")
	huge := flag.Int("huge", 0, "publish `N` streams of one huge event each")
	hugeSize := flag.Int("huge-size", 24<<20, "bytes of a huge event's stderr")
	malformed := flag.Bool("malformed", false, "publish malformed payloads")
	flag.Parse()

	cc, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(128<<20)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
	defer cc.Close()
	h := &hostile.Client{Conn: cc, Prefix: *prefix}
	ctx := context.Background()
	start := time.Now()
	if *huge > 0 {
		fmt.Println("huge events:", h.HugeEvents(ctx, *huge, *par, *hugeSize))
	}
	if *malformed {
		fmt.Println("malformed payloads:", h.MalformedPayloads(ctx))
	}
	if *abandon > 0 {
		bad := 0
		for _, err := range h.Abandon(ctx, *abandon, *par, 3) {
			if err != nil {
				bad++
			}
		}
		fmt.Printf("abandoned %d streams (%d refused)\n", *abandon, bad)
	}
	if *queries > 0 {
		count, first := h.Queries(ctx, *queries, *par, *pattern)
		fmt.Printf("%d queries of %q: %v %v\n", *queries, *pattern, count, first)
	}
	if *stream {
		streams, msgs, err := h.StreamQuery(ctx, *pattern)
		events, size := 0, 0
		for _, s := range streams {
			events += len(s.GetEvents())
			size += proto.Size(s)
		}
		fmt.Printf("StreamEventStreams(%q): %d streams, %d events, %d bytes in %d messages, %v\n", *pattern, len(streams), events, size, msgs, err)
	}
	fmt.Printf("done in %v\n", time.Since(start).Round(time.Millisecond))
}
