package peerwire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sample() *Msg {
	return &Msg{Type: TypeReplicate, Node: "relay-a", Session: "s1", Tenant: "t1", Epoch: 3, Home: "relay-a", URL: "quic://127.0.0.1:1",
		Prev: 9, Entries: []Entry{{Seq: 10, Key: "m/c1/x", Hash: bytes.Repeat([]byte{1}, 32), Frame: []byte{5, 1}}, {Seq: 11, Frame: []byte{7}}},
		Meta: []Meta{{Name: "dev/t1/SN", Blob: []byte("{}")}, {Name: "gone"}}}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range []*Msg{sample(), {Type: TypeReply, Status: StatusStale, Epoch: 4, Home: "relay-b", Head: 12}, {Type: TypeAuth, Node: "n", MAC: []byte{1, 2}}} {
		got, err := Decode(Append(nil, m))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("got %+v, want %+v", got, m)
		}
	}
}

func TestMalformed(t *testing.T) {
	good := Append(nil, sample())
	for name, b := range map[string][]byte{
		"empty":       nil,
		"truncated":   good[:len(good)-1],
		"no type":     Append(nil, &Msg{Node: "x"}),
		"zero seq":    Append(nil, &Msg{Type: 3, Entries: []Entry{{Frame: []byte{1}}}}),
		"short hash":  Append(nil, &Msg{Type: 3, Entries: []Entry{{Seq: 1, Hash: []byte{1}, Frame: []byte{1}}}}),
		"long node":   Append(nil, &Msg{Type: 3, Node: string(make([]byte, MaxID+1))}),
		"bad varint":  {tagType, 2, 0x80, 0x80},
		"huge length": {tagNode, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"type > 255":  Append(nil, &Msg{Type: 1, Head: 1})[:0],
	} {
		if name == "type > 255" {
			b = putUint(nil, tagType, 300)
		}
		if _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, sample()))
	f.Add(Append(nil, &Msg{Type: TypeReply, Status: StatusGap, Head: 5}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(Append(nil, m))
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed the message: %+v → %+v", m, again)
		}
	})
}
