package turn

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestFastPathNoAllocs: relaying ChannelData both ways allocates nothing
// in the server (AllocsPerRun counts the whole process; the test's own
// sockets use allocation-free calls).
func TestFastPathNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	// No bandwidth cap: 550 round trips of 1000 bytes go by faster than
	// the default 1.5 MB/s allows, and the cap is not what is measured.
	ts := newServer(t, func(c *Config) { c.Bandwidth = -1 })
	user, pass := ts.mint(t, "sess-fast", time.Hour)
	c := dialRaw(t, "udp4", ts.udp)
	relay, err := c.allocate(user, pass)
	if err != nil {
		t.Fatal(err)
	}
	peer := udpPeer(t, "127.0.0.2:0")
	peerAP := netip.MustParseAddrPort(peer.LocalAddr().String())
	if resp, err := c.request(stun.MethodChannelBind, user, pass, channelNumber(0x4000), peerAttr(peerAP)); err != nil || code(resp) != 0 {
		t.Fatalf("channel bind: %v %v", err, resp)
	}
	frame := make([]byte, 4+1000)
	frame[0], frame[1], frame[2], frame[3] = 0x40, 0x00, 1000>>8, 1000&0xff
	buf := make([]byte, 2048)
	cu := c.conn.(*net.UDPConn)
	round := func() {
		if _, err := cu.Write(frame); err != nil {
			t.Fatal(err)
		}
		_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := peer.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.WriteToUDPAddrPort(buf[:1000], relay); err != nil {
			t.Fatal(err)
		}
		_ = cu.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := cu.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 {
		round() // warm up maps and buffers
	}
	if a := testing.AllocsPerRun(500, round); a > 0.05 {
		t.Errorf("%.2f allocations per relayed round trip, want 0", a)
	}
}
