package client

import (
	"context"
	"crypto/tls"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
)

// Integration tests, against a real relay, of the protocol points the
// client must agree with the relay on: its own subject, the SEND payload
// limit, GOAWAY before WELCOME, and the head version of a conflict.

func TestRelayOwnReceiptsBySubject(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	ctx := ctxWait(t)
	clin := newRelayClient(t, r, clinician, []string{r.WSURL}, nil)
	// Two patients' apps with the same role: pat-1 on QUIC, pat-2 on WS.
	pat2 := newRelayClient(t, r, claims("patient", "pat-2"), []string{r.WSURL}, func(c *Config) { c.DisableAutoAck = true })
	tok := r.Token(t, patient)
	allow := make(chan struct{}, 1) // one token per connection attempt
	allow <- struct{}{}
	pat1 := newRelayClient(t, r, patient, []string{r.QUICURL}, func(c *Config) {
		c.DisableAutoAck = true
		c.Token = func(ctx context.Context) ([]byte, error) {
			select {
			case <-allow:
				return tok, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	})
	for _, tc := range []struct {
		c       *Client
		subject string
		role    wire.Role
	}{{clin, "clin-1", wire.RoleClinician}, {pat1, "pat-1", wire.RolePatient}, {pat2, "pat-2", wire.RolePatient}} {
		if w := waitWelcome(t, tc.c); w.Subject != tc.subject || w.Role != tc.role {
			t.Fatalf("welcome subject %q role %v, want %q %v", w.Subject, w.Role, tc.subject, tc.role)
		}
	}

	s, err := clin.Send(ctx, wire.KindChat, []byte("hi"), true)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := recvDelivery(t, pat1), recvDelivery(t, pat2)
	// pat-1 goes offline and queues its ack; meanwhile pat-2 acks.
	dropConnection(t, pat1)
	waitEvent(t, pat1, EventDisconnected)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := pat1.Ack(cancelled, d1.Seq, wire.StageReceived, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("queued Ack = %v, want context.Canceled", err)
	}
	if err := pat2.Ack(ctx, d2.Seq, wire.StageReceived, ""); err != nil {
		t.Fatalf("pat-2 Ack: %v", err)
	}
	other, err := s.Final(ctx)
	if err != nil || other.Sender != "pat-2" {
		t.Fatalf("clinician's Final = %+v, %v, want pat-2's receipt", other, err)
	}
	// pat-1 resumes and reads pat-2's RECEIPT first: same role, other
	// subject, so it must not confirm pat-1's ack. Only pat-1's own RECEIPT,
	// committed after it, does.
	allow <- struct{}{}
	if err := pat1.Ack(ctx, d1.Seq, wire.StageReceived, ""); err != nil {
		t.Fatalf("pat-1 Ack: %v", err)
	}
	if got := pat1.LastSeq(); got <= other.Seq {
		t.Fatalf("pat-1 Ack confirmed at seq %d, by pat-2's receipt (seq %d), not its own", got, other.Seq)
	}
}

func TestRelaySendPayloadLimit(t *testing.T) {
	const maxFrame = 4096
	r := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) { c.MaxFrame = maxFrame }})
	ctx := ctxWait(t)
	clin := newRelayClient(t, r, clinician, []string{r.WSURL}, nil)
	pat := newRelayClient(t, r, patient, []string{r.QUICURL}, nil)
	if w := waitWelcome(t, clin); w.MaxFrame != maxFrame {
		t.Fatalf("WELCOME max_frame %d, want %d", w.MaxFrame, maxFrame)
	}
	waitWelcome(t, pat)
	limit := maxFrame - 512

	// At the limit the relay accepts it, durable and ephemeral, and the
	// DELIVER fits.
	s, err := clin.Send(ctx, wire.KindChat, make([]byte, limit), true)
	if err != nil {
		t.Fatalf("Send at limit: %v", err)
	}
	if _, _, err := s.Persisted(ctx); err != nil {
		t.Fatalf("Persisted at limit: %v", err)
	}
	if d := recvDelivery(t, pat); len(d.Payload) != limit || d.Seq == 0 {
		t.Fatalf("delivery seq %d of %d bytes, want durable %d", d.Seq, len(d.Payload), limit)
	}
	if _, err := pat.Send(ctx, wire.KindTelemetry, make([]byte, limit), false); err != nil {
		t.Fatalf("ephemeral Send at limit: %v", err)
	}
	if d := recvDelivery(t, clin); len(d.Payload) != limit || d.Kind != wire.KindTelemetry {
		t.Fatalf("telemetry delivery %v of %d bytes, want %d", d.Kind, len(d.Payload), limit)
	}
	// One byte more is refused before it leaves the client.
	for _, durable := range []bool{true, false} {
		if _, err := clin.Send(ctx, wire.KindChat, make([]byte, limit+1), durable); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Send over limit (durable %v) err = %v, want ErrTooLarge", durable, err)
		}
	}
}

// heldHello holds the HELLO of a transport until release is closed.
type heldHello struct {
	transport
	release <-chan struct{}
}

func (h *heldHello) write(ctx context.Context, class wire.Class, b []byte) error {
	if wire.Type(b[0]) == wire.TypeHello {
		select {
		case <-h.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.transport.write(ctx, class, b)
}

// peerCert returns the certificate relay r presents.
func peerCert(t *testing.T, r *relaytest.Relay) *tls.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", r.Addr, r.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return &tls.Certificate{Leaf: conn.ConnectionState().PeerCertificates[0]}
}

// metric sums the samples of a gauge or counter with label = value.
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// waitFor polls cond until it holds, failing the test after testWait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(testWait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestRelayGoawayBeforeWelcome(t *testing.T) {
	next := relaytest.Start(t, relaytest.Options{})
	reg := prometheus.NewRegistry()
	r := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
		c.Registerer = reg
		c.DrainRedirect = next.WSURL
		c.DrainGrace = 2 * time.Second
	}})
	tc := r.ClientTLS()
	tc.RootCAs.AddCert(peerCert(t, next).Leaf)

	// The client's first connection is open but its HELLO held back, so
	// the relay starts draining before it has admitted the connection.
	release := make(chan struct{})
	var dialed, signed atomic.Bool
	toks := [2][]byte{r.Token(t, patient), next.Token(t, patient)} // each relay has its own key
	pat := newRelayClient(t, r, patient, []string{r.WSURL}, func(c *Config) {
		c.TLS = tc
		c.Token = func(context.Context) ([]byte, error) {
			if signed.CompareAndSwap(false, true) {
				return toks[0], nil // the first attempt, to r
			}
			return toks[1], nil
		}
		c.dial = func(ctx context.Context, d *dialer, url string) (transport, error) {
			t, err := dialNetwork(ctx, d, url)
			if err != nil || !dialed.CompareAndSwap(false, true) {
				return t, err
			}
			return &heldHello{transport: t, release: release}, nil
		}
	})
	waitFor(t, "the relay to see the connection", func() bool {
		return metric(t, reg, "stapes_relay_connections", "transport", "ws") >= 1
	})
	dctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- r.Server.Drain(dctx) }()
	waitFor(t, "GOAWAY on the wire", func() bool {
		return metric(t, reg, "stapes_relay_frames_sent_total", "type", wire.TypeGoaway.String()) >= 1
	})
	close(release)

	if ev := waitEvent(t, pat, EventGoaway); ev.Redirect != next.WSURL {
		t.Fatalf("goaway event %+v, want redirect to %s", ev, next.WSURL)
	}
	if ev := waitEvent(t, pat, EventDisconnected); !errors.Is(ev.Err, ErrGoaway) {
		t.Fatalf("disconnected with %v, want ErrGoaway", ev.Err)
	}
	if ev := waitEvent(t, pat, EventConnected); ev.URL != next.WSURL {
		t.Fatalf("connected to %s, want the redirect %s", ev.URL, next.WSURL)
	}
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v (the client did not leave)", err)
	}
}

func TestRelayConflictCarriesHead(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	ctx := ctxWait(t)
	// Two consoles of one clinician: b does not see a's commands.
	a := newRelayClient(t, r, clinician, []string{r.WSURL}, nil)
	b := newRelayClient(t, r, clinician, []string{r.QUICURL}, nil)
	waitWelcome(t, a)
	wb := waitWelcome(t, b)
	for i, base := range []uint64{0, 1} { // pipelined: head 0 → 1 → 2
		s, err := a.Send(ctx, wire.KindConfig, configCmd(base, int64(30+5*i)), true)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Persisted(ctx); err != nil {
			t.Fatalf("command on base %d: %v", base, err)
		}
	}

	stale, err := b.Send(ctx, wire.KindConfig, configCmd(wb.ConfigVersion, 40), true)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = stale.Persisted(ctx)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("stale command: %v, want a relay *Error", err)
	}
	if e.Code != wire.CodeConflict || e.ConfigVersion != 2 || e.ClientID != stale.ClientID() || e.Fatal {
		t.Fatalf("stale command: %+v, want non-fatal conflict about %s with config_version 2", e, stale.ClientID())
	}
	// Rebased on the head the conflict names, it is accepted.
	rebased, err := b.Send(ctx, wire.KindConfig, configCmd(e.ConfigVersion, 40), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rebased.Persisted(ctx); err != nil {
		t.Fatalf("rebased command: %v", err)
	}
}
