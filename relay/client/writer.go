package client

import (
	"context"
	"fmt"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
)

// maxControl bounds queued PONGs; a relay that pings faster than we write
// loses some answers rather than growing the queue.
const maxControl = 16

// outFrame is one frame chosen for the writer.
type outFrame struct {
	class wire.Class
	frame []byte
	eph   *Sent // an ephemeral send that ends once written
}

// writeLoop writes frames as they become due, in priority order (control,
// acks, durable sends, signalling, telemetry), and keeps the connection
// alive: PING when idle for one interval, dead after three.
func (c *Client) writeLoop(ctx context.Context, cn *conn) error {
	tick := time.NewTicker(max(cn.ping/4, 10*time.Millisecond))
	defer tick.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var nonce uint64
	var lastPing time.Time
	for {
		for {
			w, wait := c.nextWrite(cn, time.Now())
			if w.frame == nil {
				if wait > 0 {
					retry.Reset(wait)
				}
				break
			}
			err := cn.t.write(ctx, w.class, w.frame)
			if w.eph != nil {
				if err != nil {
					c.stats.ephemeralDropped.Add(1)
					w.eph.finish(fmt.Errorf("%w: %w", ErrNotConnected, err))
				} else {
					w.eph.finish(nil)
				}
			}
			if err != nil {
				return fmt.Errorf("client: write: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-c.kick:
		case <-retry.C:
		case now := <-tick.C:
			idle := cn.idle(now)
			if idle >= 3*cn.ping {
				return ErrKeepalive
			}
			if idle >= cn.ping && now.Sub(lastPing) >= cn.ping {
				nonce++
				lastPing = now
				c.queueControl(&wire.Frame{Type: wire.TypePing, Nonce: nonce})
			}
		}
	}
}

// nextWrite picks the next frame for cn, or returns how long until a
// delayed durable send is due (0: nothing waits).
func (c *Client) nextWrite(cn *conn, now time.Time) (outFrame, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.control) > 0 {
		b := c.control[0]
		c.control = c.control[1:]
		return outFrame{class: wire.ClassControl, frame: b}, 0
	}
	if a := c.acks.next(cn.gen); a != nil {
		a.gen = cn.gen
		f := wire.Frame{Type: wire.TypeAck, Seq: a.seq, Stage: a.stage, Reason: a.reason}
		return outFrame{class: wire.ClassDurable, frame: wire.Encode(&f)}, 0
	}
	if c.leaving {
		return outFrame{}, 0
	}
	o, wait := c.pending.next(cn.gen, now)
	if o != nil {
		o.gen = cn.gen
		o.writes++
		if o.writes > 1 {
			c.stats.rewrites.Add(1)
		}
		return outFrame{class: wire.ClassDurable, frame: o.frame}, 0
	}
	for i, q := range c.eph {
		if len(q) > 0 {
			e := q[0]
			c.eph[i] = q[1:]
			return outFrame{class: e.class, frame: e.frame, eph: e.sent}, wait
		}
	}
	return outFrame{}, wait
}

// queueControl queues a PING or PONG for the current connection.
func (c *Client) queueControl(f *wire.Frame) {
	c.mu.Lock()
	if c.cur != nil && len(c.control) < maxControl {
		c.control = append(c.control, wire.Encode(f))
	}
	c.mu.Unlock()
	c.wake()
}
