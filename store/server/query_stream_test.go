package server

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/bes-cli/bes/store"
	"github.com/bes-cli/bes/store/buildgridpb"
	"github.com/bes-cli/bes/store/server/hostile"
)

// TestStreamEventStreams (issue 14): an answer over 4 MiB, which
// QueryEventStreams refuses naming the streaming method, is received whole
// from StreamEventStreams by a client with gRPC's default 4 MiB receive
// limit: the streams QueryEventStreams would give, in its order, every
// event byte-identical to what the store holds (events over a message's
// size sent in parts). A match of nothing is no message and OK; an invalid
// pattern is InvalidArgument.
func TestStreamEventStreams(t *testing.T) {
	e := newEnv(t, "", Options{})
	ctx := context.Background()
	// Two streams of 3 MiB events (each over a message: sent in parts),
	// and the real stream under two names.
	for i := range 2 {
		evs := hostile.Events(fmt.Sprintf("big-%d", i), "inv", 3, 3<<20)
		if _, err := publish(t, e.client, evs); err != nil {
			t.Fatal(err)
		}
		checkStored(t, e, fmt.Sprintf("big-%d.3.inv", i), encodings(t, evs)) // large events stored as sent
	}
	for i := range 2 {
		if _, err := publish(t, e.client, renamed(toolEvents(t), fmt.Sprintf("s-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.query.QueryEventStreams(ctx, &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: "."})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "bes.v1.StreamQuery/StreamEventStreams") {
		t.Errorf("QueryEventStreams of everything: %v, want ResourceExhausted naming the streaming method", err)
	}

	h := &hostile.Client{Conn: e.conn}
	got, msgs, err := h.StreamQuery(ctx, ".")
	if err != nil {
		t.Fatal(err)
	}
	var ents []*store.Entry
	if err := e.disk.ListMatching(ctx, func(string) bool { return true }, func(en *store.Entry) error { ents = append(ents, en); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ents) || len(ents) != 4 {
		t.Fatalf("%d streams received, %d stored, want 4", len(got), len(ents))
	}
	size := 0
	for i, en := range ents {
		s := got[i]
		if !proto.Equal(s.GetStreamId(), entryID(en)) {
			t.Errorf("stream %d: id %v, want %s", i, s.GetStreamId(), en.Key)
		}
		_, disk := storedBytes(t, e, en.Key)
		recv := encodings(t, s.GetEvents())
		if len(recv) != len(disk) {
			t.Errorf("stream %s: %d events received, %d stored", en.Key, len(recv), len(disk))
			continue
		}
		for j := range disk {
			size += len(recv[j])
			if !bytes.Equal(recv[j], disk[j]) {
				t.Errorf("stream %s: event %d differs from the stored one", en.Key, j)
			}
		}
	}
	if size <= 4<<20 || msgs < size/DefaultStreamMessage {
		t.Errorf("%d bytes of events in %d messages: want over 4 MiB, in messages of at most %d bytes", size, msgs, DefaultStreamMessage)
	}

	// One stream, as QueryEventStreams answers it.
	one, err := e.query.QueryEventStreams(ctx, &buildgridpb.QueryEventStreamsRequest{BuildIdPattern: `\.s-1$`})
	if err != nil {
		t.Fatal(err)
	}
	got, msgs, err = h.StreamQuery(ctx, `\.s-1$`)
	if err != nil || msgs != 1 || !proto.Equal(&buildgridpb.QueryEventStreamsResponse{Streams: got}, one) {
		t.Errorf("one stream of %d bytes: %d messages, %v; want the answer of QueryEventStreams in one", proto.Size(one), msgs, err)
	}
	got, msgs, err = h.StreamQuery(ctx, "^nothing-matches$")
	if err != nil || msgs != 0 || len(got) != 0 {
		t.Errorf("a match of nothing: %d streams in %d messages, %v; want none, OK", len(got), msgs, err)
	}
	if _, _, err := h.StreamQuery(ctx, "("); status.Code(err) != codes.InvalidArgument {
		t.Errorf("an invalid pattern: %v, want InvalidArgument", err)
	}
}

// TestStreamEventStreamsAuth: the streaming query takes the token as every
// other call does, and its stream cap.
func TestStreamEventStreamsAuth(t *testing.T) {
	auth, err := NewTokenAuth("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	e := newFaultEnv(t, Options{}, auth.ServerOptions()...)
	h := &hostile.Client{Conn: e.conn}
	ok := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer s3cret")
	if _, _, err := h.StreamQuery(context.Background(), "."); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without the token: %v, want Unauthenticated", err)
	}
	if _, _, err := h.StreamQuery(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer guess"), "."); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a wrong token: %v, want Unauthenticated", err)
	}
	if _, err := publish(t, e.client, toolEvents(t)); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("publishing without the token: %v", err)
	}
	got, _, err := h.StreamQuery(ok, ".")
	if err != nil || len(got) != 0 {
		t.Errorf("with the token: %d streams, %v", len(got), err)
	}
}
