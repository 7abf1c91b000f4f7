package call

import (
	"errors"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

func TestSignalRoundTrip(t *testing.T) {
	mid := "0"
	cases := []struct {
		name string
		s    Signal
	}{
		{"offer", Signal{Type: TypeOffer, Call: "c1", SDP: "v=0\r\n"}},
		{"answer", Signal{Type: TypeAnswer, Call: "c1", SDP: "v=0\r\n"}},
		{"candidate", Signal{Type: TypeCandidate, Call: "c1", Candidate: &webrtc.ICECandidateInit{Candidate: "candidate:1 1 udp 1 192.0.2.1 5000 typ relay", SDPMid: &mid}}},
		{"bye", Signal{Type: TypeBye, Call: "c1", Sent: map[string]uint64{"audio": 5, "video": 3}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.s.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeSignal(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tc.s.Type || got.Call != tc.s.Call || got.SDP != tc.s.SDP || len(got.Sent) != len(tc.s.Sent) {
				t.Fatalf("got %+v, want %+v", got, tc.s)
			}
		})
	}
}

func TestSignalRefused(t *testing.T) {
	cases := []struct{ name, payload string }{
		{"not json", "offer"},
		{"unknown type", `{"type":"ring","call":"c1"}`},
		{"no call id", `{"type":"bye"}`},
		{"long call id", `{"type":"bye","call":"` + strings.Repeat("x", MaxCallIDLen+1) + `"}`},
		{"offer without sdp", `{"type":"offer","call":"c1"}`},
		{"candidate without candidate", `{"type":"candidate","call":"c1"}`},
		{"huge", `{"type":"offer","call":"c1","sdp":"` + strings.Repeat("x", MaxSDPLen+1) + `"}`},
	}
	for _, tc := range cases {
		if _, err := DecodeSignal([]byte(tc.payload)); !errors.Is(err, ErrBadSignal) {
			t.Errorf("%s: err = %v, want ErrBadSignal", tc.name, err)
		}
	}
}

func FuzzDecodeSignal(f *testing.F) {
	f.Add([]byte(`{"type":"offer","call":"c1","sdp":"v=0"}`))
	f.Add([]byte(`{"type":"candidate","call":"c1","candidate":{"candidate":"candidate:1 1 udp 1 192.0.2.1 5000 typ relay","sdpMid":"0"}}`))
	f.Add([]byte(`{"type":"bye","call":"c1","sent":{"audio":1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSignal(b)
		if err != nil {
			return
		}
		out, err := s.Encode()
		if err != nil {
			t.Fatalf("decoded signal does not encode: %v", err)
		}
		if _, err := DecodeSignal(out); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
