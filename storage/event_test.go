package storage

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestEventsInOutboxOrder(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	s := openStore(t, "db", testOptions(fs))
	id := s.ID()
	if len(id) != 16 {
		t.Fatalf("store id %q, want 16 hex digits", id)
	}
	at := time.Date(2026, 11, 23, 10, 0, 0, 123456000, time.UTC)
	if _, err := s.AppendEvent(ctx, Event{Session: "a", Tenant: "t1", Kind: 1, At: at, Data: []byte(`{"relay":"r1"}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "a", batch("a", 1, 2), nil); err != nil {
		t.Fatal(err)
	}
	pos, err := s.AppendEvent(ctx, Event{Session: "a", Kind: 4, At: at.Add(time.Second)})
	if err != nil || pos != 3 {
		t.Fatalf("AppendEvent = %d, %v; want position 3", pos, err)
	}
	check := func(s *Store) {
		t.Helper()
		got := readOutbox(t, s, 0)
		if len(got) != 3 {
			t.Fatalf("%d records, want 3: %+v", len(got), got)
		}
		if e := got[0].Event; e == nil || got[0].Pos != 1 || e.Session != "a" || e.Tenant != "t1" || e.Kind != 1 || !e.At.Equal(at) || !bytes.Equal(e.Data, []byte(`{"relay":"r1"}`)) {
			t.Fatalf("record 1 = %+v %+v", got[0], got[0].Event)
		}
		if got[1].Event != nil || got[1].First != 1 || got[1].Last != 2 {
			t.Fatalf("record 2 = %+v, want the log range 1..2", got[1])
		}
		if e := got[2].Event; e == nil || e.Kind != 4 || e.Data != nil || got[2].Session != "a" {
			t.Fatalf("record 3 = %+v %+v", got[2], got[2].Event)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, "db", testOptions(fs))
	check(s2)
	if s2.ID() != id {
		t.Fatalf("store id changed across reopen: %q → %q", id, s2.ID())
	}
	if p, err := s2.AppendEvent(ctx, Event{Session: "b", Kind: 2}); err != nil || p != 4 {
		t.Fatalf("after reopen AppendEvent = %d, %v; want 4", p, err)
	}
	for _, bad := range []Event{{Session: "", Kind: 1}, {Session: "a", Kind: 0}, {Session: "a", Kind: 1, Data: make([]byte, MaxEventData+1)}} {
		if _, err := s2.AppendEvent(ctx, bad); err == nil {
			t.Fatalf("AppendEvent(%q, kind %d, %d bytes) accepted", bad.Session, bad.Kind, len(bad.Data))
		}
	}
	if _, err := s2.AppendEvent(ctx, Event{Session: "a", Kind: 0}); !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("kind 0: %v, want ErrInvalidEvent", err)
	}
	if other := openStore(t, "db2", testOptions(fs)); other.ID() == id {
		t.Fatal("two stores share an id")
	}
}

func FuzzDecodeEventRecord(f *testing.F) {
	f.Add(eventRecord(Event{Session: "s", Tenant: "t", Kind: 1, At: time.UnixMicro(5), Data: []byte("{}")}))
	f.Add([]byte{0, 1, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		ev, err := decodeEventRecord(v)
		if err != nil {
			return
		}
		if got := eventRecord(ev); !bytes.Equal(got, v) {
			t.Fatalf("round trip %x → %x", v, got)
		}
	})
}
