package relay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/stapes-relay/stapes/relay/wire"
)

// send handles SEND: ephemeral fan-out, or durable sequencing with
// idempotency, config compare-and-set and safety limits.
func (c *conn) send(ctx context.Context, f *wire.Frame) *protoError {
	c.srv.met.messageIn(c.transport, f.Kind)
	if c.role == wire.RoleObserver {
		return rejectf(wire.CodeForbidden, f.ClientID, "observers may not send")
	}
	if len(f.Payload) > c.srv.maxPayload() {
		// The DELIVER adds seq, sender and role; it must fit max_frame too.
		return rejectf(wire.CodeTooLarge, f.ClientID, "payload over %d bytes", c.srv.maxPayload())
	}
	if f.Kind == 0 || (f.Kind > wire.KindTyping && f.Kind < 64) {
		return rejectf(wire.CodeBadPayload, f.ClientID, "message kind %d is reserved", f.Kind)
	}
	if !f.Durable() {
		if f.Kind == wire.KindConfig {
			return rejectf(wire.CodeBadPayload, f.ClientID, "config commands must be durable")
		}
		c.fanout(f)
		return nil
	}
	if f.ClientID == "" {
		return rejectf(wire.CodeBadPayload, "", "durable SEND needs a client_id")
	}
	var cmd *wire.Config
	if f.Kind == wire.KindConfig {
		if c.role != wire.RoleClinician {
			return rejectf(wire.CodeForbidden, f.ClientID, "only clinicians send config commands")
		}
		c.sess.mu.Lock()
		hasDev := c.sess.dev != nil
		c.sess.mu.Unlock()
		if !hasDev {
			return rejectf(wire.CodeBadPayload, f.ClientID, "session has no device")
		}
		cfg, err := wire.DecodeConfig(f.Payload)
		if err != nil {
			return rejectf(wire.CodeBadPayload, f.ClientID, "config payload: %v", err)
		}
		cmd = &cfg
	}
	return c.sess.submitSend(ctx, c, f, cmd)
}

// fanout delivers an ephemeral message to the other participants, dropping
// it for any whose queue is full.
func (c *conn) fanout(f *wire.Frame) {
	b := wire.Encode(&wire.Frame{
		Type: wire.TypeDeliver, Sender: c.claims.Subject, Role: c.role,
		Kind: f.Kind, Flags: f.Flags, ClientID: f.ClientID, Payload: f.Payload,
	})
	class := wire.ClassOf(f.Kind, false)
	s := c.sess
	s.mu.Lock()
	peers := s.connList()
	s.mu.Unlock()
	for _, p := range peers {
		if p.claims.Subject != c.claims.Subject {
			p.ephemeral(class, b)
		}
	}
}

func (s *session) submitSend(ctx context.Context, c *conn, f *wire.Frame, cmd *wire.Config) *protoError {
	key := idemKey("m/" + c.claims.Subject + "/" + f.ClientID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return rejectf(wire.CodeUnavailable, f.ClientID, "session unavailable; retry")
	}
	if o := s.inflight[key]; o != nil {
		o.waiters = append(o.waiters, c)
		return nil
	}
	seq, ok, err := s.srv.cfg.Store.LookupKey(ctx, s.id, key)
	if err != nil {
		return rejectf(wire.CodeUnavailable, f.ClientID, "storage unavailable; retry")
	}
	if ok {
		c.reply(persisted(f.ClientID, seq))
		return nil
	}
	o := &op{key: key, waiters: []*conn{c}}
	if cmd != nil {
		d := s.dev
		d.mu.Lock()
		blob, e := d.accept(cmd, s.limits, f.ClientID)
		d.mu.Unlock()
		if e != nil {
			return e
		}
		o.devKey, o.devBlob = d.key, blob
	}
	o.e = entry{seq: s.next, typ: wire.TypeDeliver, sender: c.claims.Subject, kind: f.Kind, clientID: f.ClientID}
	o.e.frame = wire.Encode(&wire.Frame{
		Type: wire.TypeDeliver, Seq: o.e.seq, Sender: c.claims.Subject, Role: c.role,
		Kind: f.Kind, Flags: wire.FlagDurable, ClientID: f.ClientID, Payload: f.Payload,
	})
	o.reply = persisted(f.ClientID, o.e.seq)
	s.enqueue(o)
	return nil
}

// idemKey bounds an idempotency key to what stores accept: long keys are
// replaced by a hash, which cannot collide with a short key.
func idemKey(k string) string {
	if len(k) <= 100 {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return "#" + hex.EncodeToString(sum[:])
}

func persisted(clientID string, seq uint64) []byte {
	return wire.Encode(&wire.Frame{Type: wire.TypePersisted, ClientID: clientID, Seq: seq})
}

// ack handles ACK: validated against the log, deduplicated, recorded as a
// RECEIPT entry that every participant receives.
func (c *conn) ack(ctx context.Context, f *wire.Frame) *protoError {
	if f.Stage < wire.StageReceived || f.Stage > wire.StageRejected {
		return &protoError{code: wire.CodeBadPayload, msg: "unknown ack stage", seq: f.Seq}
	}
	s := c.sess
	target, ok, err := s.entryAt(ctx, f.Seq)
	if err != nil {
		return &protoError{code: wire.CodeUnavailable, msg: "storage unavailable; retry", seq: f.Seq}
	}
	if !ok || target.typ != wire.TypeDeliver || target.sender == c.claims.Subject {
		return &protoError{code: wire.CodeUnknownSeq, msg: "ACK for seq " + strconv.FormatUint(f.Seq, 10) + " that was not delivered to you", seq: f.Seq}
	}
	if target.kind == wire.KindConfig && f.Stage.Final() && c.role != wire.RolePatient {
		// Only the phone app at the hearing aid can say a config was applied.
		return &protoError{code: wire.CodeForbidden, msg: "only the patient's app acks config applied or rejected", seq: f.Seq}
	}
	key := "f/" + strconv.FormatUint(f.Seq, 10)
	if !f.Stage.Final() {
		key = idemKey("a/" + strconv.FormatUint(f.Seq, 10) + "/" + c.claims.Subject)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return &protoError{code: wire.CodeUnavailable, msg: "session unavailable; retry", seq: f.Seq}
	}
	if s.inflight[key] != nil {
		return nil
	}
	if _, dup, err := s.srv.cfg.Store.LookupKey(ctx, s.id, key); err != nil {
		return &protoError{code: wire.CodeUnavailable, msg: "storage unavailable; retry", seq: f.Seq}
	} else if dup {
		return nil
	}
	o := &op{key: key}
	if target.kind == wire.KindConfig && f.Stage.Final() && s.dev != nil {
		tf, err := wire.Decode(target.frame, 1<<30)
		if err != nil {
			return &protoError{code: wire.CodeUnavailable, msg: "stored command unreadable", seq: f.Seq}
		}
		cmd, err := wire.DecodeConfig(tf.Payload)
		if err != nil {
			return &protoError{code: wire.CodeUnavailable, msg: "stored command unreadable", seq: f.Seq}
		}
		d := s.dev
		d.mu.Lock()
		if f.Stage == wire.StageApplied {
			o.devBlob = d.onApplied(&cmd)
		} else {
			o.devBlob = d.onRejected(&cmd)
		}
		d.mu.Unlock()
		o.devKey = d.key
	}
	o.e = entry{seq: s.next, typ: wire.TypeReceipt, sender: c.claims.Subject, kind: target.kind}
	o.e.frame = wire.Encode(&wire.Frame{
		Type: wire.TypeReceipt, Seq: o.e.seq, RefSeq: f.Seq, RefClientID: target.clientID,
		Stage: f.Stage, Reason: f.Reason, Sender: c.claims.Subject, Role: c.role, Kind: target.kind,
	})
	s.enqueue(o)
	return nil
}
