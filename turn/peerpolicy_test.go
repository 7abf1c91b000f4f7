package turn

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

var relayAddr = netip.MustParseAddr("203.0.114.10") // public, not documentation

func mustPolicy(t testing.TB, cfg PeerPolicyConfig) *PeerPolicy {
	t.Helper()
	p, err := NewPeerPolicy(cfg)
	if err != nil {
		t.Fatalf("NewPeerPolicy: %v", err)
	}
	return p
}

func reasonOf(err error) PeerReason {
	var pe *PeerError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ""
}

// TestPeerPolicyDefaultDeny covers issue 7 acceptance 3 and the bypasses of
// CVE-2020-26262 (0.0.0.0, [::], [::1] reaching loopback) and CVE-2026-27624
// (IPv4-mapped ::ffff:127.0.0.1 / ::ffff:0.0.0.0 slipping past v4 ranges).
func TestPeerPolicyDefaultDeny(t *testing.T) {
	p := mustPolicy(t, PeerPolicyConfig{RelayAddrs: []netip.Addr{relayAddr, netip.MustParseAddr("2a01:4f8::10")}})
	tests := []struct {
		name string
		addr string
		want PeerReason
	}{
		// acceptance 3
		{"mapped loopback dotted", "::ffff:127.0.0.1", ReasonLoopback},
		{"mapped loopback hex", "::ffff:7f00:1", ReasonLoopback},
		{"nat64 loopback", "64:ff9b::7f00:1", ReasonLoopback},
		{"cloud metadata", "169.254.169.254", ReasonLinkLocal},
		{"private 10", "10.0.0.1", ReasonPrivate},
		{"unspecified v4", "0.0.0.0", ReasonUnspecified},
		{"relay self v4", relayAddr.String(), ReasonRelaySelf},
		{"relay self mapped", "::ffff:" + relayAddr.String(), ReasonRelaySelf},
		{"relay self v6", "2a01:4f8::10", ReasonRelaySelf},
		// CVE-2020-26262
		{"this network 0.1.2.3", "0.1.2.3", ReasonUnspecified},
		{"unspecified v6", "::", ReasonUnspecified},
		{"loopback v6", "::1", ReasonLoopback},
		{"loopback 127.1.2.3", "127.1.2.3", ReasonLoopback},
		// CVE-2026-27624
		{"mapped unspecified", "::ffff:0.0.0.0", ReasonUnspecified},
		{"mapped metadata", "::ffff:169.254.169.254", ReasonLinkLocal},
		{"mapped private", "::ffff:10.0.0.1", ReasonPrivate},
		{"mapped with zone", "::ffff:127.0.0.1%eth0", ReasonLoopback},
		// other embedded forms
		{"siit loopback", "::ffff:0:127.0.0.1", ReasonLoopback},
		{"siit public", "::ffff:0:8.8.8.8", ReasonIPv4Mapped},
		{"compatible loopback", "::127.0.0.1", ReasonLoopback},
		{"compatible public", "::8.8.8.8", ReasonIPv4Compatible},
		{"nat64 metadata", "64:ff9b::169.254.169.254", ReasonLinkLocal},
		{"nat64 public", "64:ff9b::8.8.8.8", ReasonNAT64},
		{"nat64 local-use", "64:ff9b:1::808:808", ReasonNAT64},
		{"6to4 loopback", "2002:7f00:1::1", ReasonLoopback},
		{"6to4 public", "2002:808:808::1", Reason6to4},
		{"teredo loopback client", "2001:0:4136:e378:8000:63bf:80ff:fffe", ReasonLoopback},
		{"teredo public", "2001:0:4136:e378:8000:63bf:f7f7:f7f7", ReasonTeredo},
		// IPv4 classes
		{"private 172.16", "172.16.5.4", ReasonPrivate},
		{"private 172.31", "172.31.255.255", ReasonPrivate},
		{"private 192.168", "192.168.1.1", ReasonPrivate},
		{"cgnat", "100.64.0.1", ReasonCGNAT},
		{"cgnat top", "100.127.255.254", ReasonCGNAT},
		{"link local", "169.254.0.1", ReasonLinkLocal},
		{"multicast", "224.0.0.1", ReasonMulticast},
		{"multicast top", "239.255.255.250", ReasonMulticast},
		{"broadcast", "255.255.255.255", ReasonBroadcast},
		{"reserved 240", "240.0.0.1", ReasonReserved},
		{"ietf 192.0.0", "192.0.0.170", ReasonReserved},
		{"doc 192.0.2", "192.0.2.1", ReasonDocumentation},
		{"doc 198.51.100", "198.51.100.7", ReasonDocumentation},
		{"doc 203.0.113", "203.0.113.9", ReasonDocumentation},
		{"benchmark", "198.18.0.1", ReasonBenchmark},
		{"6to4 anycast", "192.88.99.1", Reason6to4},
		// IPv6 classes
		{"ula", "fd00::1", ReasonPrivate},
		{"site local", "fec0::1", ReasonPrivate},
		{"link local v6", "fe80::1", ReasonLinkLocal},
		{"link local v6 zone", "fe80::1%eth0", ReasonLinkLocal},
		{"multicast v6", "ff02::1", ReasonMulticast},
		{"doc v6", "2001:db8::1", ReasonDocumentation},
		{"doc v6 3fff", "3fff::1", ReasonDocumentation},
		{"benchmark v6", "2001:2::1", ReasonBenchmark},
		{"orchid", "2001:20::1", ReasonReserved},
		{"discard", "100::1", ReasonReserved},
		{"outside global unicast", "4000::1", ReasonReserved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := netip.MustParseAddr(tt.addr)
			err := p.Check(a)
			if !errors.Is(err, ErrPeerDenied) {
				t.Fatalf("Check(%s) = %v, want denied", tt.addr, err)
			}
			if got := reasonOf(err); got != tt.want {
				t.Errorf("Check(%s) reason = %q, want %q (err %v)", tt.addr, got, tt.want, err)
			}
			// The same address as pion hands it (net.IP) must get the same answer.
			if got := reasonOf(p.CheckIP(net.IP(a.AsSlice()))); a.Zone() == "" && got != tt.want {
				t.Errorf("CheckIP(%s) reason = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}

func TestPeerPolicyAllowsPublic(t *testing.T) {
	p := mustPolicy(t, PeerPolicyConfig{RelayAddrs: []netip.Addr{relayAddr}})
	for _, s := range []string{
		"8.8.8.8", "1.1.1.1", "::ffff:8.8.8.8", "100.63.255.255", "100.128.0.0",
		"172.15.255.255", "172.32.0.0", "169.253.255.255", "203.0.114.11",
		"2a00:1450:4001:81b::200e", "2606:4700::1111",
	} {
		t.Run(s, func(t *testing.T) {
			if err := p.Check(netip.MustParseAddr(s)); err != nil {
				t.Errorf("Check(%s) = %v, want nil", s, err)
			}
		})
	}
	if err := p.CheckIP(net.ParseIP("8.8.8.8")); err != nil { // 16-byte form
		t.Errorf("CheckIP(16-byte 8.8.8.8) = %v, want nil", err)
	}
	if got := reasonOf(p.CheckIP(nil)); got != ReasonInvalid {
		t.Errorf("CheckIP(nil) reason = %q, want %q", got, ReasonInvalid)
	}
	if got := reasonOf(p.Check(netip.Addr{})); got != ReasonInvalid {
		t.Errorf("Check(zero) reason = %q, want %q", got, ReasonInvalid)
	}
}

func TestPeerPolicyAllowList(t *testing.T) {
	p := mustPolicy(t, PeerPolicyConfig{
		Allow: []netip.Prefix{
			netip.MustParsePrefix("10.1.0.0/16"),
			netip.MustParsePrefix("::ffff:192.168.7.0/120"), // taken as 192.168.7.0/24
			netip.MustParsePrefix("fd00:1::/32"),
		},
		RelayAddrs: []netip.Addr{netip.MustParseAddr("10.1.0.5")},
	})
	tests := []struct {
		addr string
		want PeerReason // "" = allowed
	}{
		{"10.1.2.3", ""},
		{"::ffff:10.1.2.3", ""},
		{"192.168.7.9", ""},
		{"::ffff:192.168.7.9", ""},
		{"fd00:1::9", ""},
		{"10.2.0.1", ReasonPrivate},
		{"192.168.8.1", ReasonPrivate},
		{"10.1.0.5", ReasonRelaySelf},        // allow never overrides relay_self
		{"::ffff:10.1.0.5", ReasonRelaySelf}, // nor in mapped form
		{"64:ff9b::a01:203", ReasonPrivate},  // NAT64 of 10.1.2.3: not the allowed destination
		{"127.0.0.1", ReasonLoopback},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := p.Check(netip.MustParseAddr(tt.addr))
			if got := reasonOf(err); got != tt.want {
				t.Errorf("Check(%s) = %v, want reason %q", tt.addr, err, tt.want)
			}
		})
	}
}

func TestPeerPolicyCounterpartOnly(t *testing.T) {
	base := mustPolicy(t, PeerPolicyConfig{CounterpartOnly: true})
	other := netip.MustParseAddr("8.8.4.4")
	p := base.WithCounterparts(other, netip.MustParseAddr("10.0.0.9"), netip.Addr{})
	tests := []struct {
		name string
		pol  *PeerPolicy
		addr string
		want PeerReason
	}{
		{"counterpart", p, "8.8.4.4", ""},
		{"counterpart mapped", p, "::ffff:8.8.4.4", ""},
		{"stranger", p, "8.8.8.8", ReasonNotCounterpart},
		{"private counterpart still denied", p, "10.0.0.9", ReasonPrivate},
		{"empty set denies all", base, "8.8.4.4", ReasonNotCounterpart},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.pol.Check(netip.MustParseAddr(tt.addr))
			if got := reasonOf(err); got != tt.want {
				t.Errorf("Check(%s) = %v, want reason %q", tt.addr, err, tt.want)
			}
		})
	}
	if err := base.Check(other); err == nil {
		t.Error("WithCounterparts changed the original policy")
	}
}

func TestNewPeerPolicyRejectsInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  PeerPolicyConfig
	}{
		{"zero prefix", PeerPolicyConfig{Allow: []netip.Prefix{{}}}},
		{"zero relay addr", PeerPolicyConfig{RelayAddrs: []netip.Addr{{}}}},
		{"zero counterpart", PeerPolicyConfig{Counterparts: []netip.Addr{{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewPeerPolicy(tt.cfg); !errors.Is(err, ErrBadPolicy) {
				t.Errorf("NewPeerPolicy = %v, want ErrBadPolicy", err)
			}
		})
	}
}

func TestPeerErrorMessage(t *testing.T) {
	p := mustPolicy(t, PeerPolicyConfig{})
	err := p.Check(netip.MustParseAddr("64:ff9b::7f00:1"))
	if got, want := err.Error(), "turn: peer address denied: loopback (embedded 127.0.0.1)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
