package relay_test

import (
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

// regions starts relays a and a2 in region eu (each other's replica) and
// b in region us, one cluster; every relay trusts a's keys.
func regions(t *testing.T, mode relay.ForwardMode) (a, a2, b *relaytest.Relay, cl *relaytest.Cluster) {
	t.Helper()
	cl = &relaytest.Cluster{}
	start := func(id, region string, keys *relaytest.Relay) *relaytest.Relay {
		r := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
			c.RelayID, c.Region, c.Cluster, c.PeerSecret, c.Forward = id, region, cl, peerSecret, mode
			if keys != nil {
				c.Auth = keys.Keyring
			}
		}})
		cl.Set(r.Peer(id, region))
		return r
	}
	a = start("relay-a", "eu", nil)
	a2 = start("relay-a2", "eu", a)
	b = start("relay-b", "us", a)
	return a, a2, b, cl
}

// placedOn is a participant's claims for a session placed on relay.
func placedOn(c token.Claims, relay string) token.Claims {
	c.Relay = relay
	return c
}

// TestForwardedParticipant is issue 6's acceptance 2: the clinician is on
// the session's home (eu), the patient on its nearest relay in another
// region (us), which serves it through a relay-to-relay link to the home.
// Config commands flow with the full delivery promise, also across a
// reconnect of the patient (resumed through the link with last_seq), the
// patient's own messages and telemetry reach the clinician, and a home
// that dies is replaced by its replica behind the same edge.
func TestForwardedParticipant(t *testing.T) {
	a, a2, b, cl := regions(t, relay.ForwardRegion)
	const sid = "fwd"
	clin := relaytest.Dial(t, a, "ws")
	clin.Hello(a.Token(t, placedOn(clinician(sid), "relay-a")), false, 0)
	pat := relaytest.Dial(t, b, "quic")
	w := pat.Hello(a.Token(t, placedOn(patient(sid), "relay-a")), false, 0)
	if w.Epoch != 1 || w.Session != sid {
		t.Fatalf("WELCOME through the link: %+v", w)
	}
	if ids := b.Server.SessionIDs(); len(ids) != 0 {
		t.Fatalf("the edge loaded sessions %v; it must only forward", ids)
	}
	if n := a.Server.Load(); n != 2 {
		t.Fatalf("home serves %d connections, want 2 (one forwarded)", n)
	}
	f := relaytest.NewFitter(t, clin, pat)
	for range 20 {
		f.Command()
	}

	// The patient's durable messages and telemetry go the other way.
	pat.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "p-chat", Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("hello")})
	if p := pat.NextOf(wire.TypePersisted, 5*time.Second); p.ClientID != "p-chat" {
		t.Fatalf("patient's message PERSISTED as %+v", p)
	}
	if d := clin.NextOf(wire.TypeDeliver, 5*time.Second); d.ClientID != "p-chat" || string(d.Payload) != "hello" {
		t.Fatalf("clinician got %+v", d)
	}
	pat.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "t1", Kind: wire.KindTelemetry, Payload: []byte("level=3")})
	if d := clin.NextOf(wire.TypeDeliver, 5*time.Second); d.Kind != wire.KindTelemetry || string(d.Payload) != "level=3" {
		t.Fatalf("clinician got %+v, want the telemetry", d)
	}
	f.Last++ // the patient's own message took a seq

	// Commands persisted while the patient is away arrive once, after it
	// resumes through the edge.
	pat.Close()
	clin.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "while-away", Kind: wire.KindConfig, Flags: wire.FlagDurable,
		Payload: configPayload(f.Version, wire.Param{Name: "gain.l.2k", Value: 1})})
	away := clin.NextOf(wire.TypePersisted, 5*time.Second)
	pat = relaytest.Dial(t, b, "ws")
	pat.Hello(a.Token(t, placedOn(patient(sid), "relay-a")), true, f.Last)
	if d := pat.NextOf(wire.TypeDeliver, 5*time.Second); d.Seq != away.Seq || d.ClientID != "while-away" {
		t.Fatalf("after resume got %d %q, want %d", d.Seq, d.ClientID, away.Seq)
	}
	pat.Send(&wire.Frame{Type: wire.TypeAck, Seq: away.Seq, Stage: wire.StageApplied})
	f.Pat, f.Last, f.Version = pat, away.Seq, f.Version+1
	f.Applied[away.Seq] = true
	for range 10 {
		f.Command()
	}

	// The home dies: the edge cuts the patient's connection; the patient
	// resumes at the edge, which finds the session at the home's replica
	// (another region), which takes it over.
	clin.Close()
	a.Stop()
	cl.Remove("relay-a")
	if code, closed := pat.ClosedWith(15 * time.Second); !closed || code != wire.CodeUnavailable {
		t.Fatalf("patient's connection after the home died: closed %v code %v, want unavailable", closed, code)
	}
	pat = relaytest.Dial(t, b, "quic")
	w = pat.Hello(a.Token(t, placedOn(patient(sid), "relay-a")), true, f.Last)
	if w.Epoch != 2 {
		t.Fatalf("WELCOME after the home died: epoch %d, want 2 (the replica took over)", w.Epoch)
	}
	clin = relaytest.Dial(t, a2, "ws")
	clin.Hello(a.Token(t, placedOn(clinician(sid), "relay-a")), true, f.Last)
	f.Clin, f.Pat = clin, pat
	for range 10 {
		f.Command()
	}
	if len(f.Applied) != 41 {
		t.Fatalf("%d commands applied, want 41", len(f.Applied))
	}
	if ids := b.Server.SessionIDs(); len(ids) != 0 {
		t.Fatalf("the edge loaded sessions %v", ids)
	}
}

// TestForwardPolicy: within a region the default policy redirects (the
// relays are equally near); ForwardAlways forwards there too; and a
// forwarded connection's HELLO is checked by the home as well as the edge.
func TestForwardPolicy(t *testing.T) {
	t.Run("region redirects within the region", func(t *testing.T) {
		a, a2, _, _ := regions(t, relay.ForwardRegion)
		clin := relaytest.Dial(t, a, "ws")
		clin.Hello(a.Token(t, placedOn(clinician("pol"), "relay-a")), false, 0)
		pc := relaytest.Dial(t, a2, "ws")
		pc.Send(&wire.Frame{Type: wire.TypeHello, Token: a.Token(t, placedOn(patient("pol"), "relay-a")), MinVersion: 1, MaxVersion: 1})
		if g := pc.NextOf(wire.TypeGoaway, 5*time.Second); g.Redirect != a.QUICURL {
			t.Fatalf("GOAWAY to %q, want %q", g.Redirect, a.QUICURL)
		}
	})
	t.Run("always forwards within the region", func(t *testing.T) {
		a, a2, _, _ := regions(t, relay.ForwardAlways)
		clin := relaytest.Dial(t, a, "ws")
		clin.Hello(a.Token(t, placedOn(clinician("pol"), "relay-a")), false, 0)
		pat := relaytest.Dial(t, a2, "ws")
		pat.Hello(a.Token(t, placedOn(patient("pol"), "relay-a")), false, 0)
		f := relaytest.NewFitter(t, clin, pat)
		for range 5 {
			f.Command()
		}
	})
	t.Run("the home refuses what it must", func(t *testing.T) {
		a, _, b, _ := regions(t, relay.ForwardRegion)
		clin := relaytest.Dial(t, a, "ws")
		clin.Hello(a.Token(t, placedOn(clinician("pol"), "relay-a")), false, 0)
		a.Server.EndSession(t.Context(), "", "pol", "test")
		if code, closed := clin.ClosedWith(5 * time.Second); !closed || code != wire.CodeSessionClosed {
			t.Fatalf("clinician: closed %v code %v", closed, code)
		}
		// The edge cannot know the session ended; the home says so, and
		// the edge closes the client with the home's code.
		pat := relaytest.Dial(t, b, "ws")
		pat.Send(&wire.Frame{Type: wire.TypeHello, Token: a.Token(t, placedOn(patient("pol"), "relay-a")), MinVersion: 1, MaxVersion: 1})
		if code, closed := pat.ClosedWith(5 * time.Second); !closed || code != wire.CodeSessionClosed {
			t.Fatalf("patient through the edge: closed %v code %v, want session_closed", closed, code)
		}
	})
}
