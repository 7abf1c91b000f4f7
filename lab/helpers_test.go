package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		helperLab() // never returns
	}
	goleak.VerifyTestMain(m)
}

// needLab skips the test where labs cannot run.
func needLab(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("skipping: %v (lab tests need root, iproute2, network namespaces and /dev/net/tun; CI runs them as root)", err)
	}
}

// newTestLab starts a lab and closes it when the test ends.
func newTestLab(t *testing.T, spec Spec) *Lab {
	t.Helper()
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := New(ctx, spec)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close() error = %v", err)
		}
	})
	return l
}

// udpEcho starts a UDP echo server on host and returns its address.
func udpEcho(t *testing.T, l *Lab, host string) netip.AddrPort {
	t.Helper()
	c, err := l.ListenPacket(host, "udp4", netip.AddrPortFrom(l.Addr(host), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	return serveEcho(t, c.(*net.UDPConn))
}

// serveEcho echoes what pc receives until the test ends.
func serveEcho(t *testing.T, pc *net.UDPConn) netip.AddrPort {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// rtts sends n UDP probes from host to the echo server at to, one at a
// time, and returns their round-trip times sorted. A probe lost or later
// than 2 s is sent again, up to n more times.
func rtts(t *testing.T, l *Lab, from string, to netip.AddrPort, n int) []time.Duration {
	t.Helper()
	var c *net.UDPConn
	if err := l.Do(from, func() (err error) {
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []time.Duration
	buf := make([]byte, 64)
	for seq := uint64(0); len(out) < n && seq < uint64(2*n); seq++ {
		var msg [8]byte
		binary.BigEndian.PutUint64(msg[:], seq)
		start := time.Now()
		if _, err := c.Write(msg[:]); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(start.Add(2 * time.Second))
		for {
			m, err := c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Logf("%s -> %v: probe %d unanswered after 2s, sending another", from, to, seq)
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if m == 8 && binary.BigEndian.Uint64(buf[:8]) == seq {
				out = append(out, time.Since(start))
				break
			}
		}
	}
	if len(out) < n {
		t.Fatalf("%s -> %v: %d of %d probes answered", from, to, len(out), n)
	}
	slices.Sort(out)
	return out
}

// checkRTT asserts that every probe from host to the echo server took at
// least want and their median less than want plus slack (a loaded
// machine adds delay, never removes it).
func checkRTT(t *testing.T, l *Lab, from string, to netip.AddrPort, want time.Duration) time.Duration {
	t.Helper()
	const slack = 200 * time.Millisecond
	got := rtts(t, l, from, to, 7)
	med := got[len(got)/2]
	if got[0] < want {
		t.Errorf("%s -> %v: fastest RTT %v, want >= %v (all %v)", from, to, got[0], want, got)
	}
	if med >= want+slack {
		t.Errorf("%s -> %v: median RTT %v, want < %v (all %v)", from, to, med, want+slack, got)
	}
	t.Logf("%s -> %v: RTT min %v median %v (configured %v)", from, to, got[0], med, want)
	return med
}
