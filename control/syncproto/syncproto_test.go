package syncproto

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sample() *Batch {
	return &Batch{Relay: "relay-eu-1", Pos: 42, Records: []Record{
		{Tenant: "t1", Session: "s1", Seq: 1, Hash: bytes.Repeat([]byte{7}, HashLen), Frame: []byte{5, 15, 1, 1}},
		{Tenant: "t1", Session: "s1", Seq: 2, Hash: bytes.Repeat([]byte{9}, HashLen), Frame: []byte{7}},
	}}
}

func TestRoundTrip(t *testing.T) {
	b := sample()
	got, err := Decode(Append(nil, b))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, b) {
		t.Fatalf("got %+v, want %+v", got, b)
	}
	if n := len(Append(nil, b)); n > Size(b) {
		t.Fatalf("Size %d below the encoded length %d", Size(b), n)
	}
}

func TestRoundTripEvents(t *testing.T) {
	for _, b := range []*Batch{
		{Relay: "r", Pos: 9, Records: []Record{}, Store: "0123456789abcdef", Events: []Event{{Pos: 9, Tenant: "t1", Session: "s1", Kind: EventEnded, At: 1_800_000_000_000_000, Data: []byte(`{"reason":"api"}`)}}},
		func() *Batch {
			b := sample()
			b.Store = "st"
			b.Events = []Event{{Pos: 40, Tenant: "t", Session: "s", Kind: EventJoined, At: 1, Data: []byte{}}}
			return b
		}(),
	} {
		got, err := Decode(Append(nil, b))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, b) {
			t.Fatalf("got %+v, want %+v", got, b)
		}
		if n := len(Append(nil, b)); n > Size(b) {
			t.Fatalf("Size %d below the encoded length %d", Size(b), n)
		}
	}
}

func TestMalformed(t *testing.T) {
	good := Append(nil, sample())
	cases := map[string][]byte{
		"empty":          nil,
		"bad magic":      append([]byte("XXXX"), good[4:]...),
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte(nil), good...), 0),
		"zero seq":       Append(nil, &Batch{Relay: "r", Records: []Record{{Tenant: "t", Session: "s", Seq: 0}}}),
		"no tenant":      Append(nil, &Batch{Relay: "r", Records: []Record{{Session: "s", Seq: 1}}}),
		"huge count":     append(append([]byte("SSB1"), 1, 'r', 1), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"long session":   Append(nil, &Batch{Relay: "r", Records: []Record{{Tenant: "t", Session: string(make([]byte, 200)), Seq: 1}}}),
		"event no store": Append(nil, &Batch{Relay: "r", Events: []Event{{Pos: 1, Tenant: "t", Session: "s", Kind: 1}}}),
		"event no kind":  Append(nil, &Batch{Relay: "r", Store: "x", Events: []Event{{Pos: 1, Tenant: "t", Session: "s"}}}),
		"event no pos":   Append(nil, &Batch{Relay: "r", Store: "x", Events: []Event{{Tenant: "t", Session: "s", Kind: 1}}}),
		"event data":     Append(nil, &Batch{Relay: "r", Store: "x", Events: []Event{{Pos: 1, Tenant: "t", Session: "s", Kind: 1, Data: make([]byte, MaxEventData+1)}}}),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, sample()))
	f.Add(Append(nil, &Batch{Relay: "r"}))
	f.Add([]byte("SSB1"))
	f.Add(Append(nil, &Batch{Relay: "r", Pos: 3, Store: "x", Events: []Event{{Pos: 3, Tenant: "t", Session: "s", Kind: 2, At: 7, Data: []byte("{}")}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(Append(nil, &got))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("decoded batch does not round-trip: %v", err)
		}
	})
}
