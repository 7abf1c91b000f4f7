package turn

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestDeniedPeersStaySilent is acceptance 3: CreatePermission, ChannelBind,
// Connect, Send indications and ChannelData toward every denied class of
// address are refused, and a real UDP listener that all of them would hit
// (bound to 0.0.0.0, so loopback and "this host" land on it) hears
// nothing. The server runs the default policy: no lab allow list.
func TestDeniedPeersStaySilent(t *testing.T) {
	ts := newServer(t, func(c *Config) { c.Policy = PeerPolicyConfig{} })
	listener, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	port := uint16(listener.LocalAddr().(*net.UDPAddr).Port)
	self := netip.MustParseAddrPort(ts.udp)

	user, pass := ts.mint(t, "sess-policy", time.Hour)
	c := dialRaw(t, "udp4", ts.udp)
	if _, err := c.allocate(user, pass); err != nil {
		t.Fatal(err)
	}
	targets := []struct {
		name string
		addr netip.AddrPort
	}{
		{"loopback", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)},
		{"mapped loopback", netip.AddrPortFrom(netip.MustParseAddr("::ffff:127.0.0.1"), port)},
		{"mapped loopback hex", netip.AddrPortFrom(netip.MustParseAddr("::ffff:7f00:1"), port)},
		{"nat64 loopback", netip.AddrPortFrom(netip.MustParseAddr("64:ff9b::7f00:1"), port)},
		{"metadata", netip.AddrPortFrom(netip.MustParseAddr("169.254.169.254"), port)},
		{"mapped metadata", netip.AddrPortFrom(netip.MustParseAddr("::ffff:169.254.169.254"), port)},
		{"private", netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port)},
		{"unspecified", netip.AddrPortFrom(netip.MustParseAddr("0.0.0.0"), port)},
		{"mapped unspecified", netip.AddrPortFrom(netip.MustParseAddr("::ffff:0.0.0.0"), port)},
		{"relay's own listener", self},
		{"relay's own address", netip.AddrPortFrom(self.Addr(), port)},
	}
	for i, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			peer := peerAttr(tt.addr)
			for _, r := range []struct {
				name   string
				method stun.Method
				attrs  []stun.Setter
			}{
				{"CreatePermission", stun.MethodCreatePermission, []stun.Setter{peer}},
				{"ChannelBind", stun.MethodChannelBind, []stun.Setter{channelNumber(0x4000 + uint16(i)), peer}},
				{"Connect", stun.MethodConnect, []stun.Setter{peer}},
			} {
				resp, err := c.request(r.method, user, pass, r.attrs...)
				if err != nil {
					t.Fatalf("%s: %v", r.name, err)
				}
				if code(resp) == 0 {
					t.Errorf("%s toward %v succeeded, want refused", r.name, tt.addr)
				}
			}
			if err := c.sendIndication(peer, []byte("leak?")); err != nil {
				t.Fatal(err)
			}
			if err := c.channelData(0x4000+uint16(i), []byte("leak?")); err != nil {
				t.Fatal(err)
			}
		})
	}
	silent(t, listener, time.Second)

	// Control: the listener is live — a lab server that allows 127.0.0.0/8
	// reaches it at 127.0.0.2 (not the relay's own address).
	lab := newServer(t, nil)
	lu, lp := lab.mint(t, "sess-control", time.Hour)
	lc := dialRaw(t, "udp4", lab.udp)
	if _, err := lc.allocate(lu, lp); err != nil {
		t.Fatal(err)
	}
	reach := peerAttr(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port))
	if resp, err := lc.request(stun.MethodCreatePermission, lu, lp, reach); err != nil || code(resp) != 0 {
		t.Fatalf("control permission: %v %v", err, resp)
	}
	if err := lc.sendIndication(reach, []byte("control")); err != nil {
		t.Fatal(err)
	}
	if got, _, err := readWithin(listener, 5*time.Second); err != nil || string(got) != "control" {
		t.Fatalf("control packet: %q %v", got, err)
	}
	if got := ts.counter(t, "stapes_turn_permissions", nil); got != 0 {
		t.Errorf("permissions = %v, want 0", got)
	}
	for _, reason := range []PeerReason{ReasonLoopback, ReasonLinkLocal, ReasonPrivate, ReasonUnspecified, ReasonRelaySelf} {
		if got := ts.counter(t, "stapes_turn_peer_refusals_total", map[string]string{"reason": string(reason)}); got < 1 {
			t.Errorf("peer refusals{reason=%s} = %v, want some", reason, got)
		}
	}
}

// TestRelaySelfPortAware: the relay's own address is refused even with the
// loopback lab allowed, except the relayed address of another live
// allocation; and a permission for the relay's IP (which permissions are:
// IP-wide) still carries nothing to a port of the relay that is not a live
// relayed address.
func TestRelaySelfPortAware(t *testing.T) {
	ts := newServer(t, nil) // 127.0.0.0/8 allowed
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otherAP := netip.MustParseAddrPort(other.LocalAddr().String())

	userA, passA := ts.mint(t, "sess-self", time.Hour)
	userB, passB := ts.mint(t, "sess-self", time.Hour+time.Second)
	a, b := dialRaw(t, "udp4", ts.udp), dialRaw(t, "udp4", ts.udp)
	if _, err := a.allocate(userA, passA); err != nil {
		t.Fatal(err)
	}
	relayB, err := b.allocate(userB, passB)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := a.request(stun.MethodCreatePermission, userA, passA, peerAttr(otherAP))
	if err != nil || code(resp) != int(stun.CodeForbidden) {
		t.Fatalf("permission toward the relay's own address %v: %v %v, want 403", otherAP, err, resp)
	}
	resp, err = a.request(stun.MethodCreatePermission, userA, passA, peerAttr(relayB))
	if err != nil || code(resp) != 0 {
		t.Fatalf("permission toward another allocation's relayed address: %v %v", err, resp)
	}
	// The permission is for 127.0.0.1; a Send to another port there must
	// not leave the relay.
	if err := a.sendIndication(peerAttr(otherAP), []byte("sneak")); err != nil {
		t.Fatal(err)
	}
	silent(t, other, 500*time.Millisecond)
	if got := ts.counter(t, "stapes_turn_dropped_packets_total", map[string]string{"reason": dropRelaySelf}); got < 1 {
		t.Errorf("relay_self drops = %v, want the Send counted", got)
	}
}
