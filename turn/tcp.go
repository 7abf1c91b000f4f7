package turn

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// tcpListener wraps a TCP listener for pion: it caps the number of open
// connections, wraps them in TLS when configured, and in a tcpConn that
// frames the stream for inspection and enforces timeouts. pion's accept
// loop ends on any Accept error, so transient ones are retried here.
type tcpListener struct {
	s        *Server
	ln       net.Listener
	tls      *tls.Config
	doneOnce sync.Once
}

var _ net.Listener = (*tcpListener)(nil)

func (l *tcpListener) Accept() (net.Conn, error) {
	s := l.s
	backoff := 5 * time.Millisecond
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.doneOnce.Do(s.loops.Done)
				return nil, err
			}
			select { // EMFILE and friends: wait a little, never spin
			case <-s.stop:
				l.doneOnce.Do(s.loops.Done)
				return nil, net.ErrClosed
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if s.tcpConns.Load() >= int64(s.cfg.MaxTCPConns) {
			s.m.refusals.WithLabelValues(refuseMaxConns).Inc()
			c.Close()
			continue
		}
		raddr, ok := c.RemoteAddr().(*net.TCPAddr)
		ap, ok2 := netAddrPort(raddr)
		if !ok || !ok2 {
			c.Close()
			continue
		}
		inner := c
		if l.tls != nil {
			inner = tls.Server(c, l.tls)
		}
		tc := &tcpConn{s: s, Conn: inner, key: clientKey{tcp: true, ap: ap}, raddr: net.TCPAddrFromAddrPort(ap)}
		tc.fr.r = tc.readRaw
		tc.fr.inspect = func(b []byte) bool { return s.inspect(b, tc.key) }
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[tc] = struct{}{}
		s.loops.Add(1)
		s.mu.Unlock()
		s.tcpConns.Add(1)
		return tc, nil
	}
}

func (l *tcpListener) Close() error   { return l.ln.Close() }
func (l *tcpListener) Addr() net.Addr { return l.ln.Addr() }

// tcpConn is a client's TCP or TLS connection as pion sees it. Reads go
// through a framer that hands pion at most one TURN frame per Read, so
// inspect runs for a request just before pion handles it. The first frame
// must arrive within HandshakeTimeout (TLS handshake included), later ones
// within TCPIdleTimeout.
type tcpConn struct {
	net.Conn
	s     *Server
	key   clientKey
	raddr *net.TCPAddr
	fr    framer

	started   bool  // reader only: the first frame has arrived
	idle      bool  // reader only: the read deadline is the idle one (not the handshake's)
	deadline  int64 // reader only: monotonic ns the read deadline was last set
	closeOnce sync.Once
}

func (c *tcpConn) Read(p []byte) (int, error) {
	n, err := c.fr.Read(p)
	if err != nil && errors.Is(err, ErrBadFrame) {
		c.s.m.refusals.WithLabelValues(refuseBadFrame).Inc()
	}
	if n > 0 {
		c.started = true
	}
	return n, err
}

// readRaw reads the underlying connection with the current timeout; the
// deadline is moved at most once a second.
func (c *tcpConn) readRaw(p []byte) (int, error) {
	now := monoNow()
	if !c.started {
		if c.deadline == 0 {
			c.deadline = now
			_ = c.Conn.SetReadDeadline(time.Now().Add(c.s.cfg.HandshakeTimeout))
		}
	} else if !c.idle || now-c.deadline > int64(time.Second) {
		// The first read after the first frame always moves the deadline:
		// the handshake's could otherwise still be in force, and close a
		// client that waits longer than HandshakeTimeout after connecting
		// before it sends again (seen with uclient over TCP).
		c.idle = true
		c.deadline = now
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.s.cfg.TCPIdleTimeout))
	}
	return c.Conn.Read(p)
}

// RemoteAddr is the client's address as a *net.TCPAddr (pion keys the
// 5-tuple on it), also under TLS.
func (c *tcpConn) RemoteAddr() net.Addr { return c.raddr }

func (c *tcpConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		s := c.s
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.tcpConns.Add(-1)
		s.loops.Done()
	})
	return err
}
