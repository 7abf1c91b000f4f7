// Package relayconn is the benchmark's frame-level client of the stapes
// protocol (docs/protocol.md) over WebSocket and QUIC. Unlike the client
// SDK (relay/client) it keeps no queues and does no retries: it sends what
// it is told and hands every frame to a callback, so a measurement sees the
// relay and the transport, not client machinery. It also dials QUIC with
// 0-RTT (the SDK does not).
package relayconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"

	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/wire"
)

// ErrRefused is returned when the relay answers HELLO with an ERROR.
var ErrRefused = errors.New("relayconn: relay refused the connection")

// Options configures Dial.
type Options struct {
	// Transport is "ws" (WebSocket over TLS, or plain with Plain) or "quic".
	Transport string
	// Addr is the relay's host:port.
	Addr string
	// TLS is the client TLS config (trusting the relay). A
	// ClientSessionCache in it enables resumption (and 0-RTT with Early).
	TLS *tls.Config
	// Plain dials ws:// instead of wss://.
	Plain bool
	// Early dials QUIC with 0-RTT: HELLO goes in the first flight when the
	// session cache holds a ticket for the relay.
	Early bool
	// Token is the session token sent in HELLO.
	Token []byte
	// OnFrame receives every frame after WELCOME except PING (answered
	// here), from the reader goroutines (one per QUIC stream). It must not
	// block for long. Nil discards.
	OnFrame func(f *wire.Frame)
}

// Conn is one admitted connection.
type Conn struct {
	o       Options
	ws      *websocket.Conn
	qc      *quic.Conn
	qs      [wire.NumClasses]*quic.Stream
	qmu     [wire.NumClasses]sync.Mutex // one writer at a time per stream
	welcome wire.Frame
	pongs   chan uint64
	nonce   atomic.Uint64
	ctx     context.Context // the connection's lifetime
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
}

// Dial connects, sends HELLO and waits for WELCOME; on QUIC it then opens
// the durable, telemetry and signal streams.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	cctx, cancel := context.WithCancel(context.Background())
	c := &Conn{o: o, pongs: make(chan uint64, 4), ctx: cctx, cancel: cancel}
	hello := wire.Encode(&wire.Frame{Type: wire.TypeHello, Token: o.Token, MinVersion: 1, MaxVersion: 1, Caps: wire.CapResume | wire.CapReceipts})
	var err error
	switch o.Transport {
	case "ws":
		err = c.dialWS(ctx, hello)
	case "quic":
		err = c.dialQUIC(ctx, hello)
	default:
		err = fmt.Errorf("relayconn: unknown transport %q", o.Transport)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Welcome is the relay's WELCOME.
func (c *Conn) Welcome() wire.Frame { return c.welcome }

// Used0RTT reports whether the QUIC handshake used 0-RTT.
func (c *Conn) Used0RTT() bool {
	return c.qc != nil && c.qc.ConnectionState().Used0RTT
}

func (c *Conn) dialWS(ctx context.Context, hello []byte) error {
	scheme := "wss://"
	if c.o.Plain {
		scheme = "ws://"
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.o.TLS, DisableKeepAlives: true, ForceAttemptHTTP2: false}}
	ws, _, err := websocket.Dial(ctx, scheme+c.o.Addr+relay.WSPath, &websocket.DialOptions{
		Subprotocols: []string{relay.Subprotocol}, HTTPClient: hc, CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return fmt.Errorf("relayconn: ws dial: %w", err)
	}
	ws.SetReadLimit(1 << 20)
	c.ws = ws
	if err := ws.Write(ctx, websocket.MessageBinary, hello); err != nil {
		return fmt.Errorf("relayconn: ws hello: %w", err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		return fmt.Errorf("relayconn: ws welcome: %w", err)
	}
	if err := c.admit(b); err != nil {
		return err
	}
	c.wg.Go(func() {
		for {
			_, b, err := ws.Read(c.ctx)
			if err != nil {
				return
			}
			c.handle(wire.ClassControl, b)
		}
	})
	return nil
}

func (c *Conn) dialQUIC(ctx context.Context, hello []byte) error {
	tc := c.o.TLS.Clone()
	tc.NextProtos = []string{relay.Subprotocol}
	qcfg := &quic.Config{MaxIdleTimeout: 30 * time.Second}
	var err error
	if c.o.Early {
		c.qc, err = quic.DialAddrEarly(ctx, c.o.Addr, tc, qcfg)
	} else {
		c.qc, err = quic.DialAddr(ctx, c.o.Addr, tc, qcfg)
	}
	if err != nil {
		return fmt.Errorf("relayconn: quic dial: %w", err)
	}
	st, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("relayconn: quic control stream: %w", err)
	}
	c.qs[wire.ClassControl] = st
	buf := make([]byte, 0, 5+len(hello))
	buf = append(buf, byte(wire.ClassControl))
	buf = append(buf, byte(len(hello)>>24), byte(len(hello)>>16), byte(len(hello)>>8), byte(len(hello)))
	buf = append(buf, hello...)
	if _, err := st.Write(buf); err != nil {
		return fmt.Errorf("relayconn: quic hello: %w", err)
	}
	br := bufio.NewReaderSize(st, 4096)
	if dl, ok := ctx.Deadline(); ok {
		st.SetReadDeadline(dl)
	}
	b, err := wire.ReadFrame(br, 1<<20)
	if err != nil {
		return fmt.Errorf("relayconn: quic welcome: %w", err)
	}
	st.SetReadDeadline(time.Time{})
	if err := c.admit(b); err != nil {
		return err
	}
	c.startReader(wire.ClassControl, br)
	for _, cl := range []wire.Class{wire.ClassDurable, wire.ClassTelemetry, wire.ClassSignal} {
		s, err := c.qc.OpenStreamSync(ctx)
		if err != nil {
			return fmt.Errorf("relayconn: quic open %v stream: %w", cl, err)
		}
		if _, err := s.Write([]byte{byte(cl)}); err != nil {
			return fmt.Errorf("relayconn: quic %v stream: %w", cl, err)
		}
		c.qs[cl] = s
		c.startReader(cl, bufio.NewReaderSize(s, 4096))
	}
	return nil
}

func (c *Conn) startReader(cl wire.Class, br *bufio.Reader) {
	c.wg.Go(func() {
		for {
			b, err := wire.ReadFrame(br, 1<<20)
			if err != nil {
				return
			}
			c.handle(cl, b)
		}
	})
}

func (c *Conn) admit(b []byte) error {
	f, err := wire.Decode(b, 1<<20)
	if err != nil {
		return fmt.Errorf("relayconn: welcome: %w", err)
	}
	if f.Type == wire.TypeError {
		return fmt.Errorf("%w: %v: %s", ErrRefused, f.Code, f.Message)
	}
	if f.Type != wire.TypeWelcome {
		return fmt.Errorf("relayconn: got %v, want WELCOME", f.Type)
	}
	c.welcome = f
	return nil
}

func (c *Conn) handle(cl wire.Class, b []byte) {
	f, err := wire.Decode(b, 1<<20)
	if err != nil {
		return
	}
	switch f.Type {
	case wire.TypePing:
		_ = c.Send(c.ctx, &wire.Frame{Type: wire.TypePong, Nonce: f.Nonce})
		return
	case wire.TypePong:
		select {
		case c.pongs <- f.Nonce:
		default:
		}
		return
	}
	if c.o.OnFrame != nil {
		c.o.OnFrame(&f)
	}
}

// Send writes one frame on the stream of its class.
func (c *Conn) Send(ctx context.Context, f *wire.Frame) error {
	cl := wire.ClassControl
	switch f.Type {
	case wire.TypeSend:
		cl = wire.ClassOf(f.Kind, f.Durable())
	case wire.TypeAck:
		cl = wire.ClassDurable
	}
	return c.SendEncoded(ctx, cl, wire.Encode(f))
}

// SendEncoded writes an encoded frame on the stream of class cl.
func (c *Conn) SendEncoded(ctx context.Context, cl wire.Class, b []byte) error {
	if c.ws != nil {
		return c.ws.Write(ctx, websocket.MessageBinary, b)
	}
	c.qmu[cl].Lock()
	defer c.qmu[cl].Unlock()
	return wire.WriteFrame(c.qs[cl], b)
}

// Ping sends PING and waits for its PONG.
func (c *Conn) Ping(ctx context.Context) error {
	n := c.nonce.Add(1)
	if err := c.Send(ctx, &wire.Frame{Type: wire.TypePing, Nonce: n}); err != nil {
		return err
	}
	for {
		select {
		case got := <-c.pongs:
			if got == n {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close closes the connection and waits for its readers.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.cancel()
		if c.ws != nil {
			c.ws.CloseNow()
		}
		if c.qc != nil {
			c.qc.CloseWithError(0, "")
		}
	})
	c.wg.Wait()
	return nil
}
