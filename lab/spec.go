package lab

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Limits of a Spec.
const (
	MaxRegions = 32  // regions per lab
	MaxHosts   = 100 // hosts per region
	MaxDelay   = time.Minute
)

// Prefix holds every address of every lab; labs do not collide because
// each lives in its own namespaces.
var Prefix = netip.MustParsePrefix("10.77.0.0/16")

// RouterAddr is the router's address, every host's default gateway.
var RouterAddr = netip.MustParseAddr("10.77.0.1")

// Prefix6 holds every IPv6 address of every lab (Spec.IPv6): region i is
// fd77:0:0:<i+1>::/64 and its host j fd77:0:0:<i+1>::<j+10> (in hex).
var Prefix6 = netip.MustParsePrefix("fd77::/48")

// RouterAddr6 is the router's IPv6 address (Spec.IPv6).
var RouterAddr6 = netip.MustParseAddr("fd77::1")

// Spec describes a lab.
type Spec struct {
	// Name is the lab's id, part of every namespace name
	// (stapes-<Name>-<host>): 1 to 12 of [a-z0-9]. Default: 6 random hex
	// digits, so parallel labs never collide.
	Name string
	// Regions in order; region i gets the subnet 10.77.<i+1>.0/24.
	// At least one, at most MaxRegions.
	Regions []Region
	// Links are the paths between regions. A pair not listed has no delay,
	// and neither has the path between two hosts of one region unless a
	// Link names the region twice.
	Links []Link
	// IPv6 gives every host an IPv6 address too (Host.Addr6), delayed
	// like IPv4. Default off: IPv4 only.
	IPv6 bool
	// Delayer chooses how delays are made. Default DelayerAuto.
	Delayer Delayer
	// Logger receives what the lab does at debug level and problems at
	// warn level. Default: discard.
	Logger *slog.Logger
}

// Region is a named group of hosts.
type Region struct {
	// Name: 1 to 10 of [a-z0-9], starting with a letter (no '-': host
	// names are <region>-<index>).
	Name string
	// Hosts is the number of hosts, named <region>-0, <region>-1, ...
	// Default 1, at most MaxHosts.
	Hosts int
}

// Link is the path between two regions, the same in both directions.
type Link struct {
	A, B string
	// Delay is the one-way delay; a round trip between hosts of A and B
	// takes twice this.
	Delay time.Duration
	// Jitter spreads each packet's delay uniformly over Delay±Jitter
	// (never below zero). Packets of a pair stay in order.
	Jitter time.Duration
	// Loss is the probability, 0 to 1, that a packet is dropped.
	Loss float64
}

// Delayer is a way of delaying packets.
type Delayer int

const (
	// DelayerAuto uses netem when the kernel has it, the TUN forwarder
	// otherwise.
	DelayerAuto Delayer = iota
	// DelayerNetem uses tc netem in the router namespace; New fails if the
	// kernel lacks sch_netem.
	DelayerNetem
	// DelayerTUN forwards through a TUN device served by this process.
	DelayerTUN
)

func (d Delayer) String() string {
	switch d {
	case DelayerAuto:
		return "auto"
	case DelayerNetem:
		return "netem"
	case DelayerTUN:
		return "tun"
	}
	return "Delayer(" + strconv.Itoa(int(d)) + ")"
}

// Validate checks s and fills in the defaults. New calls it; callers may
// call it first to tell a mistake in the spec (wrapping ErrSpec) from a
// failure to build the lab.
func (s *Spec) Validate() error {
	if s.Name != "" && !validName(s.Name, 12, false) {
		return fmt.Errorf("%w: lab name %q: want 1 to 12 of [a-z0-9]", ErrSpec, s.Name)
	}
	if len(s.Regions) == 0 || len(s.Regions) > MaxRegions {
		return fmt.Errorf("%w: %d regions, want 1 to %d", ErrSpec, len(s.Regions), MaxRegions)
	}
	seen := map[string]bool{}
	for i := range s.Regions {
		r := &s.Regions[i]
		if !validName(r.Name, 10, true) {
			return fmt.Errorf("%w: region name %q: want 1 to 10 of [a-z0-9] starting with a letter", ErrSpec, r.Name)
		}
		if seen[r.Name] {
			return fmt.Errorf("%w: region %q listed twice", ErrSpec, r.Name)
		}
		seen[r.Name] = true
		if r.Hosts == 0 {
			r.Hosts = 1
		}
		if r.Hosts < 0 || r.Hosts > MaxHosts {
			return fmt.Errorf("%w: region %q: %d hosts, want 1 to %d", ErrSpec, r.Name, r.Hosts, MaxHosts)
		}
	}
	for _, l := range s.Links {
		if !seen[l.A] || !seen[l.B] {
			return fmt.Errorf("%w: link %s-%s names an unknown region", ErrSpec, l.A, l.B)
		}
		if err := l.check(); err != nil {
			return err
		}
	}
	switch s.Delayer {
	case DelayerAuto, DelayerNetem, DelayerTUN:
	default:
		return fmt.Errorf("%w: %v", ErrSpec, s.Delayer)
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (l Link) check() error {
	if l.Delay < 0 || l.Delay > MaxDelay || l.Jitter < 0 || l.Jitter > MaxDelay {
		return fmt.Errorf("%w: link %s-%s: delay %v jitter %v, want 0 to %v", ErrSpec, l.A, l.B, l.Delay, l.Jitter, MaxDelay)
	}
	if !(l.Loss >= 0 && l.Loss <= 1) {
		return fmt.Errorf("%w: link %s-%s: loss %v, want 0 to 1", ErrSpec, l.A, l.B, l.Loss)
	}
	return nil
}

// validName reports whether s is 1 to max of [a-z0-9], starting with a
// letter if letter is set.
func validName(s string, max int, letter bool) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && (i > 0 || !letter):
		default:
			return false
		}
	}
	return true
}

// ParseRegions parses a comma-separated list of region names, each
// optionally followed by ":hosts" (e.g. "eu:2,us,ap").
func ParseRegions(s string) ([]Region, error) {
	var rs []Region
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, hosts, found := strings.Cut(f, ":")
		r := Region{Name: name, Hosts: 1}
		if found {
			n, err := strconv.Atoi(hosts)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%w: region %q: host count %q is not a positive number", ErrSpec, name, hosts)
			}
			r.Hosts = n
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: no regions", ErrSpec)
	}
	return rs, nil
}

// ParseLinks parses a comma-separated list of links, each
// "A-B=DELAY[/JITTER[/LOSS%]]", e.g. "eu-us=40ms,eu-ap=120ms/5ms,us-ap=90ms/0s/0.5%".
func ParseLinks(s string) ([]Link, error) {
	var ls []Link
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		pair, val, ok := strings.Cut(f, "=")
		a, b, ok2 := strings.Cut(pair, "-")
		if !ok || !ok2 || a == "" || b == "" {
			return nil, fmt.Errorf("%w: link %q: want A-B=DELAY[/JITTER[/LOSS%%]]", ErrSpec, f)
		}
		l := Link{A: a, B: b}
		parts := strings.Split(val, "/")
		if len(parts) > 3 {
			return nil, fmt.Errorf("%w: link %q: want A-B=DELAY[/JITTER[/LOSS%%]]", ErrSpec, f)
		}
		var err error
		if l.Delay, err = time.ParseDuration(parts[0]); err != nil {
			return nil, fmt.Errorf("%w: link %q: delay: %v", ErrSpec, f, err)
		}
		if len(parts) > 1 {
			if l.Jitter, err = time.ParseDuration(parts[1]); err != nil {
				return nil, fmt.Errorf("%w: link %q: jitter: %v", ErrSpec, f, err)
			}
		}
		if len(parts) > 2 {
			p, ok := strings.CutSuffix(parts[2], "%")
			v, err := strconv.ParseFloat(p, 64)
			if !ok || err != nil {
				return nil, fmt.Errorf("%w: link %q: loss %q: want a percentage like 0.5%%", ErrSpec, f, parts[2])
			}
			l.Loss = v / 100
		}
		if err := l.check(); err != nil {
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}
