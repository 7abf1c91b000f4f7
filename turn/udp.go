package turn

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// udpSock wraps one UDP listener socket for pion. Its ReadFrom, called by
// pion's single reader goroutine for the socket, relays ChannelData itself
// (the fast path: no allocation, no copy, no pion) and hands pion only STUN
// messages, after inspecting them (rate limit, key selection, peer
// addresses). SO_REUSEPORT pins each client to one socket, so a client's
// allocation lives in this socket's table and its own reader is the only
// one that looks it up per packet.
type udpSock struct {
	s     *Server
	conn  *net.UDPConn
	laddr *net.UDPAddr // this socket's own value: pion's events name the socket by it

	mu      sync.RWMutex // guards clients
	clients map[netip.AddrPort]*allocation

	addrs map[netip.AddrPort]*net.UDPAddr // reader goroutine only: pion wants net.Addr values
	batch *batchReader                    // reader goroutine only: recvmmsg (nil: one datagram per read)
	out   *udpOut                         // this socket, for the fast path's sends to clients
	snd   *sender                         // reader goroutine only: the fast path's sends, one batch's per system call

	closeOnce sync.Once
	doneOnce  sync.Once
}

var _ net.PacketConn = (*udpSock)(nil)

// maxAddrCache bounds the net.Addr cache; it is cleared when full.
const maxAddrCache = 1 << 16

func newUDPSock(s *Server, c *net.UDPConn) *udpSock {
	la := *c.LocalAddr().(*net.UDPAddr)
	u := &udpSock{s: s, conn: c, laddr: &la, clients: map[netip.AddrPort]*allocation{}, addrs: map[netip.AddrPort]*net.UDPAddr{},
		out: newUDPOut(c), snd: newBatchSender()}
	u.batch = newBatchReader(c, u.relayed, u.snd.flush)
	return u
}

func (u *udpSock) attach(a *allocation) {
	u.mu.Lock()
	u.clients[a.client.ap] = a
	u.mu.Unlock()
}

func (u *udpSock) detach(a *allocation) {
	u.mu.Lock()
	if u.clients[a.client.ap] == a {
		delete(u.clients, a.client.ap)
	}
	u.mu.Unlock()
}

func (u *udpSock) lookup(ap netip.AddrPort) *allocation {
	u.mu.RLock()
	a := u.clients[ap]
	u.mu.RUnlock()
	return a
}

// ReadFrom returns the next STUN message for pion. It returns an error only
// once the socket is closed (pion's loop ends on any error).
func (u *udpSock) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		var (
			b   []byte
			ap  netip.AddrPort
			err error
		)
		if u.batch != nil {
			b, ap, err = u.batch.serve() // relays ChannelData (u.relayed), returns the rest; the datagram stays in the batch's buffer
		} else {
			var n int
			u.snd.flush() // before the read reuses the buffer it sends from
			n, ap, err = u.conn.ReadFromUDPAddrPort(p)
			b = p[:n]
			if err == nil && u.relayed(b, ap) {
				continue
			}
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				u.doneOnce.Do(func() {
					u.snd.close()
					u.s.loops.Done()
				})
				return 0, nil, err
			}
			continue // transient (ICMP-induced) errors must not end the loop
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if len(b) >= len(p) || len(b) > MaxPacket {
			continue // truncated
		}
		if !u.s.inspect(b, clientKey{ap: ap}) {
			continue
		}
		u.snd.flush() // before pion takes its time
		return copy(p, b), u.addrOf(ap), nil
	}
}

// relayed relays b if it is ChannelData (and reports true), the fast
// path; the reader's batch calls it for every datagram.
func (u *udpSock) relayed(b []byte, from netip.AddrPort) bool {
	if len(b) < 4 || b[0]&0xC0 != 0x40 {
		return false
	}
	u.channelData(b, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	return true
}

// addrOf returns a cached *net.UDPAddr for ap.
func (u *udpSock) addrOf(ap netip.AddrPort) *net.UDPAddr {
	if a, ok := u.addrs[ap]; ok {
		return a
	}
	if len(u.addrs) >= maxAddrCache {
		clear(u.addrs)
	}
	a := net.UDPAddrFromAddrPort(ap)
	u.addrs[ap] = a
	return a
}

// channelData relays one ChannelData message from a client to its peer.
func (u *udpSock) channelData(b []byte, src netip.AddrPort) {
	s := u.s
	num := binary.BigEndian.Uint16(b[0:2])
	ln := int(binary.BigEndian.Uint16(b[2:4]))
	if ln > len(b)-4 {
		s.m.dropBad.Inc()
		return
	}
	a := u.lookup(src)
	if a == nil {
		s.m.dropNoAlloc.Inc()
		return
	}
	peer, ok := a.peerFor(num)
	if !ok {
		s.m.dropNoChan.Inc()
		return
	}
	s.toPeer(a, b[:4+ln], peer, u.snd)
}

// toPeer sends a client's payload (frame[4:]; frame[:4] is free for a
// ChannelData header) from allocation a to peer: to another allocation of
// this Server in-process when it can, else out of a's relayed socket.
// snd belongs to the calling goroutine, which flushes it before frame's
// memory is reused.
func (s *Server) toPeer(a *allocation, frame []byte, peer netip.AddrPort, snd *sender) {
	data := frame[4:]
	if s.isSelf(peer.Addr()) {
		t := s.liveRelay(peer)
		if t == nil || t == a || (s.counterpartOnly && t.sess != a.sess) {
			s.m.dropSelf.Inc()
			return
		}
		if s.deliver(a, t, frame, snd) {
			return
		}
	}
	if !a.toPeer.take(float64(len(data))) {
		s.m.dropBW.Inc()
		return
	}
	a.countTo(len(data), time.Now().UnixNano())
	snd.send(a.relay.out, data, peer)
}

// deliver hands a packet from allocation a straight to allocation t's
// client, as if t's relayed socket had received it from a's relayed
// address: one send instead of three, and no hairpin through a 1:1 NAT.
// It reports false when t needs pion (no channel to a: a Data indication,
// or a TCP client), and the caller sends through the kernel.
func (s *Server) deliver(a, t *allocation, frame []byte, snd *sender) bool {
	if !t.attached.Load() || t.sock == nil {
		return false
	}
	num, ok := t.channelFor(a.relayAddr)
	if !ok {
		return false
	}
	n := len(frame) - 4
	if !a.toPeer.take(float64(n)) || !t.fromPeer.take(float64(n)) {
		s.m.dropBW.Inc()
		return true
	}
	now := time.Now().UnixNano()
	a.countTo(n, now)
	t.countFrom(n, now)
	binary.BigEndian.PutUint16(frame[0:2], num)
	binary.BigEndian.PutUint16(frame[2:4], uint16(n))
	snd.send(t.sock.out, frame, t.client.ap)
	return true
}

// WriteTo sends pion's responses, Data indications and slow-path
// ChannelData to a client.
func (u *udpSock) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, net.InvalidAddrError("not a UDP address")
	}
	return u.conn.WriteToUDPAddrPort(p, ua.AddrPort())
}

// Close closes the socket; the reader's ReadFrom then returns net.ErrClosed.
func (u *udpSock) Close() error {
	var err error
	u.closeOnce.Do(func() { err = u.conn.Close() })
	return err
}

func (u *udpSock) LocalAddr() net.Addr                { return u.laddr }
func (u *udpSock) SetDeadline(t time.Time) error      { return u.conn.SetDeadline(t) }
func (u *udpSock) SetReadDeadline(t time.Time) error  { return u.conn.SetReadDeadline(t) }
func (u *udpSock) SetWriteDeadline(t time.Time) error { return u.conn.SetWriteDeadline(t) }
