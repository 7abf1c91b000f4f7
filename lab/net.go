package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Listen opens a listener inside a host's namespace, as net.Listen does;
// hand it to a server's Serve to run the server in-process "on" the host.
func (l *Lab) Listen(host, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := l.Do(host, func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet conn inside a host's namespace, as
// net.ListenPacket does (for UDP, QUIC).
func (l *Lab) ListenPacket(host, network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := l.Do(host, func() (err error) {
		pc, err = net.ListenPacket(network, address)
		return err
	})
	return pc, err
}

// DialContext dials from a host's namespace, as net.Dialer.DialContext
// does. The address must hold an IP address, not a name: a name could
// resolve to several addresses, which Go dials from other goroutines,
// outside the namespace. Use it as http.Transport.DialContext with
// func(ctx, n, a) { return l.DialContext(ctx, "eu-0", n, a) }.
func (l *Lab) DialContext(ctx context.Context, host, network, address string) (net.Conn, error) {
	h, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(h); err != nil {
		return nil, fmt.Errorf("lab: dial %s: want an IP address, not a name", address)
	}
	var c net.Conn
	err = l.Do(host, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}
