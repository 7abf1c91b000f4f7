package turn

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenUDP opens n UDP sockets on one address with SO_REUSEPORT, so the
// kernel spreads clients (by 5-tuple hash, stable per client) over n reader
// goroutines; pion reads each socket from one goroutine. Port 0 picks a
// free port for all of them. buf sets SO_RCVBUF and SO_SNDBUF (as root the
// kernel's rmem_max/wmem_max do not cap it); 0 leaves the kernel default.
// n < 1 means 1.
func ListenUDP(ctx context.Context, network, addr string, n, buf int) ([]net.PacketConn, error) {
	n = max(n, 1)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return sockopts(c, true, buf)
	}}
	conns := make([]net.PacketConn, 0, n)
	fail := func(err error) ([]net.PacketConn, error) {
		for _, c := range conns {
			c.Close()
		}
		return nil, fmt.Errorf("%w %s %s: %w", ErrListen, network, addr, err)
	}
	for range n {
		pc, err := lc.ListenPacket(ctx, network, addr)
		if err != nil {
			return fail(err)
		}
		conns = append(conns, pc)
		addr = pc.LocalAddr().String() // the rest join the first one's port
	}
	return conns, nil
}

// sockopts sets SO_REUSEPORT (if reuse) and the buffer sizes on a socket
// being created.
func sockopts(c syscall.RawConn, reuse bool, buf int) error {
	var err error
	cerr := c.Control(func(fd uintptr) {
		if reuse {
			if err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
				return
			}
		}
		if buf > 0 {
			setBuf(int(fd), unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, buf)
			setBuf(int(fd), unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, buf)
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// setBuf tries the privileged option first, then the capped one; a buffer
// smaller than asked is not an error.
func setBuf(fd, force, plain, n int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, n) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, n)
	}
}
