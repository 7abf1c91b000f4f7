package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/coder/websocket"

	"github.com/stapes-relay/stapes/relay/wire"
)

// wsTransport carries one frame per binary WebSocket message.
type wsTransport struct {
	c *websocket.Conn
}

var _ transport = (*wsTransport)(nil)

func dialWS(ctx context.Context, d *dialer, url string) (*wsTransport, error) {
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:   d.http,
		Subprotocols: []string{Subprotocol},
	})
	if err != nil {
		return nil, fmt.Errorf("client: websocket dial: %w", err)
	}
	if c.Subprotocol() != Subprotocol {
		c.CloseNow()
		return nil, fmt.Errorf("%w: websocket subprotocol %q", ErrProtocol, c.Subprotocol())
	}
	c.SetReadLimit(int64(readLimit(0)))
	return &wsTransport{c: c}, nil
}

func (t *wsTransport) read(ctx context.Context) ([]byte, error) {
	typ, b, err := t.c.Read(ctx)
	if err != nil {
		return nil, wsError(err)
	}
	if typ != websocket.MessageBinary {
		return nil, fmt.Errorf("%w: websocket text message", ErrProtocol)
	}
	return b, nil
}

func (t *wsTransport) write(ctx context.Context, _ wire.Class, frame []byte) error {
	return t.c.Write(ctx, websocket.MessageBinary, frame)
}

func (t *wsTransport) established(_ context.Context, maxFrame int) error {
	t.c.SetReadLimit(int64(readLimit(maxFrame)))
	return nil
}

func (t *wsTransport) close() { t.c.CloseNow() }

func (t *wsTransport) name() string { return "ws" }

// wsCloseBase is the first WebSocket close status that carries a wire.Code
// (status = wsCloseBase + code), should the relay close that way.
const wsCloseBase = 4000

// wsError maps a close status that names a protocol error code to *Error,
// so a fatal error survives even if its ERROR frame was lost.
func wsError(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) && ce.Code > wsCloseBase && ce.Code < wsCloseBase+1000 {
		return &Error{Code: wire.Code(ce.Code - wsCloseBase), Message: ce.Reason, Fatal: true}
	}
	return err
}
