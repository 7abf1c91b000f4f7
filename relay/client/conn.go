package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
)

// defaultPing is the keepalive interval when neither Config nor WELCOME
// names one.
const defaultPing = 15 * time.Second

// conn is one admitted connection. It lives for one run of one reader and
// one writer goroutine, both owned by the supervisor.
type conn struct {
	t        transport
	url      string
	gen      uint64
	welcome  Welcome
	ping     time.Duration
	limit    int          // largest frame accepted from the relay
	lastRecv atomic.Int64 // unix nanos of the last frame read
}

func (cn *conn) touch() { cn.lastRecv.Store(time.Now().UnixNano()) }

func (cn *conn) idle(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, cn.lastRecv.Load()))
}

// goawayError ends a connection the relay asked the client to leave.
type goawayError struct {
	code     wire.Code
	redirect string // validated; "" = rotate through Config.URLs
}

func (e *goawayError) Error() string { return fmt.Sprintf("%v (%v)", ErrGoaway, e.code) }
func (e *goawayError) Unwrap() error { return ErrGoaway }

// connect dials url and runs the handshake, within ConnectTimeout.
func (c *Client) connect(url string) (*conn, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ConnectTimeout)
	defer cancel()
	tok, err := c.cfg.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: token: %w", err)
	}
	t, err := c.cfg.dial(ctx, &c.dialer, url)
	if err != nil {
		return nil, err
	}
	cn, err := c.handshake(ctx, t, url, tok)
	if err != nil {
		t.close()
		return nil, err
	}
	return cn, nil
}

// handshake sends HELLO, waits for WELCOME, checks it and makes the
// connection current.
func (c *Client) handshake(ctx context.Context, t transport, url string, tok []byte) (*conn, error) {
	c.mu.Lock()
	hello := wire.Frame{
		Type: wire.TypeHello, Token: tok,
		MinVersion: wire.VersionMin, MaxVersion: wire.VersionMax,
		Caps:    wire.CapResume | wire.CapReceipts,
		Session: c.cfg.Session, Resume: c.resume, LastSeq: c.lastSeq,
		Epoch: c.epoch, // the highest seen: a relay with an older one knows it was replaced
	}
	c.mu.Unlock()
	if err := t.write(ctx, wire.ClassControl, wire.Encode(&hello)); err != nil {
		return nil, fmt.Errorf("client: write HELLO: %w", err)
	}
	f, err := readWelcome(ctx, t)
	if err != nil {
		return nil, err
	}
	if f.Type == wire.TypeGoaway {
		// A draining relay turned the connection away before admitting
		// it: nothing was sent on it but HELLO, so leave at once.
		return nil, c.goaway(t.name(), url, &f)
	}
	cn := &conn{t: t, url: url, welcome: welcomeOf(&f, t.name(), url, &hello), limit: readLimit(int(f.MaxFrame))}
	w := &cn.welcome
	if w.Version < wire.VersionMin || w.Version > wire.VersionMax {
		return nil, fmt.Errorf("%w: WELCOME version %d", ErrProtocol, w.Version)
	}
	cn.ping = c.cfg.PingInterval
	if cn.ping <= 0 {
		cn.ping = w.Ping
	}
	if cn.ping <= 0 {
		cn.ping = defaultPing
	}
	c.mu.Lock()
	switch {
	case w.Epoch < c.epoch:
		err = fmt.Errorf("%w: %d < %d", ErrStaleEpoch, w.Epoch, c.epoch)
	case c.session != "" && w.Session != c.session, c.cfg.Session != "" && w.Session != c.cfg.Session:
		err = ErrSessionMismatch
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := t.established(ctx, w.MaxFrame); err != nil {
		return nil, err
	}
	cn.touch()
	c.mu.Lock()
	c.gen++
	cn.gen = c.gen
	c.cur, c.leaving = cn, false
	c.welcome = w
	c.resume = true
	c.epoch, c.session = w.Epoch, w.Session
	c.maxFrame = w.MaxFrame
	close(c.up)
	c.mu.Unlock()
	c.wake()
	return cn, nil
}

// readWelcome reads until WELCOME or GOAWAY, which it returns. Before
// WELCOME the relay sends nothing but control frames: a fatal ERROR
// (returned as *Error), GOAWAY when it starts draining before it admitted
// the connection, PING or PONG (skipped: PINGs are answered once
// admitted, and the relay pings only then anyway). Unknown frame types
// are skipped; anything else is ErrProtocol.
func readWelcome(ctx context.Context, t transport) (wire.Frame, error) {
	for {
		b, err := t.read(ctx)
		if err != nil {
			return wire.Frame{}, fmt.Errorf("client: waiting for WELCOME: %w", err)
		}
		f, err := wire.Decode(b, readLimit(0))
		switch {
		case errors.Is(err, wire.ErrUnknownType):
			continue
		case err != nil:
			return f, fmt.Errorf("%w: %w", ErrProtocol, err)
		case f.Type == wire.TypeWelcome, f.Type == wire.TypeGoaway:
			return f, nil
		case f.Type == wire.TypeError:
			return f, errorFromFrame(&f)
		case f.Type == wire.TypePing, f.Type == wire.TypePong:
			continue
		default:
			return f, fmt.Errorf("%w: %v before WELCOME", ErrProtocol, f.Type)
		}
	}
}

func welcomeOf(f *wire.Frame, transport, url string, hello *wire.Frame) Welcome {
	w := Welcome{
		Transport: transport, URL: url, Version: f.Version, Session: f.Session,
		Epoch: f.Epoch, HeadSeq: f.HeadSeq, Resumed: hello.Resume, ResumedFrom: hello.LastSeq,
		MaxFrame: int(f.MaxFrame), ConnID: f.ConnID, Role: f.Role, Subject: f.Sender,
		Ping: time.Duration(f.PingMillis) * time.Millisecond, ConfigVersion: f.ConfigVersion,
	}
	if w.MaxFrame <= 0 {
		w.MaxFrame = wire.DefaultMaxFrame
	}
	if len(f.Config) > 0 {
		if cfg, err := wire.DecodeConfig(f.Config); err == nil {
			w.Config = &cfg
		}
	}
	return w
}

// run serves an admitted connection with one reader and one writer until
// either ends, then closes the transport and waits for both.
func (c *Client) run(cn *conn) error {
	ctx, cancel := context.WithCancelCause(c.ctx)
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() { errc <- c.readLoop(ctx, cn) })
	wg.Go(func() { errc <- c.writeLoop(ctx, cn) })
	err := <-errc
	cancel(err)
	cn.t.close()
	wg.Wait()
	c.detach()
	return err
}

// detach forgets the current connection: what only made sense on it
// (control frames, queued ephemeral sends) is dropped.
func (c *Client) detach() {
	c.mu.Lock()
	c.cur, c.leaving = nil, false
	c.up = make(chan struct{})
	c.control = nil
	eph := c.dropEphemeral()
	c.mu.Unlock()
	for _, e := range eph {
		e.sent.finish(ErrNotConnected)
	}
}
