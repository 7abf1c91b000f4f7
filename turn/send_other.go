//go:build !(linux && (amd64 || arm64))

package turn

import (
	"net"
	"net/netip"
)

// udpOut is a UDP socket the fast path sends from.
type udpOut struct{ conn *net.UDPConn }

func newUDPOut(c *net.UDPConn) *udpOut { return &udpOut{conn: c} }

// sender is raw sendto(2) on 64-bit Linux only; elsewhere it is
// net.UDPConn's WriteToUDPAddrPort.
type sender struct{}

func newSender() *sender { return nil }

func (*sender) writeTo(o *udpOut, b []byte, addr netip.AddrPort) error {
	_, err := o.conn.WriteToUDPAddrPort(b, addr)
	return err
}

func newBatchSender() *sender { return nil }

func (s *sender) send(o *udpOut, b []byte, addr netip.AddrPort) { _ = s.writeTo(o, b, addr) }
func (*sender) flush()                                          {}
func (*sender) close()                                          {}
