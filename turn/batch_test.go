package turn

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatchReader: datagrams one at a time (each waits for the last to
// be read, as a client waiting for its answer) and in bursts all come
// out, in order, with their source: returned by serve one by one, or
// consumed by the handler inside serve (where a short batch waits for the
// poller instead of reading again: a lost wake-up stalls the ping-pong).
func TestBatchReader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		consume bool
	}{
		{"returned", false},
		{"consumed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cl := loopbackPair(t)
			from := netip.MustParseAddrPort(cl.LocalAddr().String())
			got := make(chan int, 4096)
			take := func(d []byte, ap netip.AddrPort) {
				if ap != from {
					t.Errorf("source %v, want %v", ap, from)
				}
				got <- int(d[0]) | int(d[1])<<8
			}
			handle := func(d []byte, ap netip.AddrPort) bool {
				if tc.consume {
					take(d, ap)
				}
				return tc.consume
			}
			b := newBatchReader(srv, handle, nil)
			if b == nil {
				t.Skip("no recvmmsg batching on this platform")
			}
			// Returned: serve's next call waits for the next write, so that
			// the datagram is queued before serve's Read starts (which forgets
			// readiness reported before it).
			sent := make(chan struct{}, 4096)
			done := make(chan error, 1)
			go func() {
				for first := true; ; first = false {
					if !first && !tc.consume {
						<-sent
					}
					d, ap, err := b.serve()
					if err != nil {
						done <- err
						return
					}
					take(d, ap)
				}
			}()
			for i := range 2000 { // ping-pong
				if _, err := cl.Write([]byte{byte(i), byte(i >> 8), 1, 2, 3}); err != nil {
					t.Fatal(err)
				}
				sent <- struct{}{}
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
				sent <- struct{}{}
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
			sent <- struct{}{}
			if err := <-done; !errors.Is(err, net.ErrClosed) {
				t.Fatalf("after close: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestBatchReaderCloseUnderLoad: a socket that never runs dry (each
// datagram handled sends two more) still notices its close: serve
// returns net.ErrClosed.
func TestBatchReaderCloseUnderLoad(t *testing.T) {
	srv, cl := loopbackPair(t)
	var handled atomic.Int64
	msg := make([]byte, 100)
	b := newBatchReader(srv, func([]byte, netip.AddrPort) bool {
		handled.Add(1)
		_, _ = cl.Write(msg)
		_, _ = cl.Write(msg)
		return true
	}, nil)
	if b == nil {
		t.Skip("no recvmmsg batching on this platform")
	}
	for range 64 { // two batches
		if _, err := cl.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := b.serve()
		done <- err
	}()
	waitFor(t, 5*time.Second, "datagrams handled", func() bool { return handled.Load() > 5000 })
	srv.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("after close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve still running 5 s after the close")
	}
}

// loopbackPair returns a UDP socket on 127.0.0.1 and a client socket
// connected to it, both closed when the test ends.
func loopbackPair(t *testing.T) (srv, cl *net.UDPConn) {
	t.Helper()
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cl, err = net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return srv, cl
}
