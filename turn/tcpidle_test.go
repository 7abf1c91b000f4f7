package turn

import (
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestTCPOutlivesHandshakeTimeout: a TCP client whose first message came
// in time may then stay quiet for longer than HandshakeTimeout (measured
// from the connect) and be served: after the first frame the idle
// timeout applies. The handshake's deadline used to stay in force when
// the next read came within a second of the first, which closed such a
// client (uclient's second TCP client, now and then).
func TestTCPOutlivesHandshakeTimeout(t *testing.T) {
	const hs = 300 * time.Millisecond
	ts := newServer(t, func(c *Config) { c.HandshakeTimeout = hs })
	u, p := ts.mint(t, "sess-idle", time.Hour)
	c := dialRaw(t, "tcp4", ts.tcp)
	if _, err := c.allocate(u, p); err != nil {
		t.Fatalf("allocate: %v", err)
	}
	time.Sleep(3 * hs) // quiet, well past the handshake deadline
	resp, err := c.request(stun.MethodBinding, u, p)
	if err != nil {
		t.Fatalf("a request %v after the first, on the same connection: %v", 3*hs, err)
	}
	if resp.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("binding after a quiet spell: %v", resp.Type)
	}
}
