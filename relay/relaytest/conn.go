package relay_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
)

// raw is a protocol-level test driver: it speaks frames, nothing more, so
// tests can send anything, including garbage.
type raw struct {
	t      testing.TB
	ws     *websocket.Conn
	qc     *quic.Conn
	qs     [wire.NumClasses]*quic.Stream
	in     chan wire.Frame
	errs   chan error
	wg     sync.WaitGroup
	closed chan struct{}

	receipts []wire.Frame // collected by tests that need them
}

func dialRaw(t testing.TB, r *relaytest.Relay, transport string) *raw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &raw{t: t, in: make(chan wire.Frame, 100000), errs: make(chan error, 8), closed: make(chan struct{})}
	switch transport {
	case "ws":
		ws, _, err := websocket.Dial(ctx, r.WSURL, &websocket.DialOptions{
			Subprotocols: []string{relay.Subprotocol},
			HTTPClient:   httpsClient(r),
		})
		if err != nil {
			t.Fatalf("ws dial: %v", err)
		}
		ws.SetReadLimit(1 << 20)
		c.ws = ws
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for {
				_, b, err := ws.Read(context.Background())
				if err != nil {
					c.errs <- err
					close(c.in)
					return
				}
				c.push(b)
			}
		}()
	case "quic":
		tc := r.ClientTLS()
		tc.NextProtos = []string{relay.Subprotocol}
		qc, err := quic.DialAddr(ctx, r.Addr, tc, &quic.Config{MaxIdleTimeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("quic dial: %v", err)
		}
		c.qc = qc
		c.openStream(wire.ClassControl)
	default:
		t.Fatalf("transport %q", transport)
	}
	t.Cleanup(c.close)
	return c
}

func (c *raw) push(b []byte) {
	f, err := wire.Decode(b, 1<<20)
	if err != nil {
		c.errs <- fmt.Errorf("decode from relay: %w", err)
		return
	}
	c.in <- f
}

var inMu sync.Mutex

func (c *raw) openStream(cl wire.Class) {
	st, err := c.qc.OpenStreamSync(context.Background())
	if err != nil {
		c.t.Fatalf("open stream: %v", err)
	}
	if _, err := st.Write([]byte{byte(cl)}); err != nil {
		c.t.Fatalf("write class: %v", err)
	}
	c.qs[cl] = st
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		br := bufio.NewReader(st)
		for {
			b, err := wire.ReadFrame(br, 1<<20)
			if err != nil {
				if cl == wire.ClassControl {
					c.errs <- err
					inMu.Lock()
					select {
					case <-c.closed:
					default:
						close(c.closed)
					}
					inMu.Unlock()
				}
				return
			}
			c.push(b)
		}
	}()
}

// openClasses opens the durable, telemetry and signal streams (QUIC).
func (c *raw) openClasses() {
	if c.qc == nil {
		return
	}
	for _, cl := range []wire.Class{wire.ClassDurable, wire.ClassTelemetry, wire.ClassSignal} {
		c.openStream(cl)
	}
}

func (c *raw) sendBytes(cl wire.Class, b []byte) error {
	if c.ws != nil {
		return c.ws.Write(context.Background(), websocket.MessageBinary, b)
	}
	return wire.WriteFrame(c.qs[cl], b)
}

func (c *raw) send(f *wire.Frame) {
	c.t.Helper()
	if err := c.trySend(f); err != nil {
		c.t.Fatalf("send %v: %v", f.Type, err)
	}
}

// trySend is send for goroutines other than the test's.
func (c *raw) trySend(f *wire.Frame) error {
	cl := wire.ClassControl
	switch f.Type {
	case wire.TypeSend:
		cl = wire.ClassOf(f.Kind, f.Durable())
	case wire.TypeAck:
		cl = wire.ClassDurable
	}
	return c.sendBytes(cl, wire.Encode(f))
}

// next returns the next frame, skipping PINGs, or fails after d.
func (c *raw) next(d time.Duration) (wire.Frame, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case f, ok := <-c.in:
			if !ok {
				return wire.Frame{}, io.EOF
			}
			if f.Type == wire.TypePing {
				continue
			}
			return f, nil
		case err := <-c.errs:
			if c.qc != nil {
				return wire.Frame{}, err
			}
			c.errs <- err
			// WS: drain what was received before the error.
			select {
			case f, ok := <-c.in:
				if ok {
					return f, nil
				}
			default:
			}
			return wire.Frame{}, err
		case <-t.C:
			return wire.Frame{}, errors.New("timeout waiting for frame")
		}
	}
}

func (c *raw) expect(typ wire.Type) wire.Frame {
	c.t.Helper()
	f, err := c.next(5 * time.Second)
	if err != nil {
		c.t.Fatalf("waiting for %v: %v", typ, err)
	}
	if f.Type != typ {
		c.t.Fatalf("got %v (code %v %q), want %v", f.Type, f.Code, f.Message, typ)
	}
	return f
}

// hello sends HELLO and expects WELCOME.
func (c *raw) hello(tok []byte, resume bool, last uint64) wire.Frame {
	c.t.Helper()
	c.send(&wire.Frame{Type: wire.TypeHello, Token: tok, MinVersion: 1, MaxVersion: 1, Resume: resume, LastSeq: last})
	w := c.expect(wire.TypeWelcome)
	c.openClasses()
	return w
}

// closedWith waits for the relay to end the connection, returning the
// fatal ERROR it sent (if any).
func (c *raw) closedWith(d time.Duration) (code wire.Code, closed bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		f, err := c.next(time.Until(deadline))
		if err != nil {
			return code, !strings.Contains(err.Error(), "timeout waiting")
		}
		if f.Type == wire.TypeError && f.Fatal {
			code = f.Code
		}
	}
	return code, false
}

func (c *raw) close() {
	if c.ws != nil {
		c.ws.CloseNow()
	}
	if c.qc != nil {
		c.qc.CloseWithError(0, "")
	}
	c.wg.Wait()
}
