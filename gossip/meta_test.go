package gossip

import (
	"errors"
	"strings"
	"testing"
)

func fullMeta() Meta {
	return Meta{
		ID: "relay-eu-1", Region: "eu-west",
		WS: "wss://eu1.relay.example:443/v1", QUIC: "eu1.relay.example:443", TURN: "eu1.relay.example:3478",
		Software: "v0.4.1", Protocol: 3, Load: 1234, Capacity: 50000, Draining: true,
	}
}

func TestMetaRoundTrip(t *testing.T) {
	big := strings.Repeat("x", 200)
	tests := []struct {
		name string
		meta Meta
	}{
		{"id only", Meta{ID: "r1"}},
		{"full", fullMeta()},
		{"max numbers", Meta{ID: "r", Protocol: 1<<32 - 1, Load: 1<<32 - 1, Capacity: 1<<32 - 1}},
		{"long fields", Meta{ID: "r", WS: big, QUIC: big}},
		{"unicode", Meta{ID: "relais-zürich", Region: "europe-ouest"}},
		{"leaving", Meta{ID: "r", Leaving: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.meta.MarshalBinary()
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			var got Meta
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if got != tt.meta {
				t.Errorf("got %+v, want %+v", got, tt.meta)
			}
		})
	}
}

func TestMetaSize(t *testing.T) {
	b, err := fullMeta().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 120 {
		t.Errorf("full meta is %d bytes, want compact (≤ 120)", len(b))
	}
	_, err = Meta{ID: "r", WS: strings.Repeat("x", MaxMetaSize)}.MarshalBinary()
	var se *MetaSizeError
	if !errors.As(err, &se) || !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("got %v, want a *MetaSizeError matching ErrMetaTooLarge", err)
	}
	if se.Size <= MaxMetaSize {
		t.Errorf("got size %d, want > %d", se.Size, MaxMetaSize)
	}
}

func TestMetaDecodeErrors(t *testing.T) {
	good, _ := Meta{ID: "r1", Region: "eu"}.MarshalBinary()
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMetaFormat},
		{"version only", []byte{1}, ErrMetaFormat},
		{"version 2", append([]byte{2}, good[1:]...), ErrMetaVersion},
		{"version 0", append([]byte{0}, good[1:]...), ErrMetaVersion},
		{"truncated", good[:len(good)-1], ErrMetaFormat},
		{"number over 32 bits", []byte{1, 0, 0x80, 0x80, 0x80, 0x80, 0x10}, ErrMetaFormat},
		{"string past end", []byte{1, 0, 0, 0, 0, 9, 'a'}, ErrMetaFormat},
		{"empty id", []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrMetaFormat},
		{"invalid utf-8", []byte{1, 0, 0, 0, 0, 2, 0xff, 0xfe, 0, 0, 0, 0, 0}, ErrMetaFormat},
		{"too large", append(append([]byte{}, good...), make([]byte, MaxMetaSize)...), ErrMetaTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Meta
			if err := m.UnmarshalBinary(tt.in); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMetaForwardCompatible(t *testing.T) {
	b, _ := fullMeta().MarshalBinary()
	b[1] |= 0x80                                 // a flag from a later revision
	b = append(b, 0x05, 'h', 'e', 'l', 'l', 'o') // the peer address, added after the first release
	b = append(b, 0x03, 'n', 'e', 'w')           // a field from a later revision
	var got Meta
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	want := fullMeta()
	want.Peer = "hello"
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// FuzzMetaDecode: any input either fails to decode or decodes to a Meta
// that encodes and decodes back to itself.
func FuzzMetaDecode(f *testing.F) {
	for _, m := range []Meta{{ID: "r1"}, fullMeta()} {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var m Meta
		if err := m.UnmarshalBinary(in); err != nil {
			return
		}
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", m, err)
		}
		var again Meta
		if err := again.UnmarshalBinary(b); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if again != m {
			t.Fatalf("got %+v, want %+v", again, m)
		}
		if len(b) > len(in) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(in), len(b))
		}
	})
}
