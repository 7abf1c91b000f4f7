//go:build linux && (amd64 || arm64)

package turn

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSize is how many datagrams one recvmmsg(2) may return.
const batchSize = 32

// mmsghdr is struct mmsghdr on 64-bit Linux (x/sys/unix has no type for
// it): a msghdr and the received length, padded to 8 bytes.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// batchReader reads a UDP socket up to batchSize datagrams per system
// call (recvmmsg) without allocating: one syscall instead of one per
// packet when packets queue up, the fast path's largest cost (the
// colleague's profile: 72% of the time in syscalls). It is used by the
// socket's one reader goroutine only.
//
// Why not golang.org/x/net/ipv4's ReadBatch: it allocates a net.Addr per
// message, and the relay path must not allocate (TestFastPathNoAllocs).
type batchReader struct {
	rc     syscall.RawConn
	hdrs   [batchSize]mmsghdr
	iovs   [batchSize]unix.Iovec
	names  [batchSize]unix.RawSockaddrInet6 // large enough for either family
	bufs   [batchSize][]byte
	n, i   int   // datagrams received by the last call, next to hand out
	held   int   // the datagram handle declined, for serve to return
	errno  error // the last call's error
	short  bool  // the last call emptied the socket's queue
	full   bool  // the last call filled the batch
	handle func(d []byte, from netip.AddrPort) bool
	before func() // nil, or called before a read reuses the buffers and before a wait
	read   func(fd uintptr) bool
}

// newBatchReader reads c for serve, which hands each datagram to handle:
// true when handle is done with it, false to have serve return it.
func newBatchReader(c *net.UDPConn, handle func(d []byte, from netip.AddrPort) bool, before func()) *batchReader {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	b := &batchReader{rc: rc, handle: handle, before: before}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, MaxPacket+1) // +1: a datagram that fills it was truncated
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(len(b.bufs[i]))
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	b.read = b.recv
	return b
}

// serve hands received datagrams to handle until it declines one, which
// serve returns (valid until serve is called again) with its source. A
// closed socket returns an error for which errors.Is(err, net.ErrClosed)
// holds; other errors (ICMP-induced) are transient.
//
// The datagrams are handled inside one RawConn.Read, because only there
// can a short batch be followed by a wait instead of another recvmmsg
// that would return EAGAIN (recv): Read's start forgets readiness the
// poller reported while nobody waited, so its first call must read.
func (b *batchReader) serve() ([]byte, netip.AddrPort, error) {
	b.held = -1
	for b.held < 0 && b.errno == nil {
		b.short = false
		if err := b.rc.Read(b.read); err != nil {
			return nil, netip.AddrPort{}, err
		}
	}
	if err := b.errno; err != nil {
		b.errno = nil
		if errors.Is(err, unix.EBADF) {
			return nil, netip.AddrPort{}, net.ErrClosed
		}
		return nil, netip.AddrPort{}, err
	}
	d, from := b.datagram(b.held)
	return d, from, nil
}

// recv is the RawConn.Read callback: it hands out what the last recvmmsg
// returned, then calls recvmmsg again, until handle declines a datagram
// or the call fails (true), or there is nothing to read (false: wait for
// readability). After a full batch it returns true too, so that serve
// starts another Read, which notices a close (a socket that never runs
// dry would keep one Read going forever). A raw system call, as in
// sender: recvmmsg on a non-blocking socket never blocks.
//
// After a call that returned fewer than batchSize datagrams the queue was
// empty, so recv waits for the poller at once instead of calling again
// only to get EAGAIN: every datagram queued since has raised an epoll
// edge (Go registers sockets edge-triggered), which the poller turns into
// a wake-up, or into a ready mark that ends the wait at once. At low
// rates this saves one of the few system calls per packet. (recvmmsg also
// returns short when an error follows some datagrams, without an edge; a
// UDP socket without IP_RECVERR has none to report.)
func (b *batchReader) recv(fd uintptr) bool {
	for {
		for b.i < b.n {
			i := b.i
			b.i++
			if d, from := b.datagram(i); !b.handle(d, from) {
				b.held = i
				return true
			}
		}
		if b.before != nil {
			b.before()
		}
		if b.short {
			b.short = false
			return false
		}
		if b.full {
			b.full = false
			return true
		}
		for i := range b.hdrs {
			b.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
			b.hdrs[i].hdr.Flags = 0
		}
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), batchSize, 0, 0, 0)
		for e == unix.EINTR { // again at once: the poller is edge-triggered and will not wake us for data already queued
			n, _, e = unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), batchSize, 0, 0, 0)
		}
		switch {
		case e == unix.EAGAIN || e == unix.EWOULDBLOCK:
			return false
		case e != 0:
			b.n, b.i, b.errno = 0, 0, e
			return true
		}
		b.n, b.i = int(n), 0
		b.short, b.full = b.n < batchSize, b.n == batchSize
	}
}

// datagram returns received datagram i (a truncated one reported by its
// full buffer's length) and its source.
func (b *batchReader) datagram(i int) ([]byte, netip.AddrPort) {
	h := &b.hdrs[i]
	n := int(h.len)
	if h.hdr.Flags&unix.MSG_TRUNC != 0 {
		n = len(b.bufs[i])
	}
	return b.bufs[i][:n], sockaddrPort(&b.names[i])
}

// sockaddrPort decodes a received sockaddr_in or sockaddr_in6.
func sockaddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}
