package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
)

func TestConnectionCaps(t *testing.T) {
	t.Run("accept rate", func(t *testing.T) {
		r := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) {
			c.AcceptRate, c.AcceptBurst = 1, 2
		}})
		refused := 0
		for range 5 {
			c, err := relaytest.TryDial(r.Addr, r.ClientTLS(), "ws")
			if err != nil {
				refused++
				continue
			}
			defer c.Close()
		}
		if refused < 2 {
			t.Fatalf("%d of 5 rapid connections refused, want at least 2 beyond a burst of 2", refused)
		}
	})
	t.Run("max conns", func(t *testing.T) {
		r := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) { c.MaxConns = 1 }})
		first := relaytest.Dial(t, r, "quic")
		first.Hello(r.Token(t, clinician("cap")), false, 0)
		if c, err := relaytest.TryDial(r.Addr, r.ClientTLS(), "ws"); err == nil {
			c.Close()
			t.Fatal("second connection accepted over a cap of 1")
		}
	})
}

// TestWebSocketLevelAbuse: text messages and over-long messages on the
// WebSocket itself end with a typed ERROR.
func TestWebSocketLevelAbuse(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{Configure: func(c *relay.Config) { c.MaxFrame = 4096 }})
	for _, tc := range []struct {
		name string
		typ  websocket.MessageType
		size int
		want wire.Code
	}{
		{"text message", websocket.MessageText, 10, wire.CodeProtocol},
		{"huge message", websocket.MessageBinary, 1 << 20, wire.CodeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, r.WSURL, &websocket.DialOptions{Subprotocols: []string{relay.Subprotocol}, HTTPClient: httpsClient(r)})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			ws.SetReadLimit(1 << 20)
			_ = ws.Write(ctx, tc.typ, make([]byte, tc.size))
			_, b, err := ws.Read(ctx)
			if err != nil {
				if websocket.CloseStatus(err) == websocket.StatusCode(4000+int(tc.want)) {
					return // the close status carries the code
				}
				t.Fatalf("read: %v", err)
			}
			f, err := wire.Decode(b, 0)
			if err != nil || f.Type != wire.TypeError || f.Code != tc.want || !f.Fatal {
				t.Fatalf("got %v %v (%v), want fatal ERROR %v", f.Type, f.Code, err, tc.want)
			}
			if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusCode(4000+int(tc.want)) {
				t.Fatalf("close: %v, want status %d", err, 4000+int(tc.want))
			}
		})
	}
}
