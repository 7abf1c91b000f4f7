package gossip

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// Leaving. memberlist tells its delegates that a member is gone, not
// whether it left or failed (it keeps that in a state it does not pass
// on). A member that leaves therefore says so twice before memberlist's
// own leave message goes out: its Meta gets the Leaving flag (gossiped
// like any update), and it sends a leave notice straight to every member
// over TCP. A member that learns of the departure by either is told
// EventLeave; only one that learnt neither reports EventFailed. The flag
// alone was not enough: memberlist's leave message replaces the pending
// update about the same node in every gossip queue, so at 100 members
// some never saw the flag and reported a clean leave as a failure.

// User message kinds (first byte of a memberlist user message). Members
// ignore kinds they do not know.
const msgLeaving = 1

// leaveFanout bounds the leave notices in flight at once.
const leaveFanout = 16

// Leave tells the cluster this node is leaving and waits until that has
// been gossiped, or ctx ends: our Meta flagged Leaving, a leave notice to
// every member, then memberlist's leave. The others report EventLeave,
// not EventFailed. The flag gets a third of the time left at most (its
// broadcast can queue behind others on a busy cluster; the notices say
// the same); an error means memberlist's leave was not gossiped in time.
// The node keeps answering until Close.
func (c *Cluster) Leave(ctx context.Context) error {
	c.life.RLock()
	defer c.life.RUnlock()
	if c.closed {
		return ErrClosed
	}
	c.mu.Lock()
	c.leaving = true
	var m Meta
	err := m.UnmarshalBinary(c.meta)
	c.mu.Unlock()
	if err == nil {
		err = c.setMeta(m)
	}
	if err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	if err := c.ml.UpdateNode(c.wait(ctx) / 3); err != nil {
		c.cfg.Logger.Debug("gossip: leaving flag not gossiped yet", "err", err)
	}
	c.sendLeaveNotices(ctx)
	if err := c.ml.Leave(c.wait(ctx)); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// sendLeaveNotices tells every live member, over TCP, that we are leaving;
// it returns when all were sent or failed, or ctx ended (the rest finish
// in the background within TCPTimeout; Close waits). A member that misses
// the notice still learns of the Leaving flag or, failing both, reports a
// failure.
func (c *Cluster) sendLeaveNotices(ctx context.Context) {
	msg := leaveNotice(c.id)
	c.mu.Lock()
	peers := make([]*memberlist.Node, 0, len(c.live))
	for id, m := range c.live {
		if id == c.id || !m.Addr.IsValid() {
			continue
		}
		peers = append(peers, &memberlist.Node{Name: id, Addr: net.IP(m.Addr.Addr().AsSlice()), Port: m.Addr.Port()})
	}
	c.mu.Unlock()

	sem := make(chan struct{}, leaveFanout)
	var sent sync.WaitGroup
	for _, p := range peers {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		sent.Add(1)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer sent.Done()
			defer func() { <-sem }()
			if err := c.ml.SendReliable(p, msg); err != nil {
				c.metrics.leaveNotices.WithLabelValues("error").Inc()
				c.cfg.Logger.Debug("gossip: leave notice not sent", "node", p.Name, "err", err)
				return
			}
			c.metrics.leaveNotices.WithLabelValues("sent").Inc()
		}()
	}
	done := make(chan struct{})
	go func() {
		sent.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// leaveNotice encodes the notice: kind, uvarint length, id.
func leaveNotice(id string) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(id))
	b = append(b, msgLeaving)
	b = binary.AppendUvarint(b, uint64(len(id)))
	return append(b, id...)
}

// parseLeaveNotice decodes a leave notice, or reports it is none.
func parseLeaveNotice(b []byte) (string, bool) {
	if len(b) == 0 || b[0] != msgLeaving {
		return "", false
	}
	l, n := binary.Uvarint(b[1:])
	if n <= 0 || l == 0 || l > uint64(len(b)-1-n) || l > MaxMetaSize {
		return "", false
	}
	id := b[1+n : 1+n+int(l)]
	if !utf8.Valid(id) {
		return "", false
	}
	return string(id), true
}

// userMsg handles a memberlist user message. Called by memberlist; b is
// reused after we return.
func (c *Cluster) userMsg(b []byte) {
	id, ok := parseLeaveNotice(b)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLeavers()
	c.leavers[id] = time.Now()
}

// pruneLeavers forgets notices older than memberlist remembers the dead,
// so the map stays bounded by the members that left recently. Called with
// c.mu held.
func (c *Cluster) pruneLeavers() {
	for id, at := range c.leavers {
		if time.Since(at) > c.mc.GossipToTheDeadTime {
			delete(c.leavers, id)
		}
	}
}
