// Package freeport finds loopback ports for processes that are stopped
// and started again on the same port: the relays that tests and
// benchmarks kill and restart. It picks them below the kernel's
// ephemeral port range, so that no socket bound to port 0 — a QUIC
// client's, the local end of an outgoing TCP connection, in this process
// or in a test running beside it — can take one while its owner is down.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the first port handed out: clear of well-known services.
const lowest = 10000

// tries bounds the search for a free port.
const tries = 200

// ephemeralStart returns the first port of the kernel's ephemeral range
// (32768 where it cannot be read: Linux's default).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// candidate returns host:port for a random port below the ephemeral
// range, or host:0 when the range leaves no room below it.
func candidate(host string) string {
	hi := ephemeralStart()
	if hi-lowest < 1000 {
		return net.JoinHostPort(host, "0")
	}
	return net.JoinHostPort(host, strconv.Itoa(lowest+rand.IntN(hi-lowest)))
}

// Pair listens on TCP and UDP with the same port number on host.
func Pair(host string) (net.Listener, net.PacketConn, error) {
	var lastErr error
	for range tries {
		tcp, err := net.Listen("tcp", candidate(host))
		if err != nil {
			lastErr = err
			continue
		}
		udp, err := net.ListenPacket("udp", tcp.Addr().String())
		if err == nil {
			return tcp, udp, nil
		}
		tcp.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("freeport: no free TCP+UDP port pair on %s: %w", host, lastErr)
}

// UDP listens on a UDP port of host.
func UDP(host string) (net.PacketConn, error) {
	var lastErr error
	for range tries {
		c, err := net.ListenPacket("udp", candidate(host))
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("freeport: no free UDP port on %s: %w", host, lastErr)
}
