//go:build linux && (amd64 || arm64)

package turn

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// noURing makes newBatchSender send each datagram with its own sendto(2),
// as where io_uring is unavailable (tests of that path).
var noURing bool

// sendQueue holds the fast path's sends of one received batch for one
// io_uring_enter(2): the packets go out of different relayed sockets (one
// per allocation), which sendmmsg(2) cannot group and io_uring can. A
// system call costs about 1 µs on the PVM guest the turn bench ran on,
// and before this one sendto per packet was 79% of relayd's CPU there.
//
// Descriptor lifetimes: an allocation's socket may be closed by another
// goroutine at any time, and its number reused by the next socket opened.
// flush holds a reference on every target socket's poll.FD (nested
// RawConn.Control calls: a closed net.UDPConn closes its descriptor only
// when the last reference is dropped) from before it writes the entries
// until io_uring_enter returns, and the ring runs no entry after that
// (uring.run). A socket closed before its hold is taken fails Control, and
// its packet is dropped like a send on a closed socket.
type sendQueue struct {
	ring  *uring
	n     int
	pkts  [batchSize]queuedSend
	res   [batchSize]int32
	holds [batchSize]func(fd uintptr) // holds[i] is hold(i+1) with packet i's descriptor held, bound once
}

type queuedSend struct {
	out  *udpOut
	b    []byte
	addr netip.AddrPort // for a resend after EAGAIN
	fd   int32          // -1: the socket was closed
	msg  unix.Msghdr
	iov  unix.Iovec
	sa   unix.RawSockaddrInet6
}

// newBatchSender is a sender whose send queues datagrams for flush to
// send with one system call, when io_uring is available; else a sender
// that sends each at once. One per reader goroutine, which closes it.
func newBatchSender() *sender {
	s := newSender()
	if noURing {
		return s
	}
	r, err := newURing(batchSize)
	if err != nil {
		return s
	}
	q := &sendQueue{ring: r}
	for i := range q.pkts {
		p := &q.pkts[i]
		p.msg.Name = (*byte)(unsafe.Pointer(&p.sa))
		p.msg.Iov = &p.iov
		p.msg.SetIovlen(1)
		q.holds[i] = func(fd uintptr) {
			p.fd = int32(fd)
			s.hold(i + 1)
		}
	}
	s.q = q
	return s
}

// send sends b from o to addr: queued for flush, which the caller must
// call before b's memory is reused, or at once when s has no ring.
func (s *sender) send(o *udpOut, b []byte, addr netip.AddrPort) {
	q := s.q
	if q == nil || q.ring.broken || o.rc == nil || len(b) == 0 {
		_ = s.writeTo(o, b, addr)
		return
	}
	if q.n == len(q.pkts) {
		s.flush()
	}
	p := &q.pkts[q.n]
	salen, ok := putSockaddr(&p.sa, o.v6, addr)
	if !ok {
		return // as writeTo: not an address o's family can reach
	}
	p.out, p.b, p.addr = o, b, addr
	p.msg.Namelen = salen
	p.iov.Base = &b[0]
	p.iov.SetLen(len(b))
	q.n++
}

// flush sends what send queued. A packet whose send buffer is full
// (EAGAIN) is sent again with sendto, which waits for room as before;
// other errors drop the packet, as they did with sendto.
func (s *sender) flush() {
	q := s.q
	if q == nil || q.n == 0 {
		return
	}
	if q.n == 1 { // one sendto costs less than an io_uring_enter
		p := &q.pkts[0]
		_ = s.writeTo(p.out, p.b, p.addr)
	} else {
		s.hold(0)
		for i := range q.n {
			if p := &q.pkts[i]; q.res[i] == -int32(unix.EAGAIN) {
				_ = s.writeTo(p.out, p.b, p.addr)
			}
		}
	}
	for i := range q.n {
		q.pkts[i].out, q.pkts[i].b = nil, nil
	}
	q.n = 0
}

// hold takes a reference on packet i's socket and, holding it, goes on
// with packet i+1; with all held, it submits the batch.
func (s *sender) hold(i int) {
	q := s.q
	if i == q.n {
		s.submit()
		return
	}
	p := &q.pkts[i]
	if i > 0 && p.out == q.pkts[i-1].out { // held by the caller's frame
		p.fd = q.pkts[i-1].fd
		s.hold(i + 1)
		return
	}
	if err := p.out.rc.Control(q.holds[i]); err != nil {
		p.fd = -1 // closed
		s.hold(i + 1)
	}
}

// submit runs the batch; every descriptor in it is held.
func (s *sender) submit() {
	q := s.q
	for i := range q.n {
		if p := &q.pkts[i]; p.fd >= 0 {
			q.ring.sendmsg(uint64(i), p.fd, &p.msg)
		} else {
			q.ring.nop(uint64(i))
		}
	}
	q.ring.run(q.res[:q.n])
	for i := range q.n {
		if q.pkts[i].fd < 0 {
			q.res[i] = -int32(unix.EBADF)
		}
	}
}

// close releases the ring.
func (s *sender) close() {
	if s != nil && s.q != nil {
		s.q.ring.close()
		s.q = nil
	}
}
