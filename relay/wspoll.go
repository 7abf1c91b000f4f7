package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/stapes-relay/stapes/relay/internal/poll"
	"github.com/stapes-relay/stapes/relay/wire"
)

// The polled WebSocket adapter: no goroutine per idle connection. The
// socket is registered one-shot with an epoll poller; when it is readable
// a goroutine reads the frames that are there, hands them to the core and
// re-arms. Writers start on demand (conn.onWake) and exit when there is
// nothing left to write. Keepalive and the HELLO timeout are checked by
// one sweeper for all polled connections.

const (
	wsFrameTimeout = 10 * time.Second // a started frame must arrive within this
	wsWriteTimeout = 10 * time.Second // a write must drain within this, else the peer is too slow
)

var (
	wsReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	wsWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

// errStopRead ends reading without closing: a fatal ERROR is being
// flushed and the writer closes the connection.
var errStopRead = errors.New("relay: stop reading")

// ServeWS serves WebSocket connections from ln (TLS when tlsConf is set)
// with the polled adapter, until ln or the server is closed. Requests for
// any path but WSPath are refused. The caller owns ln.
func (s *Server) ServeWS(ln net.Listener, tlsConf *tls.Config) error {
	p, err := s.poller()
	if err != nil {
		return err
	}
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closed.Load() {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if !s.admitConn() {
			nc.Close()
			continue
		}
		if !s.spawn(func() { s.acceptWS(p, nc, tlsConf) }) {
			nc.Close()
			return ErrClosed
		}
	}
}

// poller starts the server's poller and keepalive sweeper once.
func (s *Server) poller() (*poll.Poller, error) {
	s.pollOnce.Do(func() {
		p, err := poll.New(s.spawn)
		if err != nil {
			s.pollErr = err
			return
		}
		if !s.spawn(p.Run) {
			p.Close(false)
			s.pollErr = ErrClosed
			return
		}
		s.poll = p
		s.spawn(s.sweep)
	})
	return s.poll, s.pollErr
}

// sweep runs keepalive and HELLO timeouts for polled connections, and
// closes the poller when the server closes.
func (s *Server) sweep() {
	t := time.NewTicker(s.tickEvery())
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			s.poll.Close(true)
			return
		case now := <-t.C:
			for _, c := range s.connSnapshot() {
				if c.onWake != nil {
					c.tick(now)
				}
			}
		}
	}
}

// wsConn is one polled WebSocket connection.
type wsConn struct {
	s    *Server
	c    *conn
	p    *poll.Poller
	nc   net.Conn // *tls.Conn or the TCP conn
	fd   int
	tls  bool
	frag []byte // fragmented message being assembled; reader only

	writing atomic.Bool // a writer goroutine runs
	dirty   atomic.Bool // something was queued since the writer last looked

	mu       sync.Mutex // guards the fields below
	closed   bool
	ctrl     [][]byte // WebSocket control frames (pong, close) to write first
	peerGone bool     // the peer sent Close; close after answering
}

func (s *Server) acceptWS(p *poll.Poller, nc net.Conn, tlsConf *tls.Config) {
	fd, err := sysFD(nc)
	if err != nil {
		nc.Close()
		return
	}
	nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	var conn net.Conn = nc
	if tlsConf != nil {
		tc := tls.Server(nc, tlsConf)
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			nc.Close()
			return
		}
		conn = tc
	}
	up := ws.Upgrader{
		// "stapes/1" is not an HTTP token ('/'), so the header is split here
		// rather than by the library's token scanner.
		ProtocolCustom: func(v []byte) (string, bool) {
			for _, p := range strings.Split(string(v), ",") {
				if strings.TrimSpace(p) == Subprotocol {
					return Subprotocol, true
				}
			}
			return "", true
		},
		OnRequest: func(uri []byte) error {
			if path.Clean(string(uriPath(uri))) != WSPath {
				return ws.RejectConnectionError(ws.RejectionStatus(404), ws.RejectionReason("stapes: not found; connect to "+WSPath))
			}
			return nil
		},
		OnHeader: func(key, value []byte) error {
			if string(key) == "Origin" && !s.originAllowed(string(value)) {
				return ws.RejectConnectionError(ws.RejectionStatus(403), ws.RejectionReason("stapes: origin not allowed"))
			}
			return nil
		},
	}
	hs, err := up.Upgrade(conn)
	if err != nil || hs.Protocol != Subprotocol {
		if err == nil {
			ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusPolicyViolation, "subprotocol "+Subprotocol+" required")))
		}
		conn.Close()
		return
	}
	nc.SetDeadline(time.Time{})
	c := s.newConn("ws", true)
	w := &wsConn{s: s, c: c, p: p, nc: conn, fd: fd, tls: tlsConf != nil}
	c.onWake = w.scheduleWrite
	c.kicks = [wire.NumClasses]chan struct{}{}
	if !s.track(c) {
		conn.Close()
		return
	}
	context.AfterFunc(c.ctx, func() { w.shutdown() })
	w.mu.Lock()
	err = p.Add(fd, w.onReadable)
	w.mu.Unlock()
	if err != nil {
		w.shutdown()
	}
}

func uriPath(uri []byte) []byte {
	for i, b := range uri {
		if b == '?' {
			return uri[:i]
		}
	}
	return uri
}

func sysFD(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("relay: %T has no file descriptor", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return 0, err
	}
	return fd, nil
}

// goOwned starts f as a goroutine the server waits for, unless the
// connection is closed.
func (w *wsConn) goOwned(f func()) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	return w.s.spawn(f)
}

// shutdown closes the connection once: unregister, close, detach.
func (w *wsConn) shutdown() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.p.Remove(w.fd)
	w.nc.Close()
	w.mu.Unlock()
	w.s.untrack(w.c)
}

func (w *wsConn) rearm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		if err := w.p.Rearm(w.fd); err != nil {
			w.closed = true
			w.p.Remove(w.fd)
			w.nc.Close()
			go w.s.untrack(w.c)
		}
	}
}

// onReadable reads every frame that is there, then re-arms the socket.
func (w *wsConn) onReadable() {
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return
	}
	br := wsReaders.Get().(*bufio.Reader)
	br.Reset(w.nc)
	defer func() {
		br.Reset(nil)
		wsReaders.Put(br)
	}()
	for {
		w.nc.SetReadDeadline(time.Now().Add(wsFrameTimeout))
		if err := w.readFrame(br); err != nil {
			if !errors.Is(err, errStopRead) {
				w.shutdown()
			}
			return
		}
		if br.Buffered() > 0 {
			continue
		}
		if w.tls {
			// TLS may hold decrypted bytes the socket no longer signals.
			w.nc.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := br.Peek(1); err == nil {
				continue
			} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				w.shutdown()
				return
			}
		}
		break
	}
	w.nc.SetReadDeadline(time.Time{})
	w.rearm()
}

// readFrame reads one WebSocket frame and acts on it.
func (w *wsConn) readFrame(br *bufio.Reader) error {
	h, err := ws.ReadHeader(br)
	if err != nil {
		return err
	}
	limit := int64(w.s.cfg.MaxFrame) + 1
	switch {
	case !h.Masked || h.Rsv != 0:
		return w.wsClose(ws.StatusProtocolError, "unmasked or reserved bits")
	case h.OpCode.IsControl() && (!h.Fin || h.Length > 125):
		return w.wsClose(ws.StatusProtocolError, "bad control frame")
	case !h.OpCode.IsControl() && h.Length+int64(len(w.frag)) > limit:
		// Too large to read: a typed ERROR, then close.
		w.c.fail(&protoError{code: wire.CodeTooLarge, msg: fmt.Sprintf("message over %d bytes", w.s.cfg.MaxFrame), fatal: true})
		return errStopRead
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(br, payload); err != nil {
		return err
	}
	ws.Cipher(payload, h.Mask, 0)
	switch h.OpCode {
	case ws.OpPing:
		w.c.lastRead.Store(time.Now().UnixNano())
		w.queueCtrl(ws.NewPongFrame(payload), false)
		return nil
	case ws.OpPong:
		w.c.lastRead.Store(time.Now().UnixNano())
		return nil
	case ws.OpClose:
		w.queueCtrl(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")), true)
		return errStopRead
	case ws.OpText:
		w.c.fail(fatalf(wire.CodeProtocol, "text messages are not part of the protocol"))
		return errStopRead
	case ws.OpBinary:
		if len(w.frag) > 0 {
			return w.wsClose(ws.StatusProtocolError, "new message inside a fragmented one")
		}
		if !h.Fin {
			w.frag = payload
			return nil
		}
	case ws.OpContinuation:
		if w.frag == nil {
			return w.wsClose(ws.StatusProtocolError, "continuation without a message")
		}
		w.frag = append(w.frag, payload...)
		if !h.Fin {
			return nil
		}
		payload, w.frag = w.frag, nil
	default:
		return w.wsClose(ws.StatusProtocolError, "unknown opcode")
	}
	if err := w.c.handleFrame(w.c.ctx, payload); err != nil {
		return err
	}
	if w.c.closing.Load() {
		return errStopRead
	}
	return nil
}

// wsClose sends a WebSocket close frame with status and stops reading.
func (w *wsConn) wsClose(status ws.StatusCode, reason string) error {
	w.queueCtrl(ws.NewCloseFrame(ws.NewCloseFrameBody(status, reason)), true)
	return errStopRead
}

func (w *wsConn) queueCtrl(f ws.Frame, last bool) {
	b, err := ws.CompileFrame(f)
	if err != nil {
		return
	}
	w.mu.Lock()
	w.ctrl = append(w.ctrl, b)
	w.peerGone = w.peerGone || last
	w.mu.Unlock()
	w.scheduleWrite()
}

// scheduleWrite starts a writer unless one runs; the running one sees dirty.
func (w *wsConn) scheduleWrite() {
	w.dirty.Store(true)
	if w.writing.CompareAndSwap(false, true) {
		if !w.goOwned(w.drain) {
			w.writing.Store(false)
		}
	}
}

// drain writes until nothing is left, then exits.
func (w *wsConn) drain() {
	bw := wsWriters.Get().(*bufio.Writer)
	bw.Reset(w.nc)
	defer func() {
		bw.Reset(nil)
		wsWriters.Put(bw)
	}()
	write := func(_ context.Context, b []byte) error {
		if err := ws.WriteHeader(bw, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(b))}); err != nil {
			return err
		}
		_, err := bw.Write(b)
		return err
	}
	for {
		w.dirty.Store(false)
		w.nc.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
		w.mu.Lock()
		ctrl, gone := w.ctrl, w.peerGone
		w.ctrl = nil
		w.mu.Unlock()
		var err error
		for _, b := range ctrl {
			if _, err = bw.Write(b); err != nil {
				break
			}
		}
		closing := false
		if err == nil && !gone {
			closing, err = w.c.flush(w.c.ctx, allClasses, write)
		}
		if err == nil && closing {
			code := lastErrorCode(w.c)
			err = ws.WriteFrame(bw, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(4000+int(code)), code.String())))
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil || closing || gone {
			w.writing.Store(false)
			w.shutdown()
			return
		}
		if w.dirty.Load() {
			continue
		}
		w.writing.Store(false)
		if w.dirty.Load() && w.writing.CompareAndSwap(false, true) {
			continue
		}
		return
	}
}

// originAllowed: native apps send no Origin; browsers must match a
// configured pattern (same host as the relay is not known here, so an
// empty list allows every origin only when no Origin header is sent).
func (s *Server) originAllowed(origin string) bool {
	for _, p := range s.cfg.OriginPatterns {
		if ok, _ := path.Match(p, hostOf(origin)); ok {
			return true
		}
	}
	return false
}

func hostOf(origin string) string {
	for _, pfx := range []string{"https://", "http://"} {
		if len(origin) > len(pfx) && origin[:len(pfx)] == pfx {
			return origin[len(pfx):]
		}
	}
	return origin
}
