package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// netnsPrefix starts the name of every namespace a lab creates:
// stlab-<id>-router and stlab-<id>-<host>.
const netnsPrefix = "stlab-"

// routerName is the router's name in namespace names.
const routerName = "router"

// tunName is the forwarder's device in the router namespace.
const tunName = "tun0"

// Lab is a running lab. Its methods may be called from any goroutine.
type Lab struct {
	id      string
	log     *slog.Logger
	regions []Region
	hosts   []Host
	byName  map[string]int // host and region names to an index in hosts
	delayer Delayer        // DelayerNetem or DelayerTUN
	ipv6    bool
	leaf    func(Link) string

	fwd *forwarder // DelayerTUN only
	tun *os.File

	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex // guards the fields below
	links  []Link     // by pair src*len(regions)+dst, for netem
	closed bool
}

// Host is one host of a lab: a network namespace with one interface, eth0.
type Host struct {
	Name   string // <region>-<index>, e.g. "eu-0"
	Region string
	Addr   netip.Addr
	Addr6  netip.Addr // only with Spec.IPv6
	Netns  string     // namespace name, for `ip netns exec <Netns> ...`
	region int        // index in Lab.regions
	link   string     // the router's end of its veth link
}

// options are knobs for tests of this package.
type options struct {
	leaf func(Link) string // netem's leaf qdisc for a link; default netemLeaf
}

// New creates the lab spec describes: its namespaces, links, addresses,
// routes and delays. On failure it removes whatever it had created.
// Close the Lab to remove it.
func New(ctx context.Context, spec Spec) (*Lab, error) {
	return newLab(ctx, spec, options{})
}

func newLab(ctx context.Context, spec Spec, opt options) (l *Lab, err error) {
	spec.Regions = slices.Clone(spec.Regions) // Validate fills in defaults
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	l = &Lab{
		log:     spec.Logger,
		regions: spec.Regions,
		byName:  map[string]int{},
		leaf:    opt.leaf,
		ipv6:    spec.IPv6,
		links:   make([]Link, len(spec.Regions)*len(spec.Regions)),
	}
	if l.leaf == nil {
		l.leaf = netemLeaf
	}
	regionIdx := map[string]int{}
	for ri, r := range spec.Regions {
		regionIdx[r.Name] = ri
		for hi := range r.Hosts {
			h := Host{
				Name:   fmt.Sprintf("%s-%d", r.Name, hi),
				Region: r.Name,
				Addr:   hostAddr(ri, hi),
				Addr6:  hostAddr6(ri, hi, spec.IPv6),
				region: ri,
				link:   fmt.Sprintf("h%d", len(l.hosts)),
			}
			if hi == 0 {
				l.byName[r.Name] = len(l.hosts)
			}
			l.byName[h.Name] = len(l.hosts)
			l.hosts = append(l.hosts, h)
		}
	}
	n := len(spec.Regions)
	for _, k := range spec.Links {
		a, b := regionIdx[k.A], regionIdx[k.B]
		l.links[a*n+b], l.links[b*n+a] = k, k
	}

	if l.id, err = claimID(spec.Name); err != nil {
		return nil, err
	}
	for i := range l.hosts {
		l.hosts[i].Netns = l.netns(l.hosts[i].Name)
	}
	defer func() {
		if err != nil {
			if cerr := l.Close(); cerr != nil {
				l.log.Warn("lab: cleanup after failed start", "lab", l.id, "err", cerr)
			}
			l = nil
		}
	}()
	if err := l.build(ctx); err != nil {
		return l, fmt.Errorf("lab %s: %w", l.id, err)
	}
	if err := l.startDelayer(ctx, spec.Delayer); err != nil {
		return l, fmt.Errorf("lab %s: %w", l.id, err)
	}
	l.log.Debug("lab: up", "lab", l.id, "hosts", len(l.hosts), "delayer", l.delayer)
	return l, nil
}

// hostAddr is the address of host hi of region ri.
func hostAddr(ri, hi int) netip.Addr {
	p := Prefix.Addr().As4()
	return netip.AddrFrom4([4]byte{p[0], p[1], byte(ri + 1), byte(hi + 10)})
}

// hostAddr6 is the IPv6 address of host hi of region ri, if on.
func hostAddr6(ri, hi int, on bool) netip.Addr {
	if !on {
		return netip.Addr{}
	}
	a := Prefix6.Addr().As16()
	a[6], a[7] = byte((ri+1)>>8), byte(ri+1)
	a[15] = byte(hi + 10)
	return netip.AddrFrom16(a)
}

// netns is the namespace name of a host (or of the router).
func (l *Lab) netns(host string) string { return netnsPrefix + l.id + "-" + host }

// build creates the namespaces, links, addresses and routes.
func (l *Lab) build(ctx context.Context) error {
	router := l.netns(routerName)
	add := []string{"netns add " + router}
	for _, h := range l.hosts {
		add = append(add, "netns add "+h.Netns)
	}
	if err := ipBatch(ctx, "", add...); err != nil {
		return err
	}
	// Before any link exists, so every link inherits the defaults: the
	// router forwards, and must not drop packets coming back from the TUN
	// device (their reverse path is a veth link, not tun0).
	sysctls := map[string]string{
		"net/ipv4/ip_forward":                  "1",
		"net/ipv4/conf/all/rp_filter":          "0",
		"net/ipv4/conf/default/rp_filter":      "0",
		"net/ipv4/conf/all/send_redirects":     "0",
		"net/ipv4/conf/default/send_redirects": "0",
	}
	// No duplicate address detection: until it ends (about a second), a
	// link-local address is tentative and neighbour discovery stalls.
	noDAD := map[string]string{
		"net/ipv6/conf/all/accept_dad":     "0",
		"net/ipv6/conf/default/accept_dad": "0",
	}
	if l.ipv6 {
		sysctls["net/ipv6/conf/all/forwarding"] = "1"
		maps.Copy(sysctls, noDAD)
		for _, h := range l.hosts {
			if err := inNetns(h.Netns, func() error { return writeSysctls(noDAD) }); err != nil {
				return err
			}
		}
	}
	if err := inNetns(router, func() error { return writeSysctls(sysctls) }); err != nil {
		return err
	}
	var links, routes []string
	routes = append(routes, "link set lo up")
	for _, h := range l.hosts {
		links = append(links, fmt.Sprintf("link add %s netns %s type veth peer name eth0 netns %s", h.link, router, h.Netns))
		routes = append(routes,
			fmt.Sprintf("addr add %s/32 dev %s", RouterAddr, h.link),
			fmt.Sprintf("link set %s up", h.link),
			fmt.Sprintf("route add %s/32 dev %s", h.Addr, h.link))
		if l.ipv6 {
			routes = append(routes,
				fmt.Sprintf("addr add %s/128 dev %s nodad", RouterAddr6, h.link),
				fmt.Sprintf("route add %s/128 dev %s", h.Addr6, h.link))
		}
	}
	if err := ipBatch(ctx, "", links...); err != nil {
		return err
	}
	if err := ipBatch(ctx, router, routes...); err != nil {
		return err
	}
	for _, h := range l.hosts {
		lines := []string{
			"link set lo up",
			"link set eth0 up",
			fmt.Sprintf("addr add %s/32 dev eth0", h.Addr),
			fmt.Sprintf("route add %s/32 dev eth0", RouterAddr),
			fmt.Sprintf("route add default via %s dev eth0", RouterAddr),
		}
		if l.ipv6 {
			lines = append(lines,
				fmt.Sprintf("addr add %s/128 dev eth0 nodad", h.Addr6),
				fmt.Sprintf("route add %s/128 dev eth0", RouterAddr6),
				fmt.Sprintf("route add ::/0 via %s dev eth0", RouterAddr6))
		}
		if err := ipBatch(ctx, h.Netns, lines...); err != nil {
			return err
		}
	}
	return nil
}

// writeSysctls writes /proc/sys entries in the calling thread's namespace.
func writeSysctls(kv map[string]string) error {
	for k, v := range kv {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
	}
	return nil
}

// ID is the lab's name, part of every namespace name.
func (l *Lab) ID() string { return l.id }

// Delayer says how this lab delays packets: DelayerNetem or DelayerTUN.
func (l *Lab) Delayer() Delayer { return l.delayer }

// Hosts returns every host, region by region.
func (l *Lab) Hosts() []Host { return append([]Host(nil), l.hosts...) }

// Host returns the host of that name; a region's name stands for its
// first host.
func (l *Lab) Host(name string) (Host, bool) {
	i, ok := l.byName[name]
	if !ok {
		return Host{}, false
	}
	return l.hosts[i], true
}

// Addr returns the IPv4 address of a host (or of a region's first host),
// or the zero Addr if there is no such host.
func (l *Lab) Addr(host string) netip.Addr {
	h, _ := l.Host(host)
	return h.Addr
}

// Addr6 returns the IPv6 address of a host (or of a region's first host),
// or the zero Addr if there is no such host or the lab has no IPv6.
func (l *Lab) Addr6(host string) netip.Addr {
	h, _ := l.Host(host)
	return h.Addr6
}

// RouterNetns is the router's namespace name, for looking at its
// interfaces and qdiscs.
func (l *Lab) RouterNetns() string { return l.netns(routerName) }

// Stats returns the TUN forwarder's counters (zero in netem mode).
func (l *Lab) Stats() Stats {
	if l.fwd == nil {
		return Stats{}
	}
	return l.fwd.stats()
}

// Command returns a command that runs name with args inside a host's
// namespace (`ip netns exec`). For an unknown host, the command's Start
// fails with ErrUnknownHost.
func (l *Lab) Command(ctx context.Context, host, name string, args ...string) *exec.Cmd {
	h, ok := l.Host(host)
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.Netns, name}, args...)...)
	if !ok {
		cmd.Err = fmt.Errorf("%w: %q", ErrUnknownHost, host)
	}
	return cmd
}

// Run runs argv inside a host's namespace and returns its combined output.
func (l *Lab) Run(ctx context.Context, host string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("lab: Run: no command")
	}
	return l.Command(ctx, host, argv[0], argv[1:]...).CombinedOutput()
}

// Do runs f on an OS thread inside a host's namespace and returns f's
// error. Sockets f creates belong to that namespace and keep working
// after Do returns, from any goroutine; f must not start goroutines that
// expect to be in the namespace.
func (l *Lab) Do(host string, f func() error) error {
	h, ok := l.Host(host)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownHost, host)
	}
	return inNetns(h.Netns, f)
}

// SetDelay changes the one-way delay between regions a and b, both ways,
// keeping their jitter and loss. Packets already held keep their delay.
func (l *Lab) SetDelay(a, b string, d time.Duration) error {
	l.mu.Lock()
	k, err := l.link(a, b)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	k.Delay = d
	return l.SetLink(k)
}

// SetLink changes the path between regions l.A and l.B, both ways.
func (l *Lab) SetLink(k Link) error {
	if err := k.check(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if _, err := l.link(k.A, k.B); err != nil {
		return err
	}
	a, b := l.regionIndex(k.A), l.regionIndex(k.B)
	n := len(l.regions)
	l.links[a*n+b], l.links[b*n+a] = k, k
	if l.fwd != nil {
		l.fwd.setLink(a, b, k)
		l.fwd.setLink(b, a, k)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return l.netemChange(ctx, a, b, k)
}

// Link returns the current path between regions a and b.
func (l *Lab) Link(a, b string) (Link, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.link(a, b)
}

// link returns the current link between regions a and b (l.mu held).
func (l *Lab) link(a, b string) (Link, error) {
	ai, bi := l.regionIndex(a), l.regionIndex(b)
	if ai < 0 || bi < 0 {
		return Link{}, fmt.Errorf("%w: no region %q or %q", ErrUnknownHost, a, b)
	}
	k := l.links[ai*len(l.regions)+bi]
	k.A, k.B = a, b
	return k, nil
}

func (l *Lab) regionIndex(name string) int {
	for i, r := range l.regions {
		if r.Name == name {
			return i
		}
	}
	return -1
}

// Close stops the delayer, kills (by pid) any process still inside the
// lab's namespaces, removes the namespaces with their links, and then the
// lab's owner record. It is idempotent and returns when all is gone.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		var errs []error
		if l.tun != nil {
			errs = append(errs, l.tun.Close())
		}
		if l.fwd != nil {
			l.fwd.stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		errs = append(errs, removeLab(ctx, l.id))
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// newID returns 6 random hex digits.
func newID() string {
	var b [3]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// parseNetns splits a lab namespace name into lab id and host.
func parseNetns(name string) (id, host string, ok bool) {
	rest, ok := strings.CutPrefix(name, netnsPrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, "-")
}
