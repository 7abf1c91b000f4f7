package turn

import "net/netip"

// PeerReason names why the peer policy refused an address. The same strings
// label logs and the refusal metrics.
type PeerReason string

// Reasons. Classes of address first, then the policy's own refusals.
const (
	ReasonInvalid        PeerReason = "invalid"
	ReasonLoopback       PeerReason = "loopback"
	ReasonPrivate        PeerReason = "private"
	ReasonLinkLocal      PeerReason = "link_local"
	ReasonCGNAT          PeerReason = "cgnat"
	ReasonMulticast      PeerReason = "multicast"
	ReasonUnspecified    PeerReason = "unspecified"
	ReasonIPv4Mapped     PeerReason = "ipv4_mapped"
	ReasonIPv4Compatible PeerReason = "ipv4_compatible"
	ReasonNAT64          PeerReason = "nat64"
	Reason6to4           PeerReason = "6to4"
	ReasonTeredo         PeerReason = "teredo"
	ReasonBenchmark      PeerReason = "benchmark"
	ReasonDocumentation  PeerReason = "documentation"
	ReasonReserved       PeerReason = "reserved"
	ReasonBroadcast      PeerReason = "broadcast"
	ReasonRelaySelf      PeerReason = "relay_self"
	ReasonNotCounterpart PeerReason = "not_counterpart"
)

// class is one denied range.
type class struct {
	p      netip.Prefix
	reason PeerReason
}

// v4Classes are the IPv4 ranges no peer may be in (RFC 6890 special-purpose
// registry and friends). Order matters only for overlaps: first match wins.
var v4Classes = []class{
	{netip.MustParsePrefix("255.255.255.255/32"), ReasonBroadcast},
	{netip.MustParsePrefix("0.0.0.0/8"), ReasonUnspecified}, // "this network": 0.x reaches the host itself on Linux
	{netip.MustParsePrefix("127.0.0.0/8"), ReasonLoopback},
	{netip.MustParsePrefix("10.0.0.0/8"), ReasonPrivate},
	{netip.MustParsePrefix("172.16.0.0/12"), ReasonPrivate},
	{netip.MustParsePrefix("192.168.0.0/16"), ReasonPrivate},
	{netip.MustParsePrefix("100.64.0.0/10"), ReasonCGNAT},
	{netip.MustParsePrefix("169.254.0.0/16"), ReasonLinkLocal}, // includes 169.254.169.254, cloud metadata
	{netip.MustParsePrefix("192.0.0.0/24"), ReasonReserved},    // IETF protocol assignments (incl. NAT64 discovery .170/.171)
	{netip.MustParsePrefix("192.0.2.0/24"), ReasonDocumentation},
	{netip.MustParsePrefix("198.51.100.0/24"), ReasonDocumentation},
	{netip.MustParsePrefix("203.0.113.0/24"), ReasonDocumentation},
	{netip.MustParsePrefix("192.88.99.0/24"), Reason6to4}, // 6to4 relay anycast
	{netip.MustParsePrefix("198.18.0.0/15"), ReasonBenchmark},
	{netip.MustParsePrefix("224.0.0.0/4"), ReasonMulticast},
	{netip.MustParsePrefix("240.0.0.0/4"), ReasonReserved},
}

// Prefixes of IPv6 forms that carry an IPv4 address.
var (
	pfxMapped     = netip.MustParsePrefix("::ffff:0.0.0.0/96")
	pfxTranslated = netip.MustParsePrefix("::ffff:0:0.0.0.0/96") // SIIT, RFC 2765
	pfxCompatible = netip.MustParsePrefix("::/96")
	pfxNAT64      = netip.MustParsePrefix("64:ff9b::/96")
	pfxNAT64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	pfx6to4       = netip.MustParsePrefix("2002::/16")
	pfxTeredo     = netip.MustParsePrefix("2001::/32")
	pfxGlobal     = netip.MustParsePrefix("2000::/3")
)

// v6Classes are IPv6 ranges denied outright (checked after the embedded-IPv4
// forms). Anything outside 2000::/3 is denied as reserved afterwards.
var v6Classes = []class{
	{netip.MustParsePrefix("2001:db8::/32"), ReasonDocumentation},
	{netip.MustParsePrefix("3fff::/20"), ReasonDocumentation},
	{netip.MustParsePrefix("2001:2::/48"), ReasonBenchmark},
	{netip.MustParsePrefix("2001::/23"), ReasonReserved}, // IETF protocol assignments (ORCHID, AMT, ...)
	{netip.MustParsePrefix("fc00::/7"), ReasonPrivate},   // unique local
	{netip.MustParsePrefix("fec0::/10"), ReasonPrivate},  // deprecated site-local
	{netip.MustParsePrefix("fe80::/10"), ReasonLinkLocal},
	{netip.MustParsePrefix("ff00::/8"), ReasonMulticast},
	{netip.MustParsePrefix("100::/64"), ReasonReserved}, // discard-only
}

// classify4 returns the class of an IPv4 address, or "" if it is an ordinary
// public address.
func classify4(a netip.Addr) PeerReason {
	for _, c := range v4Classes {
		if c.p.Contains(a) {
			return c.reason
		}
	}
	return ""
}

// embedded reports the IPv4 address an IPv6 address carries and the form that
// carries it: IPv4-compatible ::a.b.c.d, SIIT ::ffff:0:a.b.c.d, NAT64
// 64:ff9b::/96 and 64:ff9b:1::/48 (RFC 6052 /96 layout; the /48 local-use
// prefix may use other layouts, so it is denied whatever it holds), 6to4
// 2002:AABB:CCDD::/48 and Teredo (the client address, bits 96-127 inverted).
// IPv4-mapped addresses are not here: they are unmapped before classifying,
// because sending to one on a dual-stack socket sends to the IPv4 address.
func embedded(a netip.Addr) (v4 netip.Addr, form PeerReason, ok bool) {
	b := a.As16()
	switch {
	case pfxTranslated.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), ReasonIPv4Mapped, true
	case pfxCompatible.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), ReasonIPv4Compatible, true
	case pfxNAT64.Contains(a), pfxNAT64Local.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:16])), ReasonNAT64, true
	case pfx6to4.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), Reason6to4, true
	case pfxTeredo.Contains(a):
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), ReasonTeredo, true
	}
	return netip.Addr{}, "", false
}

// classify returns the reason a (already unmapped, zone stripped) address is
// denied by class, with the embedded IPv4 address that decided it if any, or
// "" for an ordinary public unicast address.
//
// Every IPv6 form that embeds an IPv4 address is denied, whatever it embeds:
// the relay would reach the IPv4 host through some translator, and no
// participant's candidate legitimately looks like that. The reason names the
// embedded address's class when it has one (so ::a.b.c.d carrying 127.0.0.1
// says loopback), otherwise the form (ipv4_compatible, nat64, 6to4, teredo).
func classify(a netip.Addr) (PeerReason, netip.Addr) {
	if a.Is4() {
		return classify4(a), netip.Addr{}
	}
	if a.IsUnspecified() {
		return ReasonUnspecified, netip.Addr{}
	}
	if a.IsLoopback() {
		return ReasonLoopback, netip.Addr{}
	}
	if v4, form, ok := embedded(a); ok {
		if r := classify4(v4); r != "" {
			return r, v4
		}
		return form, v4
	}
	for _, c := range v6Classes {
		if c.p.Contains(a) {
			return c.reason, netip.Addr{}
		}
	}
	if !pfxGlobal.Contains(a) {
		return ReasonReserved, netip.Addr{}
	}
	return "", netip.Addr{}
}
