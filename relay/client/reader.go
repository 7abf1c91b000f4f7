package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
)

// readLoop reads and handles frames until the connection ends. After a
// GOAWAY it keeps reading until nothing written on this connection is
// waiting for an answer, the relay closes, or the announced grace is over;
// then it returns a *goawayError.
func (c *Client) readLoop(ctx context.Context, cn *conn) error {
	rctx := ctx
	var leave *goawayError
	for {
		b, err := cn.t.read(rctx)
		if err != nil {
			if leave != nil && ctx.Err() == nil {
				return leave
			}
			return fmt.Errorf("client: read: %w", err)
		}
		cn.touch()
		f, err := wire.Decode(b, cn.limit)
		if err != nil {
			if errors.Is(err, wire.ErrUnknownType) {
				continue // a newer relay's frame: skipped
			}
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		switch f.Type {
		case wire.TypeDeliver:
			err = c.onDeliver(ctx, &f)
		case wire.TypeReceipt:
			c.onReceipt(&f)
		case wire.TypePersisted:
			c.onPersisted(&f)
		case wire.TypeError:
			err = c.onError(&f)
		case wire.TypePing:
			c.queueControl(&wire.Frame{Type: wire.TypePong, Nonce: f.Nonce})
		case wire.TypePong:
		case wire.TypeGoaway:
			if leave == nil {
				leave = c.onGoaway(cn, &f)
				grace := max(time.Duration(f.AfterMillis)*time.Millisecond, time.Second)
				var cancel context.CancelFunc
				rctx, cancel = context.WithTimeout(ctx, grace)
				defer cancel()
			}
		default:
			err = fmt.Errorf("%w: %v from relay", ErrProtocol, f.Type)
		}
		if err != nil {
			return err
		}
		if leave != nil && c.inflight(cn) == 0 {
			return leave
		}
	}
}

func (c *Client) onDeliver(ctx context.Context, f *wire.Frame) error {
	d := Delivery{
		Seq: f.Seq, Sender: f.Sender, Role: f.Role, Kind: f.Kind,
		Durable: f.Durable(), ClientID: f.ClientID, Payload: f.Payload,
	}
	if f.Seq == 0 { // ephemeral: never blocks the connection
		select {
		case c.deliveries <- d:
		default:
			c.stats.deliveriesDropped.Add(1)
		}
		return nil
	}
	c.mu.Lock()
	dup := f.Seq <= c.lastSeq
	if !dup {
		c.offered = max(c.offered, f.Seq)
	}
	c.mu.Unlock()
	if dup {
		c.stats.duplicates.Add(1)
		return nil
	}
	select {
	case c.deliveries <- d:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	c.mu.Lock()
	c.lastSeq = f.Seq
	if !c.cfg.DisableAutoAck {
		_, forgot, _ := c.acks.add(f.Seq, wire.StageReceived, "", true, c.cfg.MaxUnconfirmedAcks)
		c.stats.acksForgotten.Add(uint64(forgot))
	}
	c.mu.Unlock()
	c.wake()
	return nil
}

func (c *Client) onReceipt(f *wire.Frame) {
	r := Receipt{Seq: f.Seq, RefSeq: f.RefSeq, Stage: f.Stage, Reason: f.Reason, Sender: f.Sender, Role: f.Role}
	c.mu.Lock()
	if f.Seq <= c.lastSeq {
		c.mu.Unlock()
		c.stats.duplicates.Add(1)
		return
	}
	c.lastSeq = f.Seq
	if c.ownReceipt(f) || f.Stage.Final() {
		// Our own ack seen back; or a final stage, which the relay records
		// once per message whoever acks it, so it ends our final acks for
		// that seq too (docs/protocol.md §12).
		c.acks.confirm(f.RefSeq, f.Stage)
	}
	o := c.pending.receipt(r, f.RefClientID)
	final := o != nil && o.sent.receipt(r)
	if final {
		c.pending.remove(o)
	}
	c.mu.Unlock()
	if final {
		o.sent.finish(nil)
		c.release()
	}
}

// ownReceipt reports whether RECEIPT f is about an ack of this client's
// subject: its sender is WELCOME's sender. Several participants may share
// a role, so the role stands in only for a relay whose WELCOME names no
// sender. Caller holds c.mu.
func (c *Client) ownReceipt(f *wire.Frame) bool {
	switch w := c.welcome; {
	case w == nil:
		return false
	case w.Subject != "":
		return f.Sender == w.Subject
	default:
		return f.Role == w.Role
	}
}

func (c *Client) onPersisted(f *wire.Frame) {
	c.mu.Lock()
	o, early := c.pending.persisted(f.ClientID, f.Seq)
	if o == nil {
		c.mu.Unlock()
		return // already ended, e.g. a repeated PERSISTED after its final receipt
	}
	o.sent.persisted(f.Seq, f.Flags&wire.FlagDegraded != 0)
	final := false
	for _, r := range early {
		if o.sent.receipt(r) {
			final = true
			break
		}
	}
	if final {
		c.pending.remove(o)
	}
	c.mu.Unlock()
	if final {
		o.sent.finish(nil)
		c.release()
	}
}

// onError handles an ERROR frame. A fatal one ends the connection; one
// about a SEND ends or delays that send; one about an ACK ends that ack.
func (c *Client) onError(f *wire.Frame) error {
	e := errorFromFrame(f)
	switch {
	case f.Fatal:
		return e
	case f.RefClientID != "":
		c.mu.Lock()
		o := c.pending.get(f.RefClientID)
		if o == nil || o.seq != 0 {
			c.mu.Unlock()
			return nil
		}
		if f.Code.Retryable() {
			d := c.bo.delay(o.attempts)
			c.pending.retry(o, c.gen, time.Now(), d)
			c.mu.Unlock()
			c.log.Debug("send delayed by relay", "client_id", o.sent.id, "code", f.Code.String(), "retry_in", d)
			c.wake()
			return nil
		}
		c.pending.remove(o)
		c.mu.Unlock()
		o.sent.finish(e)
		c.release()
	case f.RefSeq != 0:
		c.mu.Lock()
		c.acks.fail(f.RefSeq, e)
		c.mu.Unlock()
	default:
		c.log.Warn("relay error", "code", f.Code.String())
	}
	return nil
}

// onGoaway stops new SENDs on cn and returns where to go next.
func (c *Client) onGoaway(cn *conn, f *wire.Frame) *goawayError {
	c.mu.Lock()
	c.leaving = true
	c.mu.Unlock()
	return c.goaway(cn.t.name(), cn.url, f)
}

// goaway reads GOAWAY f, received on a connection to from (admitted or
// not yet), reports it as EventGoaway and returns where to go next. A
// redirect this client may not follow is ignored.
func (c *Client) goaway(transport, from string, f *wire.Frame) *goawayError {
	ga := &goawayError{code: f.Code}
	if f.Redirect != "" {
		if err := checkRedirect(from, f.Redirect); err != nil {
			c.log.Warn("ignoring GOAWAY redirect", "err", err)
		} else {
			ga.redirect = f.Redirect
		}
	}
	c.emit(Event{Type: EventGoaway, Transport: transport, URL: from, Redirect: ga.redirect})
	return ga
}

// checkRedirect accepts a GOAWAY redirect only to a transport this package
// speaks, and never from an encrypted transport to a plain one, which
// would expose the token.
func checkRedirect(from, to string) error {
	t, err := parseURL(to)
	if err != nil {
		return err
	}
	if f, err := url.Parse(from); err == nil && secure(f) && !secure(t) {
		return fmt.Errorf("%w: redirect from %s to %s", ErrUnsupportedURL, f.Scheme, t.Scheme)
	}
	return nil
}

// inflight counts what was written on cn and awaits an answer.
func (c *Client) inflight(cn *conn) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending.inflight(cn.gen) + c.acks.inflight(cn.gen)
}
