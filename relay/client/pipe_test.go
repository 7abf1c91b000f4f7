package client

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
)

// This file is an in-memory transport and a scripted relay side for unit
// tests of the session logic. Integration tests use the real relay.

const testWait = 5 * time.Second

type pipeFrame struct {
	class wire.Class
	b     []byte
}

// pipe is a transport whose relay side is a *peer.
type pipe struct {
	in     chan []byte    // relay → client, unbuffered: a send returns once read
	out    chan pipeFrame // client → relay
	closed chan struct{}
	once   sync.Once
}

var _ transport = (*pipe)(nil)

func (p *pipe) read(ctx context.Context) ([]byte, error) {
	select {
	case b := <-p.in:
		return b, nil
	case <-p.closed:
		return nil, io.EOF
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *pipe) write(ctx context.Context, class wire.Class, b []byte) error {
	select {
	case <-p.closed:
		return net.ErrClosed
	default:
	}
	select {
	case p.out <- pipeFrame{class, b}:
		return nil
	case <-p.closed:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pipe) established(context.Context, int) error { return nil }
func (p *pipe) close()                                 { p.once.Do(func() { close(p.closed) }) }
func (p *pipe) name() string                           { return "pipe" }

// peer is the relay end of one pipe.
type peer struct {
	t   *testing.T
	url string
	p   *pipe
}

// recv returns the next frame the client wrote.
func (r *peer) recv() (wire.Frame, wire.Class) {
	r.t.Helper()
	select {
	case pf := <-r.p.out:
		f, err := wire.Decode(pf.b, 0)
		if err != nil {
			r.t.Fatalf("client wrote undecodable frame: %v", err)
		}
		return f, pf.class
	case <-time.After(testWait):
		r.t.Fatalf("no frame from client within %v", testWait)
		return wire.Frame{}, 0
	}
}

// expect returns the next frame, which must be of type typ.
func (r *peer) expect(typ wire.Type) wire.Frame {
	r.t.Helper()
	f, _ := r.recv()
	if f.Type != typ {
		r.t.Fatalf("client wrote %v, want %v", f.Type, typ)
	}
	return f
}

// send hands f to the client and returns once the client has read it.
func (r *peer) send(f wire.Frame) {
	r.t.Helper()
	select {
	case r.p.in <- wire.Encode(&f):
	case <-r.p.closed:
		r.t.Fatalf("send %v: connection closed", f.Type)
	case <-time.After(testWait):
		r.t.Fatalf("client did not read %v within %v", f.Type, testWait)
	}
}

// admit reads HELLO and answers WELCOME (Type, Version and Session filled
// in when zero).
func (r *peer) admit(w wire.Frame) wire.Frame {
	r.t.Helper()
	hello := r.expect(wire.TypeHello)
	w.Type = wire.TypeWelcome
	if w.Version == 0 {
		w.Version = 1
	}
	if w.Session == "" {
		w.Session = "s1"
	}
	r.send(w)
	return hello
}

func (r *peer) kill() { r.p.close() }

// waitClosed waits until the client closed the pipe.
func (r *peer) waitClosed() {
	r.t.Helper()
	select {
	case <-r.p.closed:
	case <-time.After(testWait):
		r.t.Fatal("client did not close the connection")
	}
}

// fakeNet dials pipes and hands their relay ends to the test.
type fakeNet struct {
	t     *testing.T
	conns chan *peer
}

func newFakeNet(t *testing.T) *fakeNet { return &fakeNet{t: t, conns: make(chan *peer)} }

func (n *fakeNet) dial(ctx context.Context, _ *dialer, url string) (transport, error) {
	p := &pipe{in: make(chan []byte), out: make(chan pipeFrame, 256), closed: make(chan struct{})}
	select {
	case n.conns <- &peer{t: n.t, url: url, p: p}:
		return p, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// accept returns the relay end of the client's next connection attempt.
func (n *fakeNet) accept() *peer {
	n.t.Helper()
	select {
	case r := <-n.conns:
		return r
	case <-time.After(testWait):
		n.t.Fatal("client did not dial")
		return nil
	}
}

// newPipeClient starts a client on n. The client is closed at cleanup.
func newPipeClient(t *testing.T, n *fakeNet, edit func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		URLs:       []string{"wss://relay-a.test/v1/connect"},
		Token:      func(context.Context) ([]byte, error) { return []byte("tok"), nil },
		BackoffMin: time.Millisecond,
		BackoffMax: 5 * time.Millisecond,
		dial:       n.dial,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitEvent(t *testing.T, c *Client, typ EventType) Event {
	t.Helper()
	deadline := time.After(testWait)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %v", typ)
			}
			if ev.Type == typ {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %v event within %v", typ, testWait)
		}
	}
}

func recvDelivery(t *testing.T, c *Client) Delivery {
	t.Helper()
	select {
	case d, ok := <-c.Deliveries():
		if !ok {
			t.Fatal("deliveries closed")
		}
		return d
	case <-time.After(testWait):
		t.Fatalf("no delivery within %v", testWait)
		return Delivery{}
	}
}

func ctxWait(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code wire.Code) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("err = %v, want relay error %v", err, code)
	}
}
