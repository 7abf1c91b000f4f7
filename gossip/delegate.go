package gossip

import (
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate is what memberlist calls back. Concurrency contract:
// memberlist calls these methods from its own goroutines (packet handler,
// stream handlers, probe timers), the event methods while it holds its
// node lock. So they never block, never call back into memberlist, and do
// bounded work: decode at most MaxMetaSize bytes, take c.mu briefly, and
// put the event on a bounded queue, counting a drop when it is full.
type delegate struct{ c *Cluster }

var (
	_ memberlist.Delegate      = delegate{}
	_ memberlist.EventDelegate = delegate{}
)

// NodeMeta returns our encoded metadata, checked against MaxMetaSize when
// it was set.
func (d delegate) NodeMeta(limit int) []byte {
	d.c.mu.Lock()
	defer d.c.mu.Unlock()
	if len(d.c.meta) > limit {
		return nil // cannot happen: MaxMetaSize == memberlist.MetaMaxSize
	}
	return d.c.meta
}

// NotifyMsg receives our own messages between members (leave notices);
// never commands.
func (d delegate) NotifyMsg(b []byte) { d.c.userMsg(b) }

// GetBroadcasts: we gossip nothing of our own.
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState is the digest of our member list, sent with every push/pull
// when settling is on (settle.go); nil otherwise, as plain memberlist.
func (d delegate) LocalState(join bool) []byte {
	if d.c.settle.interval <= 0 {
		return nil
	}
	d.c.mu.Lock()
	defer d.c.mu.Unlock()
	return d.c.digest.marshal()
}

// MergeRemoteState receives the peer's digest after its state was merged.
func (d delegate) MergeRemoteState(buf []byte, join bool) { d.c.remoteDigest(buf) }

func (d delegate) NotifyJoin(n *memberlist.Node)   { d.c.event(EventJoin, n) }
func (d delegate) NotifyUpdate(n *memberlist.Node) { d.c.event(EventUpdate, n) }

// NotifyLeave: memberlist never sets n.State (its own node state shadows
// it), so a leave is told from a failure by the Leaving flag the member
// gossiped before it went, or by its leave notice (leave.go).
func (d delegate) NotifyLeave(n *memberlist.Node) {
	var m Meta
	leaving := m.UnmarshalBinary(n.Meta) == nil && m.Leaving
	if !leaving {
		d.c.mu.Lock()
		_, leaving = d.c.leavers[n.Name]
		d.c.mu.Unlock()
	}
	if leaving {
		d.c.event(EventLeave, n)
		return
	}
	d.c.event(EventFailed, n)
}

// member converts a memberlist node.
func (c *Cluster) member(n *memberlist.Node) Member {
	m := Member{State: stateOf(n.State), Local: n.Name == c.cfg.Meta.ID}
	if ip, ok := netip.AddrFromSlice(n.Addr); ok {
		m.Addr = netip.AddrPortFrom(ip.Unmap(), n.Port)
	}
	if err := m.Meta.UnmarshalBinary(n.Meta); err != nil {
		m.Meta = Meta{ID: n.Name}
		m.MetaErr = err
	} else if m.Meta.ID != n.Name {
		m.Meta.ID = n.Name // the gossip name is the identity
	}
	return m
}

func stateOf(s memberlist.NodeStateType) State {
	switch s {
	case memberlist.StateAlive:
		return StateAlive
	case memberlist.StateSuspect:
		return StateSuspect
	case memberlist.StateDead:
		return StateDead
	case memberlist.StateLeft:
		return StateLeft
	}
	return 0
}

// event records a membership change and queues it for OnEvent. It runs
// under memberlist's node lock, the only place n may be read: memberlist
// keeps changing the nodes it hands out.
func (c *Cluster) event(t EventType, n *memberlist.Node) {
	ev := Event{Type: t, Member: c.member(n), At: time.Now()}
	switch t {
	case EventLeave:
		ev.Member.State = StateLeft
	case EventFailed:
		ev.Member.State = StateDead
	}
	c.metrics.events.WithLabelValues(t.String()).Inc()
	if ev.Member.MetaErr != nil {
		c.metrics.metaErrors.Inc()
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	_, known := c.live[n.Name]
	switch t {
	case EventLeave, EventFailed:
		if known {
			c.digest.remove(n.Name)
			c.lastChange = ev.At
		}
		delete(c.live, n.Name)
		c.gone[n.Name] = ev
	default:
		if !known {
			c.digest.add(n.Name)
			c.lastChange = ev.At
		}
		if t == EventJoin {
			delete(c.leavers, n.Name) // back after leaving
		}
		c.live[n.Name] = ev.Member
		delete(c.gone, n.Name)
	}
	if c.queue == nil {
		return
	}
	if c.closing {
		c.drop(dropClosed, ev)
		return
	}
	select {
	case c.queue <- ev:
	default:
		c.drop(dropQueueFull, ev)
	}
}

// drop counts and logs an event not delivered. Called with c.mu held.
func (c *Cluster) drop(reason string, ev Event) {
	c.metrics.drops.WithLabelValues(reason).Inc()
	c.cfg.Logger.Warn("gossip: event dropped", "reason", reason, "event", ev.Type.String(), "node", ev.Member.Meta.ID)
}
