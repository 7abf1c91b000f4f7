package client

import (
	"errors"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
)

// Unit tests of what may come before WELCOME, over the in-memory pipe.

func TestGoawayBeforeWelcome(t *testing.T) {
	const a, b = "wss://a.test/v1/connect", "wss://b.test/v1/connect"
	tests := []struct {
		name     string
		redirect string
		follow   string // the redirect the client reports
		next     string // the URL it dials next
	}{
		{"redirect", "quic://c.test:8443", "quic://c.test:8443", "quic://c.test:8443"},
		{"no redirect", "", "", b},
		{"downgrade ignored", "ws://c.test/v1/connect", "", b},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newFakeNet(t)
			c := newPipeClient(t, n, func(cfg *Config) { cfg.URLs = []string{a, b} })
			r := n.accept()
			r.expect(wire.TypeHello)
			// The relay starts draining before it admitted the connection.
			r.send(wire.Frame{Type: wire.TypeGoaway, Code: wire.CodeDraining, Redirect: tt.redirect, AfterMillis: 5000})
			if ev := waitEvent(t, c, EventGoaway); ev.Redirect != tt.follow || ev.URL != a {
				t.Fatalf("goaway event %+v, want redirect %q from %s", ev, tt.follow, a)
			}
			ev := waitEvent(t, c, EventDisconnected)
			if !errors.Is(ev.Err, ErrGoaway) || errors.Is(ev.Err, ErrProtocol) {
				t.Fatalf("disconnected with %v, want ErrGoaway", ev.Err)
			}
			r.waitClosed()

			r = n.accept()
			if r.url != tt.next {
				t.Fatalf("dialed %s after GOAWAY, want %s", r.url, tt.next)
			}
			r.admit(wire.Frame{Role: wire.RolePatient})
			waitEvent(t, c, EventConnected)
			if err := c.Err(); err != nil {
				t.Fatalf("client stopped: %v", err)
			}
		})
	}
}

func TestRepeatedGoawayBeforeWelcomeFollowed(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, nil)
	// Two relays turn the client away in a row; the second redirect is
	// followed too (after a backoff).
	for _, next := range []string{"quic://b.test:1", "quic://c.test:1"} {
		r := n.accept()
		r.expect(wire.TypeHello)
		r.send(wire.Frame{Type: wire.TypeGoaway, Code: wire.CodeDraining, Redirect: next})
		r.waitClosed()
	}
	r := n.accept()
	if r.url != "quic://c.test:1" {
		t.Fatalf("dialed %s, want the second redirect", r.url)
	}
	r.admit(wire.Frame{})
	waitEvent(t, c, EventConnected)
}

func TestFramesBeforeWelcome(t *testing.T) {
	tests := []struct {
		name   string
		before wire.Frame
		ok     bool
	}{
		{"ping", wire.Frame{Type: wire.TypePing, Nonce: 1}, true},
		{"pong", wire.Frame{Type: wire.TypePong, Nonce: 1}, true},
		{"deliver", deliver(1, "early"), false},
		{"persisted", wire.Frame{Type: wire.TypePersisted, ClientID: "x", Seq: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newFakeNet(t)
			c := newPipeClient(t, n, nil)
			r := n.accept()
			r.expect(wire.TypeHello)
			r.send(tt.before)
			if !tt.ok {
				if ev := waitEvent(t, c, EventDisconnected); !errors.Is(ev.Err, ErrProtocol) {
					t.Fatalf("disconnected with %v, want ErrProtocol", ev.Err)
				}
				return
			}
			r.send(wire.Frame{Type: wire.TypeWelcome, Version: 1, Session: "s1"})
			waitEvent(t, c, EventConnected)
		})
	}
}

func TestVersionErrorCarriesRelayRange(t *testing.T) {
	n := newFakeNet(t)
	c := newPipeClient(t, n, nil)
	r := n.accept()
	r.expect(wire.TypeHello)
	r.send(wire.Frame{Type: wire.TypeError, Code: wire.CodeVersion, MinVersion: 2, MaxVersion: 3, Fatal: true,
		Message: "no common protocol version"})
	select {
	case <-c.Done():
	case <-time.After(testWait):
		t.Fatal("client did not stop")
	}
	var e *Error
	if !errors.As(c.Err(), &e) || e.Code != wire.CodeVersion || e.MinVersion != 2 || e.MaxVersion != 3 || !e.Fatal {
		t.Fatalf("Err() = %#v, want fatal version error with range 2..3", c.Err())
	}
}
