package relay_test

import (
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
)

// TestProbeBeforeHello: a connection may PING before HELLO (an RTT probe
// without a token) and gets PONG with the same nonce; HELLO then admits it
// as usual. One PING more than relay.MaxProbes is a protocol error.
func TestProbeBeforeHello(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	for _, transport := range []string{"ws", "quic"} {
		t.Run(transport+"/then hello", func(t *testing.T) {
			c := relaytest.Dial(t, r, transport)
			for n := uint64(1); n <= 5; n++ {
				c.Send(&wire.Frame{Type: wire.TypePing, Nonce: n})
				if p := c.Expect(wire.TypePong); p.Nonce != n {
					t.Fatalf("PONG nonce = %d, want %d", p.Nonce, n)
				}
			}
			c.Hello(r.Token(t, clinician("probe-"+transport)), false, 0)
		})
		t.Run(transport+"/too many", func(t *testing.T) {
			c := relaytest.Dial(t, r, transport)
			for n := uint64(1); n <= relay.MaxProbes; n++ {
				c.Send(&wire.Frame{Type: wire.TypePing, Nonce: n})
				c.Expect(wire.TypePong)
			}
			c.Send(&wire.Frame{Type: wire.TypePing, Nonce: 99})
			code, closed := c.ClosedWith(5 * time.Second)
			if !closed || code != wire.CodeProtocol {
				t.Fatalf("after %d probes: closed=%v with %v, want closed with protocol", relay.MaxProbes+1, closed, code)
			}
		})
	}
}
