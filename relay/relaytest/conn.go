package relaytest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/stapes-relay/stapes/relay"
	"github.com/stapes-relay/stapes/relay/wire"
)

// Conn is a protocol-level test driver: it speaks frames, nothing more,
// so tests can send anything, including garbage. It is not the client SDK
// (relay/client); it exists to test the relay from the wire.
type Conn struct {
	t      testing.TB
	ws     *websocket.Conn
	qc     *quic.Conn
	qs     [wire.NumClasses]*quic.Stream
	in     chan wire.Frame
	errs   chan error
	wg     sync.WaitGroup
	closed chan struct{}

	closeOnce sync.Once
	quit      chan struct{} // closed by Close
	gateMu    sync.Mutex
	paused    [wire.NumClasses]chan struct{}

	Receipts []wire.Frame // collected by tests that need them
}

// Dial connects to r over "ws" or "quic".
func Dial(t testing.TB, r *Relay, transport string) *Conn {
	t.Helper()
	return DialAddr(t, r.Addr, r.ClientTLS(), transport)
}

// DialAddr connects to a relay at addr (host:port, TLS) over "ws" or "quic".
func DialAddr(t testing.TB, addr string, tc *tls.Config, transport string) *Conn {
	t.Helper()
	c, err := TryDial(addr, tc, transport)
	if err != nil {
		t.Fatalf("relaytest: dial %s: %v", transport, err)
	}
	c.t = t
	t.Cleanup(c.Close)
	return c
}

// TryDial connects without failing the test; Close is the caller's.
func TryDial(addr string, tc *tls.Config, transport string) (*Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &Conn{in: make(chan wire.Frame, 1024), errs: make(chan error, 8), closed: make(chan struct{}), quit: make(chan struct{})}
	switch transport {
	case "ws":
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
		ws, _, err := websocket.Dial(ctx, "wss://"+addr+relay.WSPath, &websocket.DialOptions{
			Subprotocols: []string{relay.Subprotocol},
			HTTPClient:   hc,
		})
		if err != nil {
			return nil, err
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
		tc = tc.Clone()
		tc.NextProtos = []string{relay.Subprotocol}
		qc, err := quic.DialAddr(ctx, addr, tc, &quic.Config{MaxIdleTimeout: 10 * time.Second})
		if err != nil {
			return nil, err
		}
		c.qc = qc
		if err := c.openStream(wire.ClassControl); err != nil {
			qc.CloseWithError(0, "")
			return nil, err
		}
	default:
		return nil, fmt.Errorf("relaytest: unknown transport %q", transport)
	}
	return c, nil
}

func (c *Conn) push(b []byte) {
	f, err := wire.Decode(b, 1<<20)
	if err != nil {
		select {
		case c.errs <- fmt.Errorf("decode from relay: %w", err):
		case <-c.quit:
		}
		return
	}
	select {
	case c.in <- f:
	case <-c.quit: // closed: nobody reads any more
		return
	}
	if f.Type == wire.TypeError && f.Fatal && c.qc != nil {
		// As a client must: hang up after a fatal ERROR.
		c.qc.CloseWithError(0, "")
	}
}

var inMu sync.Mutex

func (c *Conn) openStream(cl wire.Class) error {
	st, err := c.qc.OpenStreamSync(context.Background())
	if err != nil {
		return err
	}
	if _, err := st.Write([]byte{byte(cl)}); err != nil {
		return err
	}
	c.qs[cl] = st
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		br := bufio.NewReader(st)
		for {
			c.gate(cl)
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
	return nil
}

// PauseReads stops reading the QUIC stream of class cl (after the frame
// being read), so the relay's writes to it back up under flow control, as
// with a slow or stalled peer. ResumeReads undoes it.
func (c *Conn) PauseReads(cl wire.Class) {
	c.gateMu.Lock()
	defer c.gateMu.Unlock()
	if c.paused[cl] == nil {
		c.paused[cl] = make(chan struct{})
	}
}

// ResumeReads resumes reading a paused stream.
func (c *Conn) ResumeReads(cl wire.Class) {
	c.gateMu.Lock()
	defer c.gateMu.Unlock()
	if c.paused[cl] != nil {
		close(c.paused[cl])
		c.paused[cl] = nil
	}
}

func (c *Conn) gate(cl wire.Class) {
	c.gateMu.Lock()
	ch := c.paused[cl]
	c.gateMu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-c.closed:
		}
	}
}

// openClasses opens the durable, telemetry and signal streams (QUIC).
func (c *Conn) openClasses() error {
	if c.qc == nil {
		return nil
	}
	for _, cl := range []wire.Class{wire.ClassDurable, wire.ClassTelemetry, wire.ClassSignal} {
		if err := c.openStream(cl); err != nil {
			return err
		}
	}
	return nil
}

func (c *Conn) SendBytes(cl wire.Class, b []byte) error {
	if c.ws != nil {
		return c.ws.Write(context.Background(), websocket.MessageBinary, b)
	}
	return wire.WriteFrame(c.qs[cl], b)
}

func (c *Conn) Send(f *wire.Frame) {
	c.t.Helper()
	if err := c.TrySend(f); err != nil {
		c.t.Fatalf("send %v: %v", f.Type, err)
	}
}

// trySend is send for goroutines other than the test's.
func (c *Conn) TrySend(f *wire.Frame) error {
	cl := wire.ClassControl
	switch f.Type {
	case wire.TypeSend:
		cl = wire.ClassOf(f.Kind, f.Durable())
	case wire.TypeAck:
		cl = wire.ClassDurable
	}
	return c.SendBytes(cl, wire.Encode(f))
}

// next returns the next frame, skipping PINGs, or fails after d.
func (c *Conn) Next(d time.Duration) (wire.Frame, error) {
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
			c.errs <- err
			// Frames that arrived before the error come first.
			select {
			case f, ok := <-c.in:
				if ok && f.Type != wire.TypePing {
					return f, nil
				}
				if ok {
					continue
				}
			default:
			}
			return wire.Frame{}, err
		case <-t.C:
			return wire.Frame{}, errors.New("timeout waiting for frame")
		}
	}
}

func (c *Conn) Expect(typ wire.Type) wire.Frame {
	c.t.Helper()
	f, err := c.Next(5 * time.Second)
	if err != nil {
		c.t.Fatalf("waiting for %v: %v", typ, err)
	}
	if f.Type != typ {
		c.t.Fatalf("got %v (code %v %q), want %v", f.Type, f.Code, f.Message, typ)
	}
	return f
}

// NextOf returns the next frame of type typ, skipping frames of other
// types (receipts, deliveries a test does not look at); it fails the test
// after d without one.
func (c *Conn) NextOf(typ wire.Type, d time.Duration) wire.Frame {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		f, err := c.Next(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("waiting for %v: %v", typ, err)
		}
		if f.Type == typ {
			return f
		}
	}
}

// hello sends HELLO and expects WELCOME.
func (c *Conn) Hello(tok []byte, resume bool, last uint64) wire.Frame {
	c.t.Helper()
	c.Send(&wire.Frame{Type: wire.TypeHello, Token: tok, MinVersion: 1, MaxVersion: 1, Resume: resume, LastSeq: last})
	w := c.Expect(wire.TypeWelcome)
	if err := c.openClasses(); err != nil {
		c.t.Fatalf("open streams: %v", err)
	}
	return w
}

// closedWith waits for the relay to end the connection, returning the
// fatal ERROR it sent (if any).
func (c *Conn) ClosedWith(d time.Duration) (code wire.Code, closed bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		f, err := c.Next(time.Until(deadline))
		if err != nil {
			var ae *quic.ApplicationError
			if code == 0 && errors.As(err, &ae) && ae.Remote {
				code = wire.Code(ae.ErrorCode)
			}
			return code, !strings.Contains(err.Error(), "timeout waiting")
		}
		if f.Type == wire.TypeError && f.Fatal {
			code = f.Code
		}
	}
	return code, false
}

func (c *Conn) Close() {
	c.closeOnce.Do(func() {
		close(c.quit) // readers blocked on a full buffer give up
		if c.ws != nil {
			c.ws.CloseNow()
		}
		if c.qc != nil {
			c.qc.CloseWithError(0, "")
		}
	})
	c.wg.Wait()
}
