package relay

import (
	"context"
	"errors"
	"log/slog"

	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

func roleOf(s string) wire.Role {
	switch s {
	case "clinician":
		return wire.RoleClinician
	case "patient":
		return wire.RolePatient
	case "observer":
		return wire.RoleObserver
	}
	return 0
}

// hello admits a connection: the token is verified before any claim is
// used and before any session state is loaded. Every refusal is fatal.
// raw is the HELLO as the client sent it, for forwarding to the session's
// home (forward.go).
func (c *conn) hello(ctx context.Context, f *wire.Frame, raw []byte) *protoError {
	c.admitMu.Lock()
	defer c.admitMu.Unlock()
	s := c.srv
	if len(f.Token) == 0 {
		return fatalf(wire.CodeUnauthorized, "HELLO has no token")
	}
	claims, err := s.cfg.Auth.Verify(f.Token, s.cfg.Now())
	switch {
	case errors.Is(err, token.ErrExpired):
		return fatalf(wire.CodeExpired, "token expired; get a new one")
	case errors.Is(err, token.ErrClaims):
		return fatalf(wire.CodeForbidden, "token claims not acceptable")
	case err != nil:
		return fatalf(wire.CodeUnauthorized, "token refused")
	}
	minV, maxV := f.MinVersion, f.MaxVersion
	if minV == 0 {
		minV = 1
	}
	if maxV == 0 {
		maxV = minV
	}
	v := min(maxV, wire.VersionMax)
	if v < max(minV, wire.VersionMin) {
		e := fatalf(wire.CodeVersion, "no common protocol version: relay speaks %d..%d", wire.VersionMin, wire.VersionMax)
		e.minV, e.maxV = wire.VersionMin, wire.VersionMax
		return e
	}
	role := roleOf(claims.Role)
	if role == 0 || claims.Session == "" {
		return fatalf(wire.CodeForbidden, "token claims not acceptable")
	}
	if f.Session != "" && f.Session != claims.Session {
		return fatalf(wire.CodeForbidden, "token is for another session")
	}
	c.claims, c.role = claims, role
	if s.draining.Load() {
		e := fatalf(wire.CodeDraining, "relay is draining; connect to another relay")
		e.redirect = s.drainTarget(claims.Session)
		return e
	}
	// Who owns the session is settled first: a takeover or a sync with
	// the replica may bring newer device state into the store, which the
	// device load below must see.
	epoch, redirect, err := s.resolve(ctx, claims.Session, claims.Tenant, claims.Relay, f.Epoch, f.LastSeq)
	var stale *staleError
	switch {
	case errors.Is(err, errNotHere):
		return fatalf(wire.CodeUnavailable, "this relay does not hold the session and none of its peers answered; retry or try another relay")
	case errors.As(err, &stale):
		redirect = stale.o.url
	case err != nil:
		// Peers that did not answer in time are expected now and then
		// (the client retries); anything else is this relay's own trouble.
		lvl := slog.LevelError
		if errors.Is(err, ErrNoPeer) || errors.Is(err, errProbe) || errors.Is(err, errNoReplica) || errors.Is(err, context.DeadlineExceeded) {
			lvl = slog.LevelWarn
		}
		s.log.Log(ctx, lvl, "resolving the session's owner", "conn", c.id, "session", claims.Session, "err", err)
		return fatalf(wire.CodeUnavailable, "session state unavailable; retry")
	}
	if redirect != "" {
		if p, ok := s.forwardPeer(c, redirect); ok && c.startForward(ctx, p, raw, 0) {
			return nil // admitted, or refused, by the home through the link
		}
		e := fatalf(wire.CodeUnavailable, "the session is served by another relay; reconnect there")
		e.redirect = redirect
		return e
	}
	if stale != nil {
		return fatalf(wire.CodeStaleEpoch, "this relay's epoch for the session is older than one you have seen; try another relay")
	}
	if claims.Device != "" {
		d, err := s.device(ctx, claims.Tenant, claims.Device)
		if err != nil {
			s.log.Error("loading device state", "conn", c.id, "err", err)
			return fatalf(wire.CodeUnavailable, "device state unavailable; retry")
		}
		c.dev = d
		if s.cfg.Devices != nil && !s.sessionLoaded(claims.Session) {
			s.refreshDevice(ctx, d, claims.Tenant, claims.Device)
		}
	}
	sess, e := s.attach(ctx, c, f, epoch)
	if e != nil {
		return e
	}
	c.sess = sess
	if f.Resume {
		c.sent = f.LastSeq
		c.resume = f.LastSeq
		s.met.resumes.WithLabelValues(c.transport).Inc()
	}
	w := &wire.Frame{
		Type: wire.TypeWelcome, Version: v, Session: claims.Session, Epoch: sess.epoch,
		HeadSeq: sess.committedHead(), MaxFrame: uint64(s.cfg.MaxFrame), ConnID: c.id,
		Role: role, Sender: claims.Subject, PingMillis: uint64(s.cfg.PingInterval.Milliseconds()),
	}
	sess.mu.Lock()
	d := sess.dev
	sess.mu.Unlock()
	if d != nil {
		d.mu.Lock()
		w.ConfigVersion = d.head
		w.Config = d.snapshot()
		d.mu.Unlock()
	}
	// Admitted before WELCOME is queued: the client may send (or, on QUIC,
	// open its class streams) as soon as it reads WELCOME.
	c.admitted.Store(true)
	c.control(wire.Encode(w))
	s.joined(c, f.Resume)
	s.log.Info("admitted", "conn", c.id, "session", claims.Session, "subject", claims.Subject,
		"role", claims.Role, "transport", c.transport, "resume", f.Resume, "last_seq", f.LastSeq)
	return nil
}
