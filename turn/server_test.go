package turn

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestRelayUDP: a pion/turn client allocates, permits a loopback peer (lab
// allow list), and data flows both ways, first as Send/Data indications and
// then over a channel (the fast path).
func TestRelayUDP(t *testing.T) {
	ts := newServer(t, nil)
	user, pass := ts.mint(t, "sess-relay", time.Hour)
	c := turnClient(t, ts.udp, user, pass)
	relay := allocate(t, c)
	peer := udpPeer(t, "127.0.0.2:0")

	// pion's client binds a channel on the first WriteTo, so the second
	// round trip exercises the fast path.
	for i := range 20 {
		msg := []byte("hello peer " + itoa(i))
		if _, err := relay.WriteTo(msg, peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		got, from, err := readWithin(peer, 5*time.Second)
		if err != nil {
			t.Fatalf("peer read %d: %v", i, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("peer got %q, want %q", got, msg)
		}
		if from.String() != relay.LocalAddr().String() {
			t.Fatalf("peer got it from %v, want the relayed address %v", from, relay.LocalAddr())
		}
		if _, err := peer.WriteTo([]byte("hello client "+itoa(i)), from); err != nil {
			t.Fatal(err)
		}
		back, _, err := readWithin(relay, 5*time.Second)
		if err != nil {
			t.Fatalf("client read %d: %v", i, err)
		}
		if want := "hello client " + itoa(i); string(back) != want {
			t.Fatalf("client got %q, want %q", back, want)
		}
	}
	if got := ts.counter(t, "stapes_turn_relayed_packets_total", map[string]string{"direction": "to_peer", "relay": "test"}); got != 20 {
		t.Errorf("to_peer packets = %v, want 20", got)
	}
	if got := ts.counter(t, "stapes_turn_channels", nil); got != 1 {
		t.Errorf("channels gauge = %v, want 1 (pion binds a channel on first send)", got)
	}
	if got := ts.counter(t, "stapes_turn_allocations", nil); got != 1 {
		t.Errorf("allocations gauge = %v, want 1", got)
	}
	us := ts.Usage()
	if len(us) != 1 || us[0].Session != "sess-relay" || us[0].PacketsToPeer != 20 || us[0].PacketsFromPeer != 20 || us[0].Active != 1 {
		t.Errorf("usage = %+v", us)
	}
}

func TestConfigErrors(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	creds := &Credentials{Secrets: [][]byte{labSecret}}
	wild, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wild.Close()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no listener", Config{Credentials: creds}},
		{"no credentials", Config{PacketConns: []net.PacketConn{pc}}},
		{"weak secret", Config{PacketConns: []net.PacketConn{pc}, Credentials: &Credentials{Secrets: [][]byte{[]byte("x")}}}},
		{"wildcard without relay ip", Config{PacketConns: []net.PacketConn{wild}, Credentials: creds}},
		{"port range", Config{PacketConns: []net.PacketConn{pc}, Credentials: creds, RelayPortMin: 5000}},
		{"negative quota", Config{PacketConns: []net.PacketConn{pc}, Credentials: creds, MaxAllocations: -1}},
		{"tls without config", Config{TLSListeners: []net.Listener{nil}, Credentials: creds}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg)
			if s != nil {
				s.Close()
			}
			if !errors.Is(err, ErrBadConfig) {
				t.Errorf("New = %v, want ErrBadConfig", err)
			}
		})
	}
}

// TestCloseIdempotentAndDrain: Drain waits for allocations, Close returns
// after everything stopped (goleak in TestMain checks the rest).
func TestDrain(t *testing.T) {
	ts := newServer(t, nil)
	user, pass := ts.mint(t, "sess-drain", time.Hour)
	c := turnClient(t, ts.udp, user, pass)
	relay := allocate(t, c)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with a live allocation = %v, want deadline exceeded", err)
	}
	// New allocations are refused while draining; the existing one relays.
	user2, pass2 := ts.mint(t, "sess-drain-2", time.Hour)
	c2 := turnClient(t, ts.udp, user2, pass2)
	actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer acancel()
	if r, err := c2.AllocateWithContext(actx); err == nil {
		r.Close()
		t.Fatal("allocation accepted while draining")
	}
	if got := ts.counter(t, "stapes_turn_refusals_total", map[string]string{"reason": refuseDraining}); got < 1 {
		t.Errorf("draining refusals = %v", got)
	}
	peer := udpPeer(t, "127.0.0.2:0")
	if _, err := relay.WriteTo([]byte("still here"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readWithin(peer, 5*time.Second); err != nil {
		t.Fatalf("existing allocation stopped relaying while draining: %v", err)
	}
	relay.Close() // pion's client sends Refresh lifetime 0
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := ts.Drain(ctx2); err != nil {
		t.Fatalf("Drain after the last allocation closed: %v", err)
	}
	if err := ts.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	ts.Close()
}
