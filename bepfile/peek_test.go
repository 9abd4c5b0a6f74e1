package bepfile

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	bes "github.com/bes-cli/bes/bepfile/bep/buildeventstream"
)

// TestKindsMatchSchema: the payload table is the schema's oneof payload.
func TestKindsMatchSchema(t *testing.T) {
	od := (&bes.BuildEvent{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")
	if od == nil {
		t.Fatal("BuildEvent has no oneof payload")
	}
	fields := od.Fields()
	seen := 0
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if got := KindName(fd.Number()); got != fd.JSONName() {
			t.Errorf("KindName(%d) = %q, want %q", fd.Number(), got, fd.JSONName())
		}
		if n, ok := KindField(fd.JSONName()); !ok || n != fd.Number() {
			t.Errorf("KindField(%q) = %d, %v", fd.JSONName(), n, ok)
		}
		seen++
	}
	// Events Bazel posts without payload are named by their id.
	ids := (&bes.BuildEventId{}).ProtoReflect().Descriptor().Fields()
	for n, k := range idOnlyKinds {
		fd := ids.ByNumber(n)
		if fd == nil || fd.JSONName() != k {
			t.Errorf("idOnlyKinds[%d] = %q, the schema's BuildEventId field is %v", n, k, fd)
		}
		if od.Fields().ByJSONName(k) != nil {
			t.Errorf("id-only kind %q is also a payload", k)
		}
		seen++
	}
	if len(Kinds()) != seen {
		t.Errorf("Kinds() has %d kinds, the schema %d", len(Kinds()), seen)
	}
	for _, n := range []protowire.Number{0, 1, 2, 11, 19, 20, 31, 1000, -1} {
		if k := KindName(n); k != "" {
			t.Errorf("KindName(%d) = %q", n, k)
		}
	}
	if _, ok := KindField(""); ok {
		t.Error(`KindField("") found a kind`)
	}
}

// TestPeek compares Peek with a full decoding of every event of a file.
func TestPeek(t *testing.T) {
	for _, file := range []string{"test_mixed.bep", "build_ok.bep", "query.bep"} {
		fs := frames(t, testdata(t, file))
		kinds := map[string]int{}
		for i, f := range fs {
			p, err := Peek(f)
			if err != nil {
				t.Fatalf("%s event %d: %v", file, i, err)
			}
			m := &bes.BuildEvent{}
			if err := proto.Unmarshal(f, m); err != nil {
				t.Fatal(err)
			}
			r := m.ProtoReflect()
			want := ""
			if fd := r.WhichOneof(r.Descriptor().Oneofs().ByName("payload")); fd != nil {
				want = fd.JSONName()
				got := r.Get(fd).Message().New().Interface()
				if err := proto.Unmarshal(p.Payload, got); err != nil || !proto.Equal(got, r.Get(fd).Message().Interface()) {
					t.Errorf("%s event %d: payload differs (%v)", file, i, err)
				}
			}
			if got := p.Kind(); got != want || PayloadKind(f) != want {
				t.Errorf("%s event %d: kind %q, want %q", file, i, got, want)
			}
			kinds[want]++
			id, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m.Id)
			if string(p.ID) != string(id) {
				t.Errorf("%s event %d: id %x, want %x", file, i, p.ID, id)
			}
			if p.LastMessage != m.LastMessage {
				t.Errorf("%s event %d: last message %v", file, i, p.LastMessage)
			}
			if p.LastMessage != (i == len(fs)-1) {
				t.Errorf("%s event %d: last_message %v", file, i, p.LastMessage)
			}
		}
		if file == "test_mixed.bep" && (kinds["testResult"] != 14 || kinds["testSummary"] != 9 || kinds["started"] != 1) {
			t.Errorf("test_mixed kinds: %v; want 14 testResult, 9 testSummary, 1 started", kinds)
		}
	}
	for _, bad := range [][]byte{{0x0a, 0x05}, {0xff}, {0x0a}, {0xa2, 0x01, 0x00}} {
		if _, err := Peek(bad); err == nil {
			t.Errorf("Peek(%x) succeeded", bad)
		}
		if k := PayloadKind(bad); k != "" {
			t.Errorf("PayloadKind(%x) = %q", bad, k)
		}
	}
	if p, err := Peek(nil); err != nil || p.Kind() != "" || p.ID != nil {
		t.Errorf("Peek(nil) = %+v, %v", p, err)
	}
}

func TestStartedUUID(t *testing.T) {
	b, _ := proto.Marshal(&bes.BuildStarted{Uuid: "abc", Command: "build"})
	if got, err := startedUUIDOf(b); got != "abc" || err != nil {
		t.Errorf("uuid %q, %v", got, err)
	}
	if _, err := startedUUIDOf([]byte{0x0a, 0x01, 0xff}); err == nil {
		t.Error("invalid UTF-8 accepted")
	}
	if _, err := startedUUIDOf([]byte{0x08, 0x01}); err == nil {
		t.Error("wrong wire type accepted")
	}
}
