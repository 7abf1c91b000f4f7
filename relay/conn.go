package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

// errConnDone ends a connection's loops after a fatal ERROR was flushed.
var errConnDone = errors.New("relay: connection done")

// MaxProbes is how many PINGs a connection may send before HELLO (RTT
// probes, docs/protocol.md §9.4); one more is a protocol error.
const MaxProbes = 32

// frameWriter writes one encoded frame to the peer.
type frameWriter func(ctx context.Context, frame []byte) error

// conn is one client connection, transport-neutral. Readers call
// handleFrame; writers run writeLoop over a set of classes.
type conn struct {
	srv       *Server
	id        string
	transport string
	ctx       context.Context
	cancel    context.CancelFunc
	started   time.Time
	lastRead  atomic.Int64  // unix nanos of the last frame read
	nonce     atomic.Uint64 // last PING nonce
	probes    atomic.Int32  // PINGs answered before HELLO

	out   [wire.NumClasses]*lane
	kicks [wire.NumClasses]chan struct{} // wake the writer of each class (writeLoop)
	// onWake, when set, replaces kicks: the transport starts a writer on
	// demand (the polled WebSocket adapter).
	onWake  func()
	closing atomic.Bool // a fatal ERROR is queued; writers exit after flushing control

	fatalMu   sync.Mutex // guards fatalCode
	fatalCode wire.Code  // code of the fatal ERROR (0: none yet), for the transport's close code

	admitMu  sync.Mutex // serialises HELLO handling
	admitted atomic.Bool
	welcomed atomic.Bool // WELCOME was written; the log may follow
	// Set during admission, read-only afterwards (published by admitted).
	claims token.Claims
	role   wire.Role
	sess   *session
	dev    *device // the device the token names, if any
	resume uint64  // resume position from HELLO

	sent uint64 // durable cursor: highest seq handed to the writer; durable writer only

	// fwd, when set, is the link to the session's home that serves this
	// connection: frames from the client go there unread (forward.go).
	fwd atomic.Pointer[forward]
}

// newConn creates a connection. shared means one writer serves every class
// (WebSocket); otherwise each class has its own writer (QUIC streams).
func (s *Server) newConn(transport string, shared bool) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{srv: s, id: s.nextConnID(), transport: transport, ctx: ctx, cancel: cancel, started: time.Now()}
	c.lastRead.Store(time.Now().UnixNano())
	var one chan struct{}
	if shared {
		one = make(chan struct{}, 1)
	}
	for i := range c.out {
		k := one
		if k == nil {
			k = make(chan struct{}, 1)
		}
		c.kicks[i] = k
		depth := s.cfg.EphemeralQueue
		if wire.Class(i) == wire.ClassControl || wire.Class(i) == wire.ClassDurable {
			depth = s.cfg.ReplyQueue
		}
		c.out[i] = newLane(depth)
	}
	return c
}

func (c *conn) kickDurable() { c.wake(wire.ClassDurable) }

// wake tells the writer of class cl that there is something to write.
func (c *conn) wake(cl wire.Class) {
	if c.onWake != nil {
		c.onWake()
		return
	}
	wake(c.kicks[cl])
}

// control queues a control frame; a full control queue means the peer does
// not read, and it is disconnected.
func (c *conn) control(b []byte) {
	c.push(wire.ClassControl, b)
}

// reply queues a reply on the durable class (PERSISTED, per-SEND ERROR).
func (c *conn) reply(b []byte) {
	c.push(wire.ClassDurable, b)
}

func (c *conn) push(class wire.Class, b []byte) {
	if !c.out[class].push(b) {
		c.srv.met.drop(dropSlowConsumer)
		c.srv.log.Warn("closing slow consumer", "conn", c.id, "class", class.String())
		c.cancel()
		return
	}
	c.wake(class)
}

// ephemeral queues an ephemeral frame, dropping it when the queue is full.
func (c *conn) ephemeral(class wire.Class, b []byte) {
	if !c.out[class].push(b) {
		c.srv.met.drop(dropQueueFull)
		return
	}
	c.wake(class)
}

// fail queues a fatal ERROR; writers flush the control class and stop.
func (c *conn) fail(e *protoError) {
	var frames [][]byte
	if e.redirect != "" {
		frames = append(frames, wire.Encode(&wire.Frame{Type: wire.TypeGoaway, Code: e.code, Redirect: e.redirect}))
	}
	c.failWith(e.code, append(frames, e.frame())...)
}

// failWith queues the given control frames (the last a fatal ERROR with
// code) and closes the connection once they are flushed.
func (c *conn) failWith(code wire.Code, frames ...[]byte) {
	c.fatalMu.Lock()
	defer c.fatalMu.Unlock()
	if c.fatalCode != 0 {
		return
	}
	c.fatalCode = code
	c.srv.met.errorsSent.WithLabelValues(code.String()).Inc()
	// The ERROR is queued before closing is set, so a writer that sees
	// closing also finds the ERROR in its queue.
	ok := true
	for _, f := range frames {
		ok = ok && c.out[wire.ClassControl].push(f)
	}
	c.closing.Store(true)
	if !ok {
		c.cancel()
		return
	}
	for i := range c.kicks {
		c.wake(wire.Class(i))
	}
}

// writeLoop serves the given classes until ctx ends or the connection
// closes. The loop that serves the control class also keeps the connection
// alive and enforces the HELLO timeout.
func (c *conn) writeLoop(ctx context.Context, classes []wire.Class, write frameWriter) error {
	kick := c.kicks[classes[0]]
	hasControl := false
	for _, cl := range classes {
		hasControl = hasControl || cl == wire.ClassControl
	}
	var tick <-chan time.Time
	if hasControl {
		t := time.NewTicker(c.srv.tickEvery())
		defer t.Stop()
		tick = t.C
	}
	for {
		closing, err := c.flush(ctx, classes, write)
		if err != nil {
			return err
		}
		if closing {
			if hasControl {
				return errConnDone
			}
			<-ctx.Done()
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-kick:
		case now := <-tick:
			c.tick(now)
		}
	}
}

// tick runs the keepalive and HELLO-timeout checks.
func (c *conn) tick(now time.Time) {
	if e := c.keepalive(now); e != nil {
		c.fail(e)
	}
}

// flush writes what is queued for the given classes, and the log after
// the durable cursor. It reports whether a fatal ERROR was among what it
// wrote (the connection must then close).
func (c *conn) flush(ctx context.Context, classes []wire.Class, write frameWriter) (closing bool, err error) {
	closing = c.closing.Load()
	for _, cl := range classes {
		if cl != wire.ClassControl && !c.welcomed.Load() && !closing {
			continue // nothing but control frames before WELCOME
		}
		for _, b := range c.out[cl].take() {
			if err := c.write(ctx, cl, b, write); err != nil {
				return closing, err
			}
			if wire.Type(b[0]) == wire.TypeWelcome {
				// Log entries go out only after WELCOME.
				c.welcomed.Store(true)
				c.wake(wire.ClassDurable)
			}
		}
		if cl == wire.ClassDurable && c.welcomed.Load() && !closing && c.sess != nil {
			if err := c.writeLog(ctx, write); err != nil {
				return closing, err
			}
		}
	}
	return closing, nil
}

func (c *conn) write(ctx context.Context, cl wire.Class, b []byte, write frameWriter) error {
	if err := write(ctx, b); err != nil {
		return err
	}
	c.srv.met.frameOut(c.transport, wire.Type(b[0]), cl, len(b))
	return nil
}

// writeLog sends committed log entries after c.sent that this client may
// see, in seq order, a bounded chunk at a time so replies are not starved.
func (c *conn) writeLog(ctx context.Context, write frameWriter) error {
	const chunk = 256
	head := c.sess.committedHead()
	for i := 0; c.sent < head && i < 4; i++ {
		es, err := c.sess.read(ctx, c.sent, head, chunk)
		if err != nil {
			c.fail(fatalf(wire.CodeUnavailable, "reading session log failed; reconnect and resume"))
			return nil
		}
		if len(es) == 0 {
			return nil
		}
		for _, e := range es {
			if e.typ == wire.TypeReceipt || e.sender != c.claims.Subject {
				if err := c.write(ctx, wire.ClassDurable, e.frame, write); err != nil {
					return err
				}
			}
			c.sent = e.seq
		}
	}
	if c.sent < head {
		c.wake(wire.ClassDurable)
	}
	return nil
}

// keepalive pings an idle peer and closes one that stopped talking or
// never said HELLO.
func (c *conn) keepalive(now time.Time) *protoError {
	cfg := &c.srv.cfg
	if !c.admitted.Load() {
		if now.Sub(c.started) >= cfg.HelloTimeout {
			return fatalf(wire.CodeTimeout, "no HELLO within %v", cfg.HelloTimeout)
		}
		return nil
	}
	idle := now.Sub(time.Unix(0, c.lastRead.Load()))
	if idle >= 3*cfg.PingInterval {
		return fatalf(wire.CodeTimeout, "peer silent for %v", idle.Round(time.Millisecond))
	}
	if idle >= cfg.PingInterval {
		c.control(wire.Encode(&wire.Frame{Type: wire.TypePing, Nonce: c.nonce.Add(1)}))
	}
	return nil
}

// handleFrame processes one frame from the peer. A non-nil error ends the
// connection.
func (c *conn) handleFrame(ctx context.Context, b []byte) error {
	c.lastRead.Store(time.Now().UnixNano())
	if c.closing.Load() {
		return nil
	}
	if fw := c.fwd.Load(); fw != nil {
		return fw.send(b) // served by the session's home through a peer link
	}
	f, err := wire.Decode(b, c.srv.cfg.MaxFrame)
	if err != nil {
		if errors.Is(err, wire.ErrUnknownType) {
			c.srv.met.frameIn(c.transport, f.Type, len(b))
			return nil // forward compatibility: skipped
		}
		code := wire.CodeMalformed
		if errors.Is(err, wire.ErrTooLarge) {
			code = wire.CodeTooLarge
		}
		c.fail(&protoError{code: code, msg: err.Error(), fatal: true})
		return nil
	}
	c.srv.met.frameIn(c.transport, f.Type, len(b))
	if !c.admitted.Load() {
		if f.Type == wire.TypePing && c.probes.Add(1) <= MaxProbes {
			// A probe: clients measure the RTT to candidate relays before
			// they hold a token (§9.4). The HELLO timeout still applies. A
			// draining relay is no candidate: it says GOAWAY instead.
			pong := &wire.Frame{Type: wire.TypePong, Nonce: f.Nonce}
			if s := c.srv; s.draining.Load() {
				pong = &wire.Frame{Type: wire.TypeGoaway, Code: wire.CodeDraining, Redirect: s.cfg.DrainRedirect,
					AfterMillis: uint64(s.cfg.DrainGrace.Milliseconds())}
			}
			c.control(wire.Encode(pong))
			return nil
		}
		if f.Type != wire.TypeHello {
			c.fail(fatalf(wire.CodeProtocol, "%v before HELLO", f.Type))
			return nil
		}
		if e := c.hello(ctx, &f, b); e != nil {
			c.srv.met.refusals.WithLabelValues(e.code.String()).Inc()
			c.fail(e)
		}
		return nil
	}
	var e *protoError
	switch f.Type {
	case wire.TypeSend:
		e = c.send(ctx, &f)
	case wire.TypeAck:
		e = c.ack(ctx, &f)
	case wire.TypePing:
		c.control(wire.Encode(&wire.Frame{Type: wire.TypePong, Nonce: f.Nonce}))
	case wire.TypePong:
	case wire.TypeError:
		if f.Fatal {
			return fmt.Errorf("relay: peer closed with %v", f.Code)
		}
	default:
		e = fatalf(wire.CodeProtocol, "%v is not sent by clients", f.Type)
	}
	if e != nil {
		if e.fatal {
			c.fail(e)
		} else {
			c.srv.met.rejections.WithLabelValues(e.code.String()).Inc()
			c.reply(e.frame())
		}
	}
	return nil
}
