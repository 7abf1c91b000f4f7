package turn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	pturn "github.com/pion/turn/v5"
)

// relayConn is an allocation's relayed UDP socket as pion sees it. pion's
// per-allocation goroutine reads it; ReadFrom relays packets from peers
// with a bound channel itself (peer→client fast path) and returns the rest
// to pion, which sends them as Data indications. Every packet is counted
// and charged to the allocation's bandwidth bucket here, whichever path
// carries it.
type relayConn struct {
	s    *Server
	a    *allocation
	conn *net.UDPConn
	out  *udpOut // conn, for the client→peer fast path's sends
	buf  []byte  // 4 bytes of ChannelData header room + the largest datagram; reader only
	snd  *sender // reader only: the peer→client fast path's sends

	closeOnce sync.Once
	doneOnce  sync.Once
}

var _ net.PacketConn = (*relayConn)(nil)

func (r *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	s, a := r.s, r.a
	for {
		n, src, err := r.conn.ReadFromUDPAddrPort(r.buf[4:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				r.doneOnce.Do(s.loops.Done)
				return 0, nil, err
			}
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		if s.isSelf(src.Addr()) && s.liveRelay(src) == nil {
			s.m.dropSelf.Inc() // only relayed sockets of ours may send from our address
			continue
		}
		if !a.attached.Load() || !a.permitted(src.Addr()) {
			s.m.dropNoPerm.Inc()
			continue
		}
		if !a.fromPeer.take(float64(n)) {
			s.m.dropBW.Inc()
			continue
		}
		a.countFrom(n, time.Now().UnixNano())
		if a.sock != nil {
			if num, ok := a.channelFor(src); ok {
				binary.BigEndian.PutUint16(r.buf[0:2], num)
				binary.BigEndian.PutUint16(r.buf[2:4], uint16(n))
				_ = r.snd.writeTo(a.sock.out, r.buf[:4+n], a.client.ap)
				continue
			}
		}
		n = copy(p, r.buf[4:4+n])
		return n, net.UDPAddrFromAddrPort(src), nil
	}
}

// WriteTo is pion's client→peer slow path: Send indications, and
// ChannelData from TCP/TLS clients.
func (r *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	peer, ok := netAddrPort(addr)
	if !ok {
		return 0, net.InvalidAddrError("not a UDP address")
	}
	s, a := r.s, r.a
	if s.isSelf(peer.Addr()) {
		if t := s.liveRelay(peer); t == nil || t == a || (s.counterpartOnly && t.sess != a.sess) {
			s.m.dropSelf.Inc()
			return len(p), nil
		}
	}
	if !a.toPeer.take(float64(len(p))) {
		s.m.dropBW.Inc()
		return len(p), nil
	}
	a.countTo(len(p), time.Now().UnixNano())
	return r.conn.WriteToUDPAddrPort(p, peer)
}

// Close closes the socket (pion closes it when the allocation ends; so does
// EndSession) and releases the allocation's quota.
func (r *relayConn) Close() error {
	var err error
	r.closeOnce.Do(func() {
		err = r.conn.Close()
		r.s.release(r.a)
	})
	return err
}

func (r *relayConn) LocalAddr() net.Addr                { return r.conn.LocalAddr() }
func (r *relayConn) SetDeadline(t time.Time) error      { return r.conn.SetDeadline(t) }
func (r *relayConn) SetReadDeadline(t time.Time) error  { return r.conn.SetReadDeadline(t) }
func (r *relayConn) SetWriteDeadline(t time.Time) error { return r.conn.SetWriteDeadline(t) }

// generator is pion's RelayAddressGenerator: it admits allocations against
// the quotas (the strict check; the QuotaHandler answers 486 earlier for
// the common case), opens relayed sockets on RelayIP and advertises them
// on PublicIP.
type generator struct{ s *Server }

var _ pturn.RelayAddressGenerator = generator{}

func (g generator) Validate() error { return nil }

func (g generator) AllocatePacketConn(c pturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	s := g.s
	if c.UserID == "" {
		// pion's EVEN-PORT probe: a bare socket it closes at once, to learn
		// a free even port it then asks for by number.
		conn, err := s.listenRelay(c.Network, 0)
		if err != nil {
			return nil, nil, err
		}
		return conn, conn.LocalAddr(), nil
	}
	_, session, err := parseUsername(c.UserID)
	if err != nil {
		return nil, nil, err
	}
	a, reason := s.reserve(session, c.UserID)
	if reason != "" {
		s.m.refusals.WithLabelValues(reason).Inc()
		return nil, nil, &QuotaError{Reason: reason}
	}
	conn, err := s.listenRelay(c.Network, c.RequestedPort)
	if err != nil {
		s.m.refusals.WithLabelValues(refuseRelayPort).Inc()
		s.release(a)
		return nil, nil, err
	}
	r := &relayConn{s: s, a: a, conn: conn, out: newUDPOut(conn), buf: make([]byte, 4+65536), snd: newSender()}
	a.relay = r
	port := conn.LocalAddr().(*net.UDPAddr).Port
	s.loops.Add(1) // pion's reader of this socket; Done when it sees the close
	s.publish(a, netip.AddrPortFrom(s.cfg.PublicIP, uint16(port)))
	return r, &net.UDPAddr{IP: s.cfg.PublicIP.AsSlice(), Port: port}, nil
}

// listenRelay opens a relayed UDP socket on port, or (0) in the configured
// port range if any.
func (s *Server) listenRelay(network string, port int) (*net.UDPConn, error) {
	if network != "udp4" && network != "udp6" {
		return nil, fmt.Errorf("turn: relay network %q", network)
	}
	if s.cfg.RelayIP.Is4() != (network == "udp4") && !s.cfg.RelayIP.IsUnspecified() {
		return nil, fmt.Errorf("turn: relay address family does not match %s", network)
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return sockopts(c, false, s.cfg.RelayBuffer)
	}}
	host := s.cfg.RelayIP.String()
	try := func(port int) (*net.UDPConn, error) {
		pc, err := lc.ListenPacket(context.Background(), network, net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, err
		}
		return pc.(*net.UDPConn), nil
	}
	if s.cfg.RelayPortMin == 0 || port != 0 {
		return try(port)
	}
	span := int(s.cfg.RelayPortMax-s.cfg.RelayPortMin) + 1
	start := int(s.nextPort.Add(1))
	var err error
	for i := range min(span, 64) {
		var c *net.UDPConn
		if c, err = try(int(s.cfg.RelayPortMin) + (start+i)%span); err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("turn: no free relay port in %d-%d: %w", s.cfg.RelayPortMin, s.cfg.RelayPortMax, err)
}

// AllocateListener refuses TCP allocations (RFC 6062): WebRTC does not use
// them, and each would hold a listening socket. TURN over TCP/TLS with UDP
// relaying, what browsers use, is supported.
func (g generator) AllocateListener(pturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	g.s.m.refusals.WithLabelValues(refuseRelayPort).Inc()
	return nil, nil, fmt.Errorf("%w: TCP allocations are not supported", ErrQuota)
}

// AllocateConn would dial a peer for an RFC 6062 Connect. Unreachable while
// AllocateListener refuses TCP allocations; it still applies the full peer
// policy so enabling them later cannot bypass it.
func (g generator) AllocateConn(c pturn.AllocateConnConfig) (net.Conn, error) {
	peer, ok := netAddrPort(c.RemoteAddr)
	if !ok {
		return nil, net.InvalidAddrError("peer")
	}
	if r := g.s.peerVerdict(nil, peer.Addr(), []netip.AddrPort{peer}); r != "" {
		g.s.m.peerRefusals.WithLabelValues(string(r)).Inc()
		return nil, &PeerError{Addr: peer.Addr(), Reason: r}
	}
	return nil, fmt.Errorf("%w: TCP allocations are not supported", ErrQuota)
}

// QuotaError names the quota an allocation ran into.
type QuotaError struct{ Reason string }

func (e *QuotaError) Error() string { return fmt.Sprintf("%v: %s", ErrQuota, e.Reason) }

// Unwrap makes errors.Is(err, ErrQuota) true.
func (e *QuotaError) Unwrap() error { return ErrQuota }
