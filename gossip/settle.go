package gossip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Settling. A node that joins through seeds learns the members the seeds
// know at that moment; members that reach the seeds later are announced by
// gossip, which a node can miss (each message is passed on a bounded
// number of times, and a node that joined early is a gossip target of few
// others at first). memberlist then relies on its periodic push/pull,
// which it stretches to 90s at 100 members, so a cold start of 100 relays
// converged anywhere between 2s and 2 minutes. After every successful Join
// a Cluster therefore settles: it syncs full state with a random member
// every SettleInterval until its member list has not changed for
// SettleQuiet and three peers in a row held exactly its members (each push/
// pull carries a digest of the sender's member list), then falls back to
// memberlist's schedule. Settling costs a full-state exchange per interval
// per node (about 130 bytes per member each way, compressed), only while
// the cluster is changing.

// digest summarises a member list: how many, and the sum of a hash of each
// id, so it is updated in O(1) as members come and go and does not depend
// on order.
type digest struct {
	n   uint64
	sum uint64
}

func idHash(id string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return h.Sum64()
}

func (d *digest) add(id string)    { d.n++; d.sum += idHash(id) }
func (d *digest) remove(id string) { d.n--; d.sum -= idHash(id) }

// digestVersion is the first byte of the push/pull user state; a node
// ignores other versions.
const digestVersion = 1

func (d digest) marshal() []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+8)
	b = append(b, digestVersion)
	b = binary.AppendUvarint(b, d.n)
	return binary.LittleEndian.AppendUint64(b, d.sum)
}

func (d *digest) unmarshal(b []byte) error {
	if len(b) < 1 || b[0] != digestVersion {
		return errors.New("unknown digest version")
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || len(b) < 1+k+8 {
		return errors.New("short digest")
	}
	d.n, d.sum = n, binary.LittleEndian.Uint64(b[1+k:])
	return nil
}

// remoteDigest compares a peer's member list, received in a push/pull,
// with ours after merging it. Called by memberlist; takes c.mu briefly.
func (c *Cluster) remoteDigest(b []byte) {
	var d digest
	if d.unmarshal(b) != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d == c.digest {
		c.agree++
	} else {
		c.agree = 0
	}
}

// startSettling starts settling after a successful Join, or prolongs it.
// Called under c.life's read lock.
func (c *Cluster) startSettling() {
	if c.settle.interval <= 0 {
		return
	}
	c.mu.Lock()
	c.converged = false
	c.lastChange = time.Now()
	c.agree = 0
	c.settleEnd = time.Now().Add(settleRounds * c.settle.interval)
	running := c.settling
	c.settling = true
	c.mu.Unlock()
	if running {
		return
	}
	c.wg.Add(1)
	go c.settleLoop()
}

// settleLoop syncs with a random member until the member list is stable,
// settling times out, or Close. It syncs every SettleInterval (±25%) while
// syncs bring news, doubles the wait (up to SettleQuiet) after each that
// brought none, and never spends more than a fifth of its time syncing: on
// a busy machine a full-state sync gets slow, and settling must not add to
// the load that slows it.
func (c *Cluster) settleLoop() {
	defer c.wg.Done()
	wait := c.settle.interval
	t := time.NewTimer(jitter(wait))
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		if c.settled() {
			return
		}
		if peer, ok := c.randomPeer(); ok {
			start := time.Now()
			c.syncWith(peer)
			took := time.Since(start)
			c.mu.Lock()
			news := !c.lastChange.Before(start)
			c.mu.Unlock()
			if news {
				wait = c.settle.interval
			} else {
				wait = min(2*wait, max(c.settle.quiet, c.settle.interval))
			}
			wait = max(wait, 4*took)
		}
		t.Reset(jitter(wait))
	}
}

// settled ends settling when the member list is stable or settling has
// run too long.
func (c *Cluster) settled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	stable := now.Sub(c.lastChange) >= c.settle.quiet && c.agree >= settleAgree
	if !stable && now.Before(c.settleEnd) {
		return false
	}
	c.settling = false
	c.converged = stable
	if stable {
		c.metrics.settled.WithLabelValues("stable").Inc()
	} else {
		c.metrics.settled.WithLabelValues("timeout").Inc()
		c.cfg.Logger.Warn("gossip: settling ended before the member list was stable", "members", len(c.live))
	}
	return true
}

// syncWith does one push/pull with peer (memberlist's Join does exactly
// that). Errors are counted: the next interval picks another peer.
func (c *Cluster) syncWith(peer netip.AddrPort) {
	c.life.RLock()
	defer c.life.RUnlock()
	if c.closed {
		return
	}
	c.metrics.syncs.Inc()
	if _, err := c.ml.Join([]string{peer.String()}); err != nil {
		c.metrics.syncErrors.Inc()
		c.cfg.Logger.Debug("gossip: settling sync failed", "err", err)
	}
}

// randomPeer picks a live member other than us.
func (c *Cluster) randomPeer() (netip.AddrPort, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.live) <= 1 {
		return netip.AddrPort{}, false
	}
	k := rand.IntN(len(c.live) - 1)
	for id, m := range c.live {
		if id == c.id {
			continue
		}
		if k == 0 {
			return m.Addr, m.Addr.IsValid()
		}
		k--
	}
	return netip.AddrPort{}, false
}

func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}

// Converged reports whether this node's member list has settled since its
// last successful Join: unchanged for Config.SettleQuiet and equal to that
// of the last three members it synced with. It is false before the first
// Join, while settling, when settling gave up (after 60 × SettleInterval)
// and always without settling (a negative SettleInterval). A member list
// can change again afterwards: Converged says the join has finished, not
// that membership is fixed.
func (c *Cluster) Converged() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.converged
}

// JoinUntilStable joins seeds like Join, retrying them (every
// SettleInterval, at least 500ms, doubling up to 5s) until one answers,
// then waits until Converged. It returns how many seeds the successful
// attempt reached, and ctx's error if ctx ended first (the node stays
// joined and keeps settling). Seeds with this node's own address are
// skipped; with no other seed the node is alone and converged at once.
// Without settling it returns after the first successful Join.
func (c *Cluster) JoinUntilStable(ctx context.Context, seeds []string) (int, error) {
	others := make([]string, 0, len(seeds))
	for _, s := range seeds {
		if ap, err := netip.ParseAddrPort(s); err == nil && ap == c.addr {
			continue
		}
		others = append(others, s)
	}
	if len(others) == 0 {
		c.mu.Lock()
		c.converged = true
		c.mu.Unlock()
		return 0, nil
	}
	backoff := max(c.settle.interval, 500*time.Millisecond)
	var n int
	for {
		var err error
		n, err = c.Join(ctx, others)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrJoin) {
			return 0, err
		}
		c.cfg.Logger.Info("gossip: no seed answered, retrying", "in", backoff)
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("gossip: join: %w (last: %w)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	if c.settle.interval <= 0 {
		return n, nil
	}
	t := time.NewTicker(c.settle.interval / 4)
	defer t.Stop()
	for !c.Converged() {
		c.mu.Lock()
		settling := c.settling
		c.mu.Unlock()
		if !settling {
			return n, ErrNotConverged
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("gossip: join: settling: %w", ctx.Err())
		case <-c.stop:
			return n, ErrClosed
		case <-t.C:
		}
	}
	return n, nil
}
