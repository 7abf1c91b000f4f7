package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"unicode/utf8"

	"github.com/stapes-relay/stapes/relay/wire"
)

// sendOverhead is the part of max_frame a SEND's payload may not use: the
// room a DELIVER needs for the fields it adds, so that every DELIVER fits
// in max_frame (docs/protocol.md §9.3).
const sendOverhead = 512

// maxPayload is the largest SEND payload a relay with frame limit
// maxFrame accepts.
func maxPayload(maxFrame int) int { return max(maxFrame-sendOverhead, 0) }

// ephemeral is a queued ephemeral send.
type ephemeral struct {
	sent  *Sent
	class wire.Class
	frame []byte
}

// Send sends a message to the session with a fresh random client id. See
// SendWithID.
func (c *Client) Send(ctx context.Context, kind wire.Kind, payload []byte, durable bool) (*Sent, error) {
	return c.SendWithID(ctx, newClientID(), kind, payload, durable)
}

// SendWithID sends a message under the caller's client id, the message's
// idempotency key: the relay commits one message per id and sender, so the
// same id sent again (after a restart, say) gets the original seq.
//
// A durable message is queued whether or not the client is connected, and
// written in Send order on every connection until PERSISTED. Send blocks
// while Config.MaxPending durable messages are live (see Sent); if ctx ends
// first it returns an error wrapping ErrTooManyPending and ctx's error.
// Config messages must be durable and are checked to decode.
//
// An ephemeral message needs a connection (else ErrNotConnected), is never
// retried, and is refused with ErrQueueFull when its class queue is full.
//
// The payload is copied. It may be at most the relay's max_frame − 512
// bytes (65024 with the default frame limit), else ErrTooLarge: the relay
// refuses larger ones (docs/protocol.md §9.3). max_frame is the last
// WELCOME's, wire.DefaultMaxFrame before the first.
func (c *Client) SendWithID(ctx context.Context, id string, kind wire.Kind, payload []byte, durable bool) (*Sent, error) {
	if id == "" || len(id) > wire.MaxIDLen || !utf8.ValidString(id) {
		return nil, ErrBadID
	}
	c.mu.Lock()
	limit := c.maxFrame
	c.mu.Unlock()
	if most := maxPayload(limit); len(payload) > most {
		return nil, fmt.Errorf("%w: payload %d bytes, limit %d (max_frame %d - %d)", ErrTooLarge, len(payload), most, limit, sendOverhead)
	}
	if kind == wire.KindConfig {
		if !durable {
			return nil, ErrMustBeDurable
		}
		if _, err := wire.DecodeConfig(payload); err != nil {
			return nil, fmt.Errorf("client: send: %w", err)
		}
	}
	f := wire.Frame{Type: wire.TypeSend, ClientID: id, Kind: kind, Payload: payload}
	if durable {
		f.Flags = wire.FlagDurable
	}
	frame := wire.Encode(&f)
	if len(frame) > limit { // only a relay announcing a tiny max_frame gets here
		return nil, fmt.Errorf("%w: frame %d bytes, limit %d", ErrTooLarge, len(frame), limit)
	}
	s := newSent(id, kind, durable)
	if !durable {
		if err := c.queueEphemeral(&ephemeral{sent: s, class: wire.ClassOf(kind, false), frame: frame}); err != nil {
			return nil, err
		}
		return s, nil
	}
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	err := c.err
	if err == nil && !c.pending.add(&outgoing{sent: s, frame: frame}) {
		err = fmt.Errorf("%w: %s", ErrDuplicateID, id)
	}
	c.mu.Unlock()
	if err != nil {
		c.release()
		return nil, err
	}
	c.wake()
	return s, nil
}

// acquire takes a pending-send slot, waiting for one.
func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.slots <- struct{}{}:
		return nil
	default:
	}
	select {
	case c.slots <- struct{}{}:
		return nil
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
		return fmt.Errorf("client: send: %w: %w", ErrTooManyPending, ctx.Err())
	}
}

func (c *Client) queueEphemeral(e *ephemeral) error {
	i := 0
	if e.class == wire.ClassTelemetry {
		i = 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return c.err
	case c.cur == nil || c.leaving:
		c.stats.ephemeralDropped.Add(1)
		return ErrNotConnected
	case len(c.eph[i]) >= c.cfg.EphemeralQueue:
		c.stats.ephemeralDropped.Add(1)
		return ErrQueueFull
	}
	c.eph[i] = append(c.eph[i], e)
	c.wake()
	return nil
}

// dropEphemeral empties the ephemeral queues. Caller holds c.mu.
func (c *Client) dropEphemeral() []*ephemeral {
	var all []*ephemeral
	for i := range c.eph {
		all = append(all, c.eph[i]...)
		c.eph[i] = nil
	}
	c.stats.ephemeralDropped.Add(uint64(len(all)))
	return all
}

// Ack records an ack stage for a durable delivery: applied or rejected (with
// a machine-readable reason, never patient data) for config, or received
// when auto-ack is disabled. It returns once the relay has confirmed the ack
// with a RECEIPT whose sender is this client's subject (WELCOME's sender).
// A message has one final stage, whoever acks it: a final RECEIPT for seq
// from anyone ends an applied or rejected ack, with nil for the same stage
// and ErrAlreadyFinal for the other. If ctx ends first the ack stays queued
// and is still sent, after reconnects too, until confirmed.
func (c *Client) Ack(ctx context.Context, seq uint64, stage wire.Stage, reason string) error {
	if stage != wire.StageReceived && !stage.Final() {
		return ErrBadStage
	}
	if len(reason) > wire.MaxTextLen || !utf8.ValidString(reason) {
		return fmt.Errorf("%w: reason must be UTF-8 of at most %d bytes", ErrBadStage, wire.MaxTextLen)
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	if seq == 0 || seq > max(c.lastSeq, c.offered) {
		c.mu.Unlock()
		return fmt.Errorf("%w: %d", ErrUnknownSeq, seq)
	}
	a, forgot, err := c.acks.add(seq, stage, reason, false, c.cfg.MaxUnconfirmedAcks)
	c.mu.Unlock()
	c.stats.acksForgotten.Add(uint64(forgot))
	if err != nil {
		return fmt.Errorf("client: ack %d %v: %w", seq, stage, err)
	}
	c.wake()
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newClientID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
