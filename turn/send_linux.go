//go:build linux && (amd64 || arm64)

package turn

import (
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpOut is a UDP socket the fast path sends from: its RawConn and address
// family, looked up once instead of per packet.
type udpOut struct {
	conn *net.UDPConn
	rc   syscall.RawConn // nil: send with conn.WriteToUDPAddrPort
	v6   bool            // AF_INET6 socket: IPv4 peers go as IPv4-mapped
}

func newUDPOut(c *net.UDPConn) *udpOut {
	o := &udpOut{conn: c}
	rc, err := c.SyscallConn()
	if err != nil {
		return o
	}
	var dom int
	if cerr := rc.Control(func(fd uintptr) { dom, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN) }); cerr != nil || err != nil {
		return o
	}
	o.rc, o.v6 = rc, dom == unix.AF_INET6
	return o
}

// sender sends datagrams with sendto(2) as a raw system call, skipping
// the runtime's entersyscall/exitsyscall: a non-blocking UDP send never
// blocks, and a goroutine the runtime sees in a system call at every
// packet keeps sysmon waking every 20 µs to retake its P (13% of relayd's
// CPU in the turn bench, perf). Used by one goroutine at a time (a
// socket's reader); it never allocates.
type sender struct {
	sa    unix.RawSockaddrInet6 // large enough for either family
	salen uintptr
	b     []byte
	errno unix.Errno
	cb    func(fd uintptr) bool // s.sendto, bound once
	q     *sendQueue            // nil: send sends at once (newSender)
}

func newSender() *sender {
	s := &sender{}
	s.cb = s.sendto
	return s
}

// writeTo sends b from o to addr at once. The RawConn's write lock keeps
// the descriptor open during the call; a full send buffer waits for
// writability like net.UDPConn does.
func (s *sender) writeTo(o *udpOut, b []byte, addr netip.AddrPort) error {
	if s == nil || o.rc == nil || len(b) == 0 {
		_, err := o.conn.WriteToUDPAddrPort(b, addr)
		return err
	}
	salen, ok := putSockaddr(&s.sa, o.v6, addr)
	if !ok {
		return net.InvalidAddrError("not an IPv4 address")
	}
	s.salen = uintptr(salen)
	s.b, s.errno = b, 0
	err := o.rc.Write(s.cb)
	s.b = nil
	if err != nil {
		return err
	}
	if s.errno != 0 {
		return s.errno
	}
	return nil
}

// sendto is the RawConn.Write callback: false (wait for writability) on
// EAGAIN.
func (s *sender) sendto(fd uintptr) bool {
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&s.b[0])), uintptr(len(s.b)), 0,
			uintptr(unsafe.Pointer(&s.sa)), s.salen)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.errno = e
		return true
	}
}

// putSockaddr encodes addr for a socket of family AF_INET6 (v6: IPv4
// addresses as IPv4-mapped) or AF_INET and returns its length; false for
// an IPv6 address and an AF_INET socket.
func putSockaddr(sa *unix.RawSockaddrInet6, v6 bool, addr netip.AddrPort) (uint32, bool) {
	ip := addr.Addr()
	if v6 {
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
		putPort(&sa.Port, addr.Port())
		return unix.SizeofSockaddrInet6, true
	}
	ip = ip.Unmap()
	if !ip.Is4() {
		return 0, false
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.As4()}
	putPort(&sa4.Port, addr.Port())
	return unix.SizeofSockaddrInet4, true
}

// putPort stores a port in network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}
