package relay_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

// TestBadInput: every kind of bad input from a peer ends in a typed ERROR
// and a closed connection (or a skipped frame), never a hang; goleak in
// TestMain checks nothing is left running.
func TestBadInput(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
		c.HelloTimeout = 300 * time.Millisecond
		c.MaxFrame = 4096
	}})
	good := func() []byte { return r.Token(t, clinician("bad")) }
	hello := func(tok []byte) []byte {
		return wire.Encode(&wire.Frame{Type: wire.TypeHello, Token: tok, MinVersion: 1, MaxVersion: 1})
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	foreign, _ := token.NewSigner("test-key", otherKey)
	foreignTok, _ := foreign.Sign(token.Claims{Tenant: "t1", Subject: "x", Role: "clinician", Session: "bad", Expiry: time.Now().Add(time.Hour).Unix(), ID: "f"})
	expired := r.Token(t, token.Claims{Subject: "x", Role: "clinician", Session: "bad", Expiry: time.Now().Add(-time.Hour).Unix(), IssuedAt: time.Now().Add(-2 * time.Hour).Unix()})
	tampered := append([]byte(nil), good()...)
	tampered[len(tampered)/2] ^= 1

	cases := []struct {
		name   string
		frames [][]byte // sent in order (after nothing else)
		want   wire.Code
	}{
		{"garbage first frame", [][]byte{{0xff, 0x00, 0x13}}, 0}, // unknown type is skipped; then HELLO timeout
		{"malformed hello", [][]byte{{byte(wire.TypeHello), byte(wire.TagToken), 0x7f, 1}}, wire.CodeMalformed},
		{"empty frame", [][]byte{{}}, wire.CodeMalformed},
		{"oversized frame", [][]byte{append([]byte{byte(wire.TypeSend)}, bytes.Repeat([]byte{0}, 4096)...)}, wire.CodeTooLarge},
		{"send before hello", [][]byte{wire.Encode(&wire.Frame{Type: wire.TypeSend, ClientID: "x", Flags: wire.FlagDurable})}, wire.CodeProtocol},
		{"no token", [][]byte{hello(nil)}, wire.CodeUnauthorized},
		{"garbage token", [][]byte{hello([]byte("not.a.token"))}, wire.CodeUnauthorized},
		{"foreign key", [][]byte{hello(foreignTok)}, wire.CodeUnauthorized},
		{"tampered token", [][]byte{hello(tampered)}, wire.CodeUnauthorized},
		{"expired token", [][]byte{hello(expired)}, wire.CodeExpired},
		{"wrong session", [][]byte{wire.Encode(&wire.Frame{Type: wire.TypeHello, Token: good(), Session: "other"})}, wire.CodeForbidden},
		{"no common version", [][]byte{wire.Encode(&wire.Frame{Type: wire.TypeHello, Token: good(), MinVersion: 7, MaxVersion: 9})}, wire.CodeVersion},
		{"resume beyond head", [][]byte{wire.Encode(&wire.Frame{Type: wire.TypeHello, Token: good(), Resume: true, LastSeq: 99})}, wire.CodeBadResume},
		{"second hello", [][]byte{hello(good()), hello(good())}, wire.CodeProtocol},
		{"server frame from client", [][]byte{hello(good()), wire.Encode(&wire.Frame{Type: wire.TypeDeliver, Seq: 1})}, wire.CodeProtocol},
		{"no hello at all", nil, wire.CodeTimeout},
	}
	for _, transport := range []string{"ws", "quic"} {
		for _, tc := range cases {
			t.Run(transport+"/"+tc.name, func(t *testing.T) {
				c := relaytest.Dial(t, r, transport)
				for _, f := range tc.frames {
					if err := c.SendBytes(wire.ClassControl, f); err != nil && transport == "ws" {
						t.Fatalf("send: %v", err)
					}
				}
				want := tc.want
				if want == 0 {
					want = wire.CodeTimeout
				}
				if transport == "quic" && tc.name == "empty frame" {
					want = wire.CodeMalformed
				}
				code, closed := c.ClosedWith(5 * time.Second)
				if !closed {
					t.Fatalf("connection still open, want close with %v", want)
				}
				if code != want {
					t.Fatalf("closed with ERROR %v, want %v", code, want)
				}
			})
		}
	}
	// The relay still works for a good client after all of that.
	c := relaytest.Dial(t, r, "quic")
	c.Hello(good(), false, 0)
}

// TestRejectedSends: bad SENDs and ACKs get a non-fatal typed ERROR and
// the connection goes on.
func TestRejectedSends(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	cl := relaytest.Dial(t, r, "ws")
	cl.Hello(r.Token(t, clinician("rej")), false, 0)
	pt := relaytest.Dial(t, r, "quic")
	pt.Hello(r.Token(t, patient("rej")), false, 0)
	cases := []struct {
		name string
		from *relaytest.Conn
		f    wire.Frame
		want wire.Code
	}{
		{"durable without client id", cl, wire.Frame{Type: wire.TypeSend, Kind: wire.KindChat, Flags: wire.FlagDurable}, wire.CodeBadPayload},
		{"ephemeral config", cl, wire.Frame{Type: wire.TypeSend, ClientID: "e", Kind: wire.KindConfig, Payload: configPayload(0, wire.Param{Name: "g", Value: 1})}, wire.CodeBadPayload},
		{"config from patient", pt, wire.Frame{Type: wire.TypeSend, ClientID: "p", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: configPayload(0, wire.Param{Name: "g", Value: 1})}, wire.CodeForbidden},
		{"garbage config", cl, wire.Frame{Type: wire.TypeSend, ClientID: "g", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: []byte{9, 9, 9}}, wire.CodeBadPayload},
		{"empty config", cl, wire.Frame{Type: wire.TypeSend, ClientID: "z", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: configPayload(0)}, wire.CodeBadPayload},
		{"out of range", cl, wire.Frame{Type: wire.TypeSend, ClientID: "o", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: configPayload(0, wire.Param{Name: "g", Value: 5000})}, wire.CodeLimit},
		{"ack unknown seq", pt, wire.Frame{Type: wire.TypeAck, Seq: 42, Stage: wire.StageReceived}, wire.CodeUnknownSeq},
		{"ack bad stage", pt, wire.Frame{Type: wire.TypeAck, Seq: 1, Stage: 9}, wire.CodeBadPayload},
		{"payload too large for a DELIVER", cl, wire.Frame{Type: wire.TypeSend, ClientID: "big", Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: make([]byte, wire.DefaultMaxFrame-100)}, wire.CodeTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.from.Send(&tc.f)
			e := tc.from.Expect(wire.TypeError)
			if e.Code != tc.want || e.Fatal {
				t.Fatalf("got %v fatal=%v %q, want non-fatal %v", e.Code, e.Fatal, e.Message, tc.want)
			}
		})
	}
	// Both connections still work, and nothing was delivered.
	cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "ok", Kind: wire.KindChat, Flags: wire.FlagDurable, Payload: []byte("x")})
	if p := cl.Expect(wire.TypePersisted); p.Seq != 1 {
		t.Fatalf("first accepted message got seq %d, want 1", p.Seq)
	}
	if d := pt.Expect(wire.TypeDeliver); d.ClientID != "ok" {
		t.Fatalf("delivered %q", d.ClientID)
	}
	// Only the patient's app may ack a config command applied.
	ob := relaytest.Dial(t, r, "ws")
	ob.Hello(r.Token(t, token.Claims{Subject: "o1", Role: "observer", Session: "rej", Device: "HA-1", Model: "m1"}), false, 0)
	ob.Expect(wire.TypeDeliver)
	cl.Send(&wire.Frame{Type: wire.TypeSend, ClientID: "cfg", Kind: wire.KindConfig, Flags: wire.FlagDurable, Payload: configPayload(0, wire.Param{Name: "g", Value: 1})})
	cl.Expect(wire.TypePersisted)
	d := ob.Expect(wire.TypeDeliver)
	ob.Send(&wire.Frame{Type: wire.TypeAck, Seq: d.Seq, Stage: wire.StageApplied})
	if e := ob.Expect(wire.TypeError); e.Code != wire.CodeForbidden || e.RefSeq != d.Seq {
		t.Fatalf("observer applied ack: %v ref %d, want forbidden ref %d", e.Code, e.RefSeq, d.Seq)
	}
}
