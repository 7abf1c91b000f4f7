package turn

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// PeerPolicyConfig configures a PeerPolicy. The zero value denies every
// special-purpose address and allows public unicast peers.
type PeerPolicyConfig struct {
	// Allow lists prefixes that are allowed even though their class is denied
	// (a lab on 10.0.0.0/8, say). An address is allowed when a prefix holds it
	// or its unmapped form; IPv4-mapped prefixes (::ffff:10.0.0.0/104) are
	// taken as their IPv4 prefix. NAT64/6to4/Teredo/IPv4-compatible addresses
	// are allowed only by a prefix that holds the IPv6 address itself.
	// Allow never overrides RelayAddrs or CounterpartOnly. Default: none.
	Allow []netip.Prefix

	// RelayAddrs are the relay's own addresses (listen, relayed and public
	// 1:1 NAT addresses). Always denied as relay_self, allow list or not.
	// Default: none.
	RelayAddrs []netip.Addr

	// CounterpartOnly restricts peers to Counterparts: an allocation may send
	// only to the other participant's relayed candidates. Default: false.
	CounterpartOnly bool

	// Counterparts are the addresses allowed under CounterpartOnly; usually
	// set per allocation with PeerPolicy.WithCounterparts. They still pass
	// the class checks (a private counterpart needs an Allow entry too).
	Counterparts []netip.Addr
}

// PeerPolicy decides which peer addresses an allocation may get a permission
// for. It is immutable after construction and safe for concurrent use.
type PeerPolicy struct {
	allow           []netip.Prefix
	self            []netip.Addr
	counterpartOnly bool
	counterparts    []netip.Addr
}

// PeerError is the error Check returns; errors.Is(err, ErrPeerDenied) holds.
type PeerError struct {
	Addr     netip.Addr // the address as asked
	Reason   PeerReason // the class or policy rule that refused it
	Embedded netip.Addr // the IPv4 address an IPv6 form carried, if that decided
}

func (e *PeerError) Error() string {
	if e.Embedded.IsValid() {
		return fmt.Sprintf("%v: %s (embedded %v)", ErrPeerDenied, e.Reason, e.Embedded)
	}
	return fmt.Sprintf("%v: %s", ErrPeerDenied, e.Reason)
}

// Unwrap makes errors.Is(err, ErrPeerDenied) true.
func (e *PeerError) Unwrap() error { return ErrPeerDenied }

// NewPeerPolicy validates cfg and builds a policy.
func NewPeerPolicy(cfg PeerPolicyConfig) (*PeerPolicy, error) {
	p := &PeerPolicy{counterpartOnly: cfg.CounterpartOnly}
	for _, pfx := range cfg.Allow {
		if !pfx.IsValid() {
			return nil, fmt.Errorf("%w: allow prefix %v", ErrBadPolicy, pfx)
		}
		a := pfx.Addr().WithZone("")
		bits := pfx.Bits()
		if a.Is4In6() && bits >= 96 {
			a, bits = a.Unmap(), bits-96
		}
		p.allow = append(p.allow, netip.PrefixFrom(a, bits).Masked())
	}
	for _, a := range cfg.RelayAddrs {
		if !a.IsValid() {
			return nil, fmt.Errorf("%w: relay address %v", ErrBadPolicy, a)
		}
		p.self = append(p.self, canon(a))
	}
	for _, a := range cfg.Counterparts {
		if !a.IsValid() {
			return nil, fmt.Errorf("%w: counterpart %v", ErrBadPolicy, a)
		}
		p.counterparts = append(p.counterparts, canon(a))
	}
	return p, nil
}

// WithCounterparts returns a copy of p whose counterpart set is addrs
// (invalid addresses are skipped, so they match nothing).
func (p *PeerPolicy) WithCounterparts(addrs ...netip.Addr) *PeerPolicy {
	q := *p
	q.counterparts = make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a.IsValid() {
			q.counterparts = append(q.counterparts, canon(a))
		}
	}
	return &q
}

// canon unmaps a and drops its zone: the form every comparison uses.
func canon(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// Check returns nil if a permission toward addr may be created, otherwise a
// *PeerError naming the reason. The order is: invalid, relay_self, allow list,
// class, counterpart. IPv4-mapped addresses are unmapped first, so
// ::ffff:127.0.0.1 is loopback and ::ffff:0.0.0.0 unspecified.
func (p *PeerPolicy) Check(addr netip.Addr) error {
	if !addr.IsValid() {
		return &PeerError{Addr: addr, Reason: ReasonInvalid}
	}
	a := canon(addr)
	if slices.Contains(p.self, a) {
		return &PeerError{Addr: addr, Reason: ReasonRelaySelf}
	}
	if !p.allowed(a) {
		if r, v4 := classify(a); r != "" {
			return &PeerError{Addr: addr, Reason: r, Embedded: v4}
		}
	}
	if p.counterpartOnly && !slices.Contains(p.counterparts, a) {
		return &PeerError{Addr: addr, Reason: ReasonNotCounterpart}
	}
	return nil
}

// CheckIP is Check for a net.IP as pion's PermissionHandler hands it over
// (an IPv4 peer usually arrives in its 16-byte mapped form). A nil or
// malformed IP is denied as invalid.
func (p *PeerPolicy) CheckIP(ip net.IP) error {
	a, _ := netip.AddrFromSlice(ip) // a zero Addr on failure: denied as invalid
	return p.Check(a)
}

func (p *PeerPolicy) allowed(a netip.Addr) bool {
	for _, pfx := range p.allow {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}
