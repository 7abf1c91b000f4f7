package lab

import (
	"encoding/binary"
	"os"
	"sync"
	"testing"
	"time"
)

// fakeDev is a packetDev: Read returns packets sent on in, Write records
// packets with the time they came out.
type fakeDev struct {
	in   chan []byte
	done chan struct{}
	once sync.Once

	mu  sync.Mutex // guards out
	out []written
}

type written struct {
	pkt []byte
	at  time.Time
}

func newFakeDev() *fakeDev {
	return &fakeDev{in: make(chan []byte, 1024), done: make(chan struct{})}
}

func (d *fakeDev) Read(b []byte) (int, error) {
	select {
	case p := <-d.in:
		return copy(b, p), nil
	case <-d.done:
		return 0, os.ErrClosed
	}
}

func (d *fakeDev) Write(b []byte) (int, error) {
	d.mu.Lock()
	d.out = append(d.out, written{append([]byte(nil), b...), time.Now()})
	d.mu.Unlock()
	return len(b), nil
}

func (d *fakeDev) close() { d.once.Do(func() { close(d.done) }) }

// written waits until n packets came out, or fails the test after 5 s.
func (d *fakeDev) written(t *testing.T, n int) []written {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.mu.Lock()
		out := append([]written(nil), d.out...)
		d.mu.Unlock()
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d packets written, want %d", len(out), n)
		}
		time.Sleep(time.Millisecond) // polling a fake device; no event to wait on
	}
}

// ipv4 builds a 28-byte IPv4 packet from src to dst carrying seq.
func ipv4(src, dst [4]byte, seq uint32) []byte {
	p := make([]byte, 28)
	p[0] = 0x45
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	binary.BigEndian.PutUint32(p[24:], seq)
	return p
}

// ipv6 builds a 40-byte IPv6 header between lab hosts of regions (from 1;
// 0 is the router's fd77::).
func ipv6(src, dst int) []byte {
	p := make([]byte, 40)
	p[0] = 0x60
	for i, r := range []int{src, dst} {
		a := hostAddr6(r-1, 0, true).As16()
		if r == 0 {
			a = RouterAddr6.As16()
		}
		copy(p[8+16*i:], a[:])
	}
	return p
}

func seqOf(p []byte) uint32 { return binary.BigEndian.Uint32(p[24:]) }

var (
	euHost = [4]byte{10, 77, 1, 10}
	usHost = [4]byte{10, 77, 2, 10}
	other  = [4]byte{192, 0, 2, 1}
)

func startForwarder(t *testing.T, links map[[2]int]Link) (*forwarder, *fakeDev) {
	t.Helper()
	dev := newFakeDev()
	f := newForwarder(dev, 2)
	for p, l := range links {
		f.setLink(p[0], p[1], l)
	}
	f.run()
	t.Cleanup(func() { dev.close(); f.stop() })
	return f, dev
}

func TestForwarderDelay(t *testing.T) {
	t.Parallel()
	const d = 30 * time.Millisecond
	f, dev := startForwarder(t, map[[2]int]Link{{0, 1}: {Delay: d}})
	start := time.Now()
	dev.in <- ipv4(euHost, usHost, 1) // eu -> us: delayed
	dev.in <- ipv4(usHost, euHost, 2) // us -> eu: no link set, no delay
	dev.in <- ipv4(other, usHost, 3)  // not between lab hosts: passed at once
	out := dev.written(t, 3)
	for _, w := range out {
		took := w.at.Sub(start)
		switch seqOf(w.pkt) {
		case 1:
			if took < d {
				t.Errorf("eu->us packet out after %v, want >= %v", took, d)
			}
		default:
			if took >= d {
				t.Errorf("packet %d out after %v, want < %v", seqOf(w.pkt), took, d)
			}
		}
	}
	if got, want := f.stats(), (Stats{Delayed: 2, Passed: 1}); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}

func TestForwarderOrderWithJitterAndChange(t *testing.T) {
	t.Parallel()
	f, dev := startForwarder(t, map[[2]int]Link{{0, 1}: {Delay: 20 * time.Millisecond, Jitter: 15 * time.Millisecond}})
	const n = 200
	for i := range n {
		if i == n/2 {
			f.setLink(0, 1, Link{}) // later packets may not overtake earlier ones
		}
		dev.in <- ipv4(euHost, usHost, uint32(i))
	}
	out := dev.written(t, n)
	for i, w := range out {
		if got := seqOf(w.pkt); got != uint32(i) {
			t.Fatalf("packet %d out as number %d: order not kept", got, i)
		}
	}
}

func TestForwarderLoss(t *testing.T) {
	t.Parallel()
	f, dev := startForwarder(t, map[[2]int]Link{{0, 1}: {Loss: 1}})
	for i := range 10 {
		dev.in <- ipv4(euHost, usHost, uint32(i))
	}
	dev.in <- ipv4(usHost, euHost, 99)
	out := dev.written(t, 1)
	if len(out) != 1 || seqOf(out[0].pkt) != 99 {
		t.Errorf("written %d packets, want only the one from us", len(out))
	}
	if got := f.stats().Loss; got != 10 {
		t.Errorf("stats.Loss = %d, want 10", got)
	}
}

func TestForwarderClassify(t *testing.T) {
	f := newForwarder(newFakeDev(), 3)
	tests := []struct {
		name string
		pkt  []byte
		want int
	}{
		{"eu to us", ipv4(euHost, usHost, 0), 0*3 + 1},
		{"us to eu", ipv4(usHost, euHost, 0), 1*3 + 0},
		{"within eu", ipv4(euHost, [4]byte{10, 77, 1, 11}, 0), 0},
		{"third region", ipv4([4]byte{10, 77, 3, 10}, usHost, 0), 2*3 + 1},
		{"region past the last", ipv4([4]byte{10, 77, 4, 10}, usHost, 0), -1},
		{"router", ipv4([4]byte{10, 77, 0, 1}, usHost, 0), -1},
		{"outside", ipv4(other, usHost, 0), -1},
		{"ipv6 eu to us", ipv6(1, 2), 0*3 + 1},
		{"ipv6 ap to eu", ipv6(3, 1), 2*3 + 0},
		{"ipv6 region past the last", ipv6(4, 1), -1},
		{"ipv6 router", ipv6(0, 1), -1},
		{"ipv6 outside", append([]byte{0x60}, make([]byte, 39)...), -1},
		{"short", []byte{0x45, 0}, -1},
	}
	for _, tt := range tests {
		if got := f.pair(tt.pkt); got != tt.want {
			t.Errorf("%s: pair = %d, want %d", tt.name, got, tt.want)
		}
	}
}
