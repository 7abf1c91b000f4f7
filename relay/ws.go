package relay

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/coder/websocket"
	"github.com/stapes-relay/stapes/relay/wire"
)

// Subprotocol is the WebSocket subprotocol and QUIC ALPN of this protocol.
const Subprotocol = "stapes/1"

// WSPath is where Handler is usually mounted.
const WSPath = "/v1/connect"

var allClasses = []wire.Class{wire.ClassControl, wire.ClassDurable, wire.ClassTelemetry, wire.ClassSignal}

// Handler returns the WebSocket endpoint. Each binary message carries one
// frame; every class shares the connection's single writer.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveWS)
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if !s.admitConn() {
		http.Error(w, "relay overloaded; retry later", http.StatusServiceUnavailable)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:    []string{Subprotocol},
		OriginPatterns:  s.cfg.OriginPatterns,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept wrote the HTTP error
	}
	if ws.Subprotocol() != Subprotocol {
		ws.Close(websocket.StatusPolicyViolation, "subprotocol "+Subprotocol+" required")
		return
	}
	// One byte over the limit still reaches Decode and gets a typed
	// too_large ERROR; anything larger is cut off by the library (1009).
	ws.SetReadLimit(int64(s.cfg.MaxFrame) + 1)
	c := s.newConn("ws", true)
	if !s.track(c) {
		ws.Close(websocket.StatusGoingAway, "relay closed")
		return
	}
	defer s.untrack(c)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := c.writeLoop(c.ctx, allClasses, func(ctx context.Context, b []byte) error {
			return ws.Write(ctx, websocket.MessageBinary, b)
		})
		if errors.Is(err, errConnDone) {
			ws.Close(websocket.StatusCode(4000+int(lastErrorCode(c))), lastErrorCode(c).String())
		}
		c.cancel()
	}()
	for {
		typ, data, err := ws.Read(c.ctx)
		if err != nil {
			break
		}
		if typ != websocket.MessageBinary {
			c.fail(fatalf(wire.CodeProtocol, "text messages are not part of the protocol"))
			continue
		}
		if err := c.handleFrame(c.ctx, data); err != nil {
			break
		}
	}
	c.cancel()
	wg.Wait()
	ws.CloseNow()
}
