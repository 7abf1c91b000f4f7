package turn

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestBatchReader: datagrams one at a time (each waits for the last to
// be read, as a client waiting for its answer) and in bursts all come
// out, in order, with their source.
func TestBatchReader(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	b := newBatchReader(srv)
	if b == nil {
		t.Skip("no recvmmsg batching on this platform")
	}
	cl, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	from := netip.MustParseAddrPort(cl.LocalAddr().String())
	got := make(chan int, 4096)
	done := make(chan error, 1)
	go func() {
		for {
			d, ap, err := b.next()
			if err != nil {
				done <- err
				return
			}
			if ap != from {
				t.Errorf("source %v, want %v", ap, from)
			}
			got <- int(d[0]) | int(d[1])<<8
		}
	}()
	for i := range 2000 { // ping-pong
		if _, err := cl.Write([]byte{byte(i), byte(i >> 8), 1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-got:
			if n != i {
				t.Fatalf("got datagram %d, want %d", n, i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("datagram %d not read", i)
		}
	}
	for i := range 200 { // a burst
		if _, err := cl.Write([]byte{byte(i), byte(i >> 8)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 200 {
		select {
		case n := <-got:
			if n != i {
				t.Fatalf("burst: got %d, want %d", n, i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("burst datagram %d not read", i)
		}
	}
	srv.Close()
	if err := <-done; err == nil {
		t.Fatal("no error after close")
	}
}
