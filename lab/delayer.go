package lab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// startDelayer sets up the delays between regions with netem or the TUN
// forwarder.
func (l *Lab) startDelayer(ctx context.Context, want Delayer) error {
	router := l.netns(routerName)
	if want == DelayerAuto {
		want = DelayerTUN
		if netemAvailable(ctx, router) {
			want = DelayerNetem
		}
	}
	l.delayer = want
	if want == DelayerNetem {
		return l.startNetem(ctx)
	}
	return l.startTUN(ctx)
}

// netemAvailable tries a netem qdisc on the router's loopback.
func netemAvailable(ctx context.Context, router string) bool {
	if err := run(ctx, "", "tc", "-n", router, "qdisc", "add", "dev", "lo", "root", "handle", "1:", "netem", "delay", "1ms"); err != nil {
		return false
	}
	run(ctx, "", "tc", "-n", router, "qdisc", "del", "dev", "lo", "root")
	return true
}

// startTUN creates tun0 in the router and routes every packet that comes
// in on a host link into it (policy routing: from each host link, table
// 100, whose only route is tun0). Packets the forwarder writes back come
// in on tun0 and follow the main table to their host's link.
func (l *Lab) startTUN(ctx context.Context) error {
	router := l.netns(routerName)
	err := inNetns(router, func() error {
		var err error
		l.tun, err = openTUN(tunName)
		return err
	})
	if err != nil {
		return err
	}
	lines := []string{
		"link set " + tunName + " mtu 1500 up",
		"route add default dev " + tunName + " table 100",
	}
	if l.ipv6 {
		lines = append(lines, "route add ::/0 dev "+tunName+" table 100")
	}
	for _, h := range l.hosts {
		lines = append(lines, fmt.Sprintf("rule add iif %s lookup 100 pref 100", h.link))
	}
	if err := ipBatch(ctx, router, lines...); err != nil {
		return err
	}
	if l.ipv6 {
		// ip rule takes IPv4 unless told -6, in batch mode too.
		var rules []string
		for _, h := range l.hosts {
			rules = append(rules, fmt.Sprintf("rule add iif %s lookup 100 pref 100", h.link))
		}
		if err := run(ctx, strings.Join(rules, "\n")+"\n", "ip", "-6", "-n", router, "-batch", "-"); err != nil {
			return err
		}
	}
	n := len(l.regions)
	l.fwd = newForwarder(l.tun, n)
	l.mu.Lock()
	for p, k := range l.links {
		l.fwd.setLink(p/n, p%n, k)
	}
	l.mu.Unlock()
	l.fwd.run()
	return nil
}

// Netem mode: each router-side host link (the egress towards a host of
// region B) gets an htb root qdisc with one class per source region A,
// classid 1:<A+16 in hex>, selected by a u32 filter on A's subnet, whose
// leaf is a netem qdisc with A→B's delay. Other traffic is not classified
// and leaves at once.

func classID(src int) int { return src + 16 }

// netemLeaf is the leaf qdisc of a class: netem with the link's delay.
func netemLeaf(k Link) string {
	s := fmt.Sprintf("netem limit 100000 delay %dus", k.Delay.Microseconds())
	if k.Jitter > 0 {
		s += fmt.Sprintf(" %dus", k.Jitter.Microseconds())
	}
	if k.Loss > 0 {
		s += fmt.Sprintf(" loss %g%%", k.Loss*100)
	}
	return s
}

func (l *Lab) startNetem(ctx context.Context) error {
	n := len(l.regions)
	var lines []string
	for _, h := range l.hosts {
		lines = append(lines, fmt.Sprintf("qdisc add dev %s root handle 1: htb", h.link))
		for src := range n {
			c := classID(src)
			lines = append(lines,
				fmt.Sprintf("class add dev %s parent 1: classid 1:%x htb rate 10gbit", h.link, c),
				fmt.Sprintf("qdisc add dev %s parent 1:%x handle %x: %s", h.link, c, c, l.leaf(l.links[src*n+h.region])),
				fmt.Sprintf("filter add dev %s parent 1: protocol ip prio 1 u32 match ip src %s flowid 1:%x", h.link, subnet(src), c))
			if l.ipv6 {
				lines = append(lines, fmt.Sprintf("filter add dev %s parent 1: protocol ipv6 prio 2 u32 match ip6 src %s flowid 1:%x", h.link, subnet6(src), c))
			}
		}
	}
	return tcBatch(ctx, l.netns(routerName), lines...)
}

// netemChange sets the delay of a→b and b→a (l.mu held).
func (l *Lab) netemChange(ctx context.Context, a, b int, k Link) error {
	var lines []string
	for _, h := range l.hosts {
		src := -1
		switch h.region {
		case b:
			src = a
		case a:
			src = b
		}
		if src < 0 {
			continue
		}
		c := classID(src)
		lines = append(lines, fmt.Sprintf("qdisc change dev %s parent 1:%x handle %x: %s", h.link, c, c, l.leaf(k)))
	}
	return tcBatch(ctx, l.netns(routerName), lines...)
}

// subnet is region ri's subnet.
func subnet(ri int) string {
	p := Prefix.Addr().As4()
	return fmt.Sprintf("%d.%d.%d.0/24", p[0], p[1], ri+1)
}

// subnet6 is region ri's IPv6 subnet.
func subnet6(ri int) string {
	return netip.PrefixFrom(hostAddr6(ri, 0, true), 64).Masked().String()
}

// tcBatch runs tc in namespace ns with the commands in lines.
func tcBatch(ctx context.Context, ns string, lines ...string) error {
	if len(lines) == 0 {
		return nil
	}
	return run(ctx, strings.Join(lines, "\n")+"\n", "tc", "-n", ns, "-batch", "-")
}
