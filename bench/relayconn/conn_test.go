package relayconn

import (
	"context"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/bench/baseline"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

func TestDialRoundTripBothTransports(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	for _, tr := range []string{"ws", "quic"} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sess := "s-" + tr
			got := make(chan []byte, 1)
			b, err := Dial(ctx, Options{Transport: tr, Addr: r.Addr, TLS: r.ClientTLS(),
				Token: r.Token(t, token.Claims{Subject: "b", Role: token.RolePatient, Session: sess}),
				OnFrame: func(f *wire.Frame) {
					if f.Type == wire.TypeDeliver {
						got <- f.Payload
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			a, err := Dial(ctx, Options{Transport: tr, Addr: r.Addr, TLS: r.ClientTLS(),
				Token: r.Token(t, token.Claims{Subject: "a", Role: token.RoleClinician, Session: sess})})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if w := a.Welcome(); w.Session != sess {
				t.Errorf("welcome session: got %q, want %q", w.Session, sess)
			}
			if err := a.Ping(ctx); err != nil {
				t.Fatalf("ping: %v", err)
			}
			if err := a.Send(ctx, &wire.Frame{Type: wire.TypeSend, Kind: 64, Payload: []byte("hi")}); err != nil {
				t.Fatal(err)
			}
			select {
			case p := <-got:
				if string(p) != "hi" {
					t.Errorf("delivered %q, want %q", p, "hi")
				}
			case <-ctx.Done():
				t.Fatal("no DELIVER")
			}
		})
	}
	bad := []byte("not-a-token")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Dial(ctx, Options{Transport: "ws", Addr: r.Addr, TLS: r.ClientTLS(), Token: bad}); err == nil {
		t.Error("a refused token dialled without error")
	}
}

func TestDialIdleAgainstEchoServers(t *testing.T) {
	tests := []struct {
		name   string
		server *httptest.Server
	}{
		{"gorilla", httptest.NewServer(baseline.GorillaEcho())},
		{"coder", httptest.NewServer(baseline.CoderEcho())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.server.Close()
			addr := strings.TrimPrefix(tc.server.URL, "http://")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			msg := []byte(strings.Repeat("x", 300)) // a 16-bit length
			c, reply, err := DialIdle(ctx, addr, "/", "", net.IPv4(127, 0, 0, 3), msg)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if string(reply) != string(msg) {
				t.Errorf("echo: got %d bytes, want the %d sent", len(reply), len(msg))
			}
		})
	}
}

func TestDialIdleRelayWelcome(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	// relaytest serves TLS; the idle client speaks plain ws://, so serve
	// the same relay's handler on a plain listener too.
	ts := httptest.NewServer(r.Server.Handler())
	defer ts.Close()
	hello := wire.Encode(&wire.Frame{Type: wire.TypeHello, MinVersion: 1, MaxVersion: 1,
		Token: r.Token(t, token.Claims{Subject: "a", Role: token.RoleClinician, Session: "idle"})})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, reply, err := DialIdle(ctx, strings.TrimPrefix(ts.URL, "http://"), relay.WSPath, relay.Subprotocol, nil, hello)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f, err := wire.Decode(reply, 1<<20)
	if err != nil || f.Type != wire.TypeWelcome {
		t.Fatalf("reply: %v %v, want WELCOME", f.Type, err)
	}
}
