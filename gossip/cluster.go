// Package gossip is relay membership: a [Cluster] of relays over
// hashicorp/memberlist (SWIM gossip), each carrying its [Meta] (id, region,
// public addresses, load, versions, draining), with events when members
// join, leave, fail or change. Gossip carries membership and hints only,
// never commands.
package gossip

import (
	"context"
	"fmt"
	"log"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Cluster is this node's membership in a gossip cluster.
type Cluster struct {
	cfg     Config
	mc      *memberlist.Config
	ml      *memberlist.Memberlist
	tr      *countingTransport
	traffic traffic
	metrics *metrics
	queue   chan Event // nil without OnEvent
	settle  settle
	stop    chan struct{} // closed by Close: stops settling
	wg      sync.WaitGroup

	// life orders Join, Leave and UpdateMeta (readers) against Close.
	life   sync.RWMutex
	closed bool // under life

	mu      sync.Mutex        // guards the fields below
	meta    []byte            // our encoded Meta
	id      string            // our Meta.ID, fixed
	addr    netip.AddrPort    // our advertised address, fixed
	live    map[string]Member // members alive, by id, self included
	gone    map[string]Event  // members last seen leaving or failing
	closing bool              // no more events are queued
	leaving bool              // Leave was called: our Meta says so
	// leavers are members that told us they are leaving (leave notices),
	// so their disappearance is a leave even if their Leaving flag has not
	// reached us; cleared when they come back.
	leavers map[string]time.Time
	digest  digest // of live
	// Settling (settle.go).
	settling   bool      // the settle loop runs
	converged  bool      // settling ended with a stable member list
	lastChange time.Time // live last changed
	agree      int       // push/pulls in a row whose peer had our digest
	settleEnd  time.Time // settling gives up at this time
}

// New starts gossip listeners from cfg; the node is alone until Join.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	mc, err := cfg.memberlist()
	if err != nil {
		return nil, err
	}
	meta, _ := cfg.Meta.MarshalBinary() // checked by validate
	c := &Cluster{
		cfg:     cfg,
		mc:      mc,
		metrics: newMetrics(),
		meta:    meta,
		id:      cfg.Meta.ID,
		live:    make(map[string]Member),
		gone:    make(map[string]Event),
		leavers: make(map[string]time.Time),
		settle:  cfg.settle(),
		stop:    make(chan struct{}),
	}

	logger := newStdLogger(cfg.Logger)
	nt, err := listen(mc, logger)
	if err != nil {
		return nil, err
	}
	port := nt.GetAutoBindPort()
	mc.BindPort = port
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = port
	}
	c.tr = newCountingTransport(nt, &c.traffic)
	if ip, port, err := c.tr.FinalAdvertiseAddr(mc.AdvertiseAddr, mc.AdvertisePort); err == nil {
		if a, ok := netip.AddrFromSlice(ip); ok {
			c.addr = netip.AddrPortFrom(a.Unmap(), uint16(port))
		}
	}
	mc.Transport = c.tr
	mc.Logger = logger
	mc.Delegate = delegate{c}
	mc.Events = delegate{c}
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			_ = c.tr.Shutdown()
			return nil, fmt.Errorf("%w: Keys: %w", ErrConfig, err)
		}
		mc.Keyring = kr
	}

	if cfg.OnEvent != nil {
		c.queue = make(chan Event, cfg.EventQueue)
		c.wg.Add(1)
		go c.dispatch()
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = c.tr.Shutdown()
		c.stopEvents()
		return nil, fmt.Errorf("gossip: start: %w", err)
	}
	c.ml = ml
	if err := c.metrics.register(cfg.Registerer, c); err != nil {
		_ = ml.Shutdown()
		c.stopEvents()
		return nil, fmt.Errorf("gossip: metrics: %w", err)
	}
	return c, nil
}

// listen binds the UDP and TCP listeners. With port 0 the TCP port the
// kernel picks may be taken for UDP, so it retries like memberlist does.
func listen(mc *memberlist.Config, logger *log.Logger) (*memberlist.NetTransport, error) {
	ntc := &memberlist.NetTransportConfig{BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: logger}
	tries := 1
	if mc.BindPort == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		if nt, err = memberlist.NewNetTransport(ntc); err == nil {
			return nt, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("gossip: listen %s:%d: %w", mc.BindAddr, mc.BindPort, err)
}

// dispatch delivers queued events to OnEvent until the queue is closed.
func (c *Cluster) dispatch() {
	defer c.wg.Done()
	for ev := range c.queue {
		c.cfg.OnEvent(ev)
	}
}

// stopEvents stops queueing events and waits for OnEvent to finish the
// ones already queued.
func (c *Cluster) stopEvents() {
	c.mu.Lock()
	already := c.closing
	c.closing = true
	if !already && c.queue != nil {
		close(c.queue)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// Addr is the address other members reach this node on.
func (c *Cluster) Addr() netip.AddrPort { return c.addr }

// Join contacts seeds ("host:port", or "host" for our port) and syncs
// state with each one reached. It returns how many were reached; ErrJoin
// if none. Each seed takes at most Config.TCPTimeout; Join returns early
// when ctx ends and the attempt finishes in the background (Close waits).
// After a successful Join the node settles in the background (see
// Config.SettleInterval and Converged); JoinUntilStable also waits for it.
func (c *Cluster) Join(ctx context.Context, seeds []string) (int, error) {
	c.life.RLock()
	if c.closed {
		c.life.RUnlock()
		return 0, ErrClosed
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.life.RUnlock()
		n, err := c.ml.Join(seeds)
		if n > 0 {
			c.startSettling()
		}
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		if r.n == 0 {
			return 0, fmt.Errorf("%w: %w", ErrJoin, r.err)
		}
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("gossip: join: %w", ctx.Err())
	}
}

// UpdateMeta replaces this node's metadata (same ID) and gossips it. It
// waits until the update has been sent to the cluster, or ctx ends (the
// update still spreads).
func (c *Cluster) UpdateMeta(ctx context.Context, m Meta) error {
	if m.ID != c.id {
		return fmt.Errorf("gossip: update meta: %w: id %q is not ours", ErrMetaFormat, m.ID)
	}
	c.life.RLock()
	defer c.life.RUnlock()
	if c.closed {
		return ErrClosed
	}
	if err := c.setMeta(m); err != nil {
		return fmt.Errorf("gossip: update meta: %w", err)
	}
	if err := c.ml.UpdateNode(c.wait(ctx)); err != nil {
		return fmt.Errorf("gossip: update meta: %w", err)
	}
	return ctx.Err()
}

// setMeta encodes m as our metadata, flagged Leaving after Leave.
func (c *Cluster) setMeta(m Meta) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m.Leaving = m.Leaving || c.leaving
	b, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	c.meta = b
	return nil
}

// wait is how long memberlist may block for ctx: until its deadline, else
// TCPTimeout. (memberlist takes a timeout, not a context.)
func (c *Cluster) wait(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return c.mc.TCPTimeout
}

// Close stops gossip without leaving (call Leave first to depart cleanly;
// otherwise the others declare this node failed). It waits for the
// listeners, the event handler and any Join in progress; memberlist's own
// timers and handlers stop on their own shortly after. Idempotent.
func (c *Cluster) Close() error {
	c.life.Lock()
	first := !c.closed
	c.closed = true
	c.life.Unlock()
	if first {
		close(c.stop)
		_ = c.ml.Shutdown() // stops the transport: listeners and forwarders
	}
	c.stopEvents()
	return nil
}

// Members returns the live members by id, this node included. It is
// built from memberlist's events (memberlist.Members hands out nodes it
// keeps changing), so a member under suspicion shows as alive until it is
// declared dead.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	out := slices.Collect(maps.Values(c.live))
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Meta.ID, b.Meta.ID) })
	return out
}

// Member returns the live member with the given id.
func (c *Cluster) Member(id string) (Member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.live[id]
	return m, ok
}

// Traffic is gossip traffic since New, as counted at the transport: after
// encryption, compression and the cluster label, without IP/UDP/TCP
// headers (add 28 bytes per UDP packet on IPv4).
type Traffic struct {
	UDPSent, UDPReceived         uint64 // bytes
	TCPSent, TCPReceived         uint64 // bytes
	PacketsSent, PacketsReceived uint64 // UDP packets
}

// Traffic returns the gossip traffic counted so far.
func (c *Cluster) Traffic() Traffic {
	t := &c.traffic
	return Traffic{
		UDPSent: t.udpSent.Load(), UDPReceived: t.udpRecv.Load(),
		TCPSent: t.tcpSent.Load(), TCPReceived: t.tcpRecv.Load(),
		PacketsSent: t.udpPktSent.Load(), PacketsReceived: t.udpPktRecv.Load(),
	}
}
