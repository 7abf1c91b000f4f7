package client

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
)

// scripted is a relay end for probe unit tests: each PING is answered by
// the next of replies (a PONG with the PING's nonce when nil), and the
// clock moves by the next of rtts when the answer is read.
type scripted struct {
	mu      sync.Mutex // guards the fields below
	clk     *fakeClock
	rtts    []time.Duration
	replies []*wire.Frame
	pending [][]byte
	closed  bool
}

var _ transport = (*scripted)(nil)

func (s *scripted) write(_ context.Context, class wire.Class, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := wire.Decode(b, 0)
	if err != nil || f.Type != wire.TypePing || class != wire.ClassControl {
		return errors.New("scripted: want PING on the control stream")
	}
	r := &wire.Frame{Type: wire.TypePong, Nonce: f.Nonce}
	if len(s.replies) > 0 {
		if s.replies[0] != nil {
			r = s.replies[0]
		}
		s.replies = s.replies[1:]
	}
	s.pending = append(s.pending, wire.Encode(r))
	return nil
}

func (s *scripted) read(context.Context) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil, io.EOF
	}
	b := s.pending[0]
	s.pending = s.pending[1:]
	if len(s.rtts) > 0 {
		s.clk.add(s.rtts[0])
		s.rtts = s.rtts[1:]
	}
	return b, nil
}

func (s *scripted) established(context.Context, int) error { return nil }
func (s *scripted) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}
func (s *scripted) name() string { return "scripted" }

func ms(vs ...float64) []time.Duration {
	out := make([]time.Duration, len(vs))
	for i, v := range vs {
		out[i] = msd(v)
	}
	return out
}

// TestProbeScripted: the median of the samples, and why a candidate could
// not be measured, against a scripted relay and a hand-moved clock.
func TestProbeScripted(t *testing.T) {
	cases := []struct {
		name    string
		rtts    []time.Duration
		replies []*wire.Frame
		samples int
		wantRTT time.Duration
		wantN   int
		wantErr error
		code    wire.Code
	}{
		{"median of five", ms(81, 80, 95, 82, 300), nil, 0, msd(82), 5, nil, 0},
		{"median of four", ms(10, 40, 20, 30), nil, 4, msd(25), 4, nil, 0},
		{"one sample", ms(42), nil, 1, msd(42), 1, nil, 0},
		{"stale pong skipped", ms(5, 7, 9), []*wire.Frame{{Type: wire.TypePong, Nonce: 77}, nil, nil}, 2, 0, 0, io.EOF, 0},
		{"draining relay", ms(5), []*wire.Frame{{Type: wire.TypeGoaway, Code: wire.CodeDraining}}, 3, 0, 0, ErrGoaway, 0},
		{"old relay", ms(5), []*wire.Frame{{Type: wire.TypeError, Code: wire.CodeProtocol, Fatal: true}}, 3, 0, 0, ErrProbeUnsupported, wire.CodeProtocol},
		{"other refusal", ms(5), []*wire.Frame{{Type: wire.TypeError, Code: wire.CodeOverloaded, Fatal: true}}, 3, 0, 0, nil, wire.CodeOverloaded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			var mu sync.Mutex
			p := &Prober{Samples: tc.samples, now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clk.now() }}
			tr := &scripted{clk: clk, rtts: tc.rtts, replies: tc.replies}
			p.dial = func(context.Context, *dialer, string) (transport, error) { return tr, nil }
			got := p.Probe(context.Background(), []Candidate{cand("eu")})
			if len(got) != 1 {
				t.Fatalf("got %d measurements, want 1", len(got))
			}
			m := got[0]
			if tc.wantErr != nil || tc.code != 0 {
				if m.Err == nil || (tc.wantErr != nil && !errors.Is(m.Err, tc.wantErr)) || (tc.code != 0 && CodeOf(m.Err) != tc.code) {
					t.Fatalf("err = %v, want %v / code %v", m.Err, tc.wantErr, tc.code)
				}
				if m.RTT != 0 {
					t.Fatalf("failed probe has RTT %v", m.RTT)
				}
			} else if m.Err != nil {
				t.Fatalf("err = %v", m.Err)
			}
			if m.RTT != tc.wantRTT || (tc.wantErr == nil && tc.code == 0 && len(m.Samples) != tc.wantN) {
				t.Fatalf("RTT %v from %d samples %v, want %v from %d", m.RTT, len(m.Samples), m.Samples, tc.wantRTT, tc.wantN)
			}
			if !tr.closed {
				t.Fatal("probe connection left open")
			}
		})
	}
}

// TestProbeOrderAndFailures: one measurement per candidate in the order
// given, bad URLs and failed dials reported per candidate.
func TestProbeOrderAndFailures(t *testing.T) {
	p := &Prober{Samples: 2}
	p.dial = func(_ context.Context, _ *dialer, url string) (transport, error) {
		if url == "wss://down.test/v1/connect" {
			return nil, errors.New("connection refused")
		}
		return &scripted{clk: newFakeClock()}, nil
	}
	cs := []Candidate{cand("a"), cand("down"), {ID: "bad", URL: "http://x"}, cand("b")}
	got := p.Probe(context.Background(), cs)
	for i, m := range got {
		if m.Candidate != cs[i] {
			t.Fatalf("measurement %d is of %v, want %v", i, m.Candidate, cs[i])
		}
	}
	if got[0].Err != nil || got[3].Err != nil || len(got[0].Samples) != 2 {
		t.Fatalf("good candidates: %+v %+v", got[0], got[3])
	}
	if got[1].Err == nil || !errors.Is(got[2].Err, ErrUnsupportedURL) {
		t.Fatalf("bad candidates: %v, %v", got[1].Err, got[2].Err)
	}
	rtts := RTTMillis(got)
	if _, ok := rtts["down"]; ok || len(rtts) != 2 {
		t.Fatalf("RTTMillis = %v, want a and b only", rtts)
	}
}

func TestMedian(t *testing.T) {
	cases := []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0}, {ms(3), msd(3)}, {ms(3, 1), msd(2)}, {ms(9, 1, 5), msd(5)}, {ms(100, 1, 2, 3), msd(2.5)},
	}
	for _, tc := range cases {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestProbeRelay probes a real relay over WebSocket and QUIC (with the
// caller's own dialer and UDP socket too, as the lab tests use them), a
// draining relay and a port nobody listens on.
func TestProbeRelay(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	var dials, sockets int
	var mu sync.Mutex
	p := &Prober{TLS: r.ClientTLS(), Timeout: 5 * time.Second,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials++
			mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		ListenPacket: func(context.Context) (net.PacketConn, error) {
			mu.Lock()
			sockets++
			mu.Unlock()
			return net.ListenPacket("udp", "127.0.0.1:0")
		}}
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := free.Addr().String()
	free.Close()
	cs := []Candidate{
		{ID: "ws", URL: r.WSURL},
		{ID: "quic", URL: r.QUICURL},
		{ID: "dead", URL: "wss://" + deadAddr + relay.WSPath},
	}
	got := p.Probe(context.Background(), cs)
	for _, m := range got[:2] {
		if m.Err != nil || len(m.Samples) != 5 || m.RTT <= 0 || m.Connect <= 0 {
			t.Fatalf("%s: err %v, %d samples, RTT %v, connect %v", m.Candidate.ID, m.Err, len(m.Samples), m.RTT, m.Connect)
		}
		t.Logf("%s: RTT %v (samples %v), connect %v", m.Candidate.ID, m.RTT, m.Samples, m.Connect)
	}
	if got[2].Err == nil {
		t.Fatal("a port nobody listens on was measured")
	}
	if dials == 0 || sockets != 1 {
		t.Fatalf("the prober's DialContext was used %d times, ListenPacket %d, want >0 and 1", dials, sockets)
	}

	// A draining relay tells probes to go elsewhere.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Server.Drain(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(testWait)
	for {
		m := p.Probe(context.Background(), cs[:1])[0]
		if errors.Is(m.Err, ErrGoaway) || CodeOf(m.Err) == wire.CodeDraining {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe of a draining relay: %v, want GOAWAY or draining", m.Err)
		}
		time.Sleep(10 * time.Millisecond) // until Drain has started
	}
}
