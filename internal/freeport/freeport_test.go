package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestBelowEphemeralRange: the ports handed out lie below the kernel's
// ephemeral range, and a pair really holds one port number on both TCP
// and UDP.
func TestBelowEphemeralRange(t *testing.T) {
	hi := ephemeralStart()
	if hi-lowest < 1000 {
		t.Skipf("ephemeral range starts at %d: no room below it, ports come from the kernel", hi)
	}
	port := func(addr string) int {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(p)
		return n
	}
	for range 20 {
		tcp, udp, err := Pair("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		pt, pu := port(tcp.Addr().String()), port(udp.LocalAddr().String())
		tcp.Close()
		udp.Close()
		if pt != pu || pt < lowest || pt >= hi {
			t.Fatalf("pair on TCP %d / UDP %d, want one port in [%d, %d)", pt, pu, lowest, hi)
		}
		c, err := UDP("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		p := port(c.LocalAddr().String())
		c.Close()
		if p < lowest || p >= hi {
			t.Fatalf("UDP port %d, want one in [%d, %d)", p, lowest, hi)
		}
	}
}
