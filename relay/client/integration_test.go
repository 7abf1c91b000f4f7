package client

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

// Integration tests against a real relay (relaytest: Pebble store, TLS,
// WebSocket and QUIC on loopback). Nothing of the relay is faked.

func claims(role, subject string) token.Claims {
	return token.Claims{Subject: subject, Role: role, Session: "fit-1", Device: "HA-1", Model: "m1"}
}

var (
	clinician = claims("clinician", "clin-1")
	patient   = claims("patient", "pat-1")
)

// newRelayClient starts a client of r for the subject in c over urls.
func newRelayClient(t *testing.T, r *relaytest.Relay, c token.Claims, urls []string, edit func(*Config)) *Client {
	t.Helper()
	tok := r.Token(t, c)
	cfg := Config{
		URLs:       urls,
		Token:      func(context.Context) ([]byte, error) { return tok, nil },
		Session:    c.Session,
		TLS:        r.ClientTLS(),
		BackoffMin: 10 * time.Millisecond,
		BackoffMax: 200 * time.Millisecond,
	}
	if edit != nil {
		edit(&cfg)
	}
	cl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func waitWelcome(t *testing.T, c *Client) Welcome {
	t.Helper()
	w, err := c.WaitConnected(ctxWait(t))
	if err != nil {
		t.Fatalf("WaitConnected: %v", err)
	}
	return w
}

// dropConnection breaks the client's current connection from below, as a
// network failure would.
func dropConnection(t *testing.T, c *Client) {
	t.Helper()
	c.mu.Lock()
	cn := c.cur
	c.mu.Unlock()
	if cn == nil {
		t.Fatal("dropConnection: not connected")
	}
	cn.t.close()
	// Its reader may be blocked handing a delivery to a full Deliveries
	// channel (the test is not reading), and then nothing touches the
	// closed transport until the keepalive's PING: queue one now, whose
	// write fails as that PING's would.
	c.queueControl(&wire.Frame{Type: wire.TypePing, Nonce: 1})
}

func configCmd(base uint64, gain int64) []byte {
	return wire.AppendConfig(nil, &wire.Config{BaseVersion: base, Params: []wire.Param{{Name: "gain_500hz", Value: gain}}})
}

func TestRelayConfigCommandWithReceipts(t *testing.T) {
	for _, tc := range []struct{ clin, pat string }{{"ws", "ws"}, {"quic", "quic"}, {"ws", "quic"}} {
		t.Run(tc.clin+"-"+tc.pat, func(t *testing.T) {
			r := relaytest.Start(t, relaytest.Options{})
			url := map[string]string{"ws": r.WSURL, "quic": r.QUICURL}
			clin := newRelayClient(t, r, clinician, []string{url[tc.clin]}, nil)
			pat := newRelayClient(t, r, patient, []string{url[tc.pat]}, nil)
			ctx := ctxWait(t)
			wc, wp := waitWelcome(t, clin), waitWelcome(t, pat)
			if wc.Role != wire.RoleClinician || wp.Role != wire.RolePatient || wc.Transport != tc.clin || wp.Transport != tc.pat {
				t.Fatalf("welcomes: clinician %v/%s, patient %v/%s", wc.Role, wc.Transport, wp.Role, wp.Transport)
			}
			if wc.Session != "fit-1" || wc.Config == nil || wc.ConfigVersion != 0 {
				t.Fatalf("clinician welcome %+v", wc)
			}

			s, err := clin.Send(ctx, wire.KindConfig, configCmd(wc.ConfigVersion, 30), true)
			if err != nil {
				t.Fatal(err)
			}
			seq, _, err := s.Persisted(ctx)
			if err != nil || seq == 0 {
				t.Fatalf("Persisted = %d, %v", seq, err)
			}
			d := recvDelivery(t, pat)
			if d.Seq != seq || d.Kind != wire.KindConfig || !d.Durable || d.Sender != "clin-1" ||
				d.Role != wire.RoleClinician || d.ClientID != s.ClientID() {
				t.Fatalf("delivery %+v, want seq %d from clin-1", d, seq)
			}
			if rc, err := s.Wait(ctx, wire.StageReceived); err != nil || rc.Sender != "pat-1" || rc.RefSeq != seq {
				t.Fatalf("received receipt %+v, %v", rc, err)
			}
			if err := pat.Ack(ctx, d.Seq, wire.StageApplied, ""); err != nil {
				t.Fatalf("Ack applied: %v", err)
			}
			rc, err := s.Final(ctx)
			if err != nil || rc.Stage != wire.StageApplied || rc.Role != wire.RolePatient {
				t.Fatalf("Final = %+v, %v", rc, err)
			}

			// A command on the old base is a conflict, reported on its handle.
			stale, err := clin.Send(ctx, wire.KindConfig, configCmd(0, 40), true)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stale.Final(ctx); CodeOf(err) != wire.CodeConflict {
				t.Fatalf("stale command: %v, want conflict", err)
			}
			// Patients may not send config.
			fb, _ := pat.Send(ctx, wire.KindConfig, configCmd(1, 40), true)
			if _, err := fb.Final(ctx); CodeOf(err) != wire.CodeForbidden {
				t.Fatalf("patient config: %v, want forbidden", err)
			}
			if err := pat.Err(); err != nil {
				t.Fatalf("a refused send stopped the client: %v", err)
			}

			// Chat the other way, and ephemeral telemetry.
			chat, _ := pat.Send(ctx, wire.KindChat, []byte("hello"), true)
			if d := recvDelivery(t, clin); string(d.Payload) != "hello" || d.Sender != "pat-1" {
				t.Fatalf("chat delivery %+v", d)
			}
			if rc, err := chat.Final(ctx); err != nil || rc.Stage != wire.StageReceived {
				t.Fatalf("chat Final = %+v, %v", rc, err)
			}
			if _, err := pat.Send(ctx, wire.KindTelemetry, []byte("rssi=-60"), false); err != nil {
				t.Fatal(err)
			}
			if d := recvDelivery(t, clin); d.Seq != 0 || d.Durable || d.Kind != wire.KindTelemetry {
				t.Fatalf("telemetry delivery %+v", d)
			}
		})
	}
}

// collect reads n durable chat deliveries and checks they are numbered
// from first on, in order, with increasing seqs.
func collect(t *testing.T, c *Client, first, n int, lastSeq *uint64) {
	t.Helper()
	for i := first; i < first+n; i++ {
		d := recvDelivery(t, c)
		if got := string(d.Payload); got != strconv.Itoa(i) {
			t.Fatalf("delivery %q (seq %d), want %d: gap or duplicate", got, d.Seq, i)
		}
		if d.Seq <= *lastSeq {
			t.Fatalf("delivery seq %d after %d", d.Seq, *lastSeq)
		}
		*lastSeq = d.Seq
	}
}

func sendChats(t *testing.T, c *Client, from, n int) []*Sent {
	t.Helper()
	var out []*Sent
	for i := from; i < from+n; i++ {
		s, err := c.Send(ctxWait(t), wire.KindChat, []byte(strconv.Itoa(i)), true)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestRelayResumeOnOtherTransport(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	clin := newRelayClient(t, r, clinician, []string{r.WSURL}, nil)
	// A tiny delivery buffer keeps the patient's position mid-log when its
	// connection drops.
	pat := newRelayClient(t, r, patient, []string{r.WSURL, r.QUICURL}, func(c *Config) { c.DeliveryBuffer = 1 })
	waitWelcome(t, clin)
	if w := waitWelcome(t, pat); w.Transport != "ws" {
		t.Fatalf("patient first on %s, want ws", w.Transport)
	}
	waitEvent(t, pat, EventConnected)

	var last uint64
	sent := sendChats(t, clin, 1, 20)
	if _, _, err := sent[19].Persisted(ctxWait(t)); err != nil {
		t.Fatal(err)
	}
	collect(t, pat, 1, 5, &last)

	for _, want := range []string{"quic", "ws", "quic"} {
		dropConnection(t, pat)
		ev := waitEvent(t, pat, EventResumed)
		if ev.Transport != want || !ev.Welcome.Resumed {
			t.Fatalf("resumed on %s (resumed=%v), want %s", ev.Transport, ev.Welcome.Resumed, want)
		}
	}
	sent = append(sent, sendChats(t, clin, 21, 20)...)
	collect(t, pat, 6, 35, &last)
	for _, s := range sent {
		if rc, err := s.Final(ctxWait(t)); err != nil || rc.Sender != "pat-1" {
			t.Fatalf("message %s: Final = %+v, %v", s.ClientID(), rc, err)
		}
	}
}

func TestRelayRetryAfterRestart(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	clin := newRelayClient(t, r, clinician, []string{r.QUICURL, r.WSURL}, nil)
	pat := newRelayClient(t, r, patient, []string{r.WSURL, r.QUICURL}, nil)
	waitWelcome(t, clin)
	waitWelcome(t, pat)
	ctx := ctxWait(t)

	var last uint64
	sent := sendChats(t, clin, 1, 10)
	collect(t, pat, 1, 10, &last)

	// Some sends race the shutdown, more are queued while the relay is
	// down; all are committed once, in order, after the restart.
	sent = append(sent, sendChats(t, clin, 11, 10)...)
	r.Stop()
	sent = append(sent, sendChats(t, clin, 21, 10)...)
	r.Restart(t)
	waitEvent(t, clin, EventResumed)

	seqs := map[uint64]string{}
	var prev uint64
	for _, s := range sent {
		seq, _, err := s.Persisted(ctx)
		if err != nil {
			t.Fatalf("%s: %v", s.ClientID(), err)
		}
		if other, dup := seqs[seq]; dup {
			t.Fatalf("seq %d given to %s and %s", seq, other, s.ClientID())
		}
		if seq <= prev {
			t.Fatalf("seq %d after %d: out of Send order", seq, prev)
		}
		seqs[seq], prev = s.ClientID(), seq
	}
	collect(t, pat, 11, 20, &last)
	for _, s := range sent {
		if _, err := s.Final(ctx); err != nil {
			t.Fatalf("%s: %v", s.ClientID(), err)
		}
	}
}

func TestRelayGoawayOnDrain(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) { c.DrainGrace = 2 * time.Second }})
	pat := newRelayClient(t, r, patient, []string{r.QUICURL, r.WSURL}, nil)
	waitWelcome(t, pat)
	dctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- r.Server.Drain(dctx) }()
	waitEvent(t, pat, EventGoaway)
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v (the client did not leave)", err)
	}
	r.Restart(t)
	if ev := waitEvent(t, pat, EventResumed); !ev.Welcome.Resumed {
		t.Fatalf("reconnected without resume: %+v", ev.Welcome)
	}
}

func TestRelayPermanentErrors(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	expired := patient
	expired.Expiry = time.Now().Add(-time.Hour).Unix()
	tests := []struct {
		name string
		tok  func() []byte
		sess string
		want wire.Code
	}{
		{"expired", func() []byte { return r.Token(t, expired) }, "", wire.CodeExpired},
		{"unsigned", func() []byte { return []byte("not-a-token") }, "", wire.CodeUnauthorized},
		{"other session", func() []byte { return r.Token(t, patient) }, "fit-2", wire.CodeForbidden},
	}
	for _, tt := range tests {
		for _, url := range []string{r.WSURL, r.QUICURL} {
			t.Run(fmt.Sprintf("%s/%s", tt.name, url[:4]), func(t *testing.T) {
				tok := tt.tok()
				c, err := New(Config{
					URLs:    []string{url},
					Token:   func(context.Context) ([]byte, error) { return tok, nil },
					Session: tt.sess,
					TLS:     r.ClientTLS(),
				})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				select {
				case <-c.Done():
				case <-time.After(testWait):
					t.Fatal("client did not stop")
				}
				wantCode(t, c.Err(), tt.want)
			})
		}
	}
}
