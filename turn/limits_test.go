package turn

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestAllocationQuotas is acceptance 4 (quotas): per-user and per-session
// caps hold under a bounded flood of Allocate requests and are counted.
func TestAllocationQuotas(t *testing.T) {
	ts := newServer(t, func(c *Config) {
		c.MaxAllocationsPerSession = 2
		c.MaxAllocationsPerUser = 1
		c.UnauthRatePerIP = 1000 // each Allocate starts unauthenticated (the 401 challenge)
	})
	u1, p1 := ts.mint(t, "sess-quota", time.Hour)
	u2, p2 := ts.mint(t, "sess-quota", time.Hour+time.Second)
	if _, err := dialRaw(t, "udp4", ts.udp).allocate(u1, p1); err != nil {
		t.Fatal(err)
	}
	var re *respError
	if _, err := dialRaw(t, "udp4", ts.udp).allocate(u1, p1); !errors.As(err, &re) || re.code != int(stun.CodeAllocQuotaReached) {
		t.Fatalf("second allocation of one user = %v, want 486", err)
	}
	if _, err := dialRaw(t, "udp4", ts.udp).allocate(u2, p2); err != nil {
		t.Fatal(err)
	}
	// A flood: 40 more credentials of the session, each trying once.
	for i := range 40 {
		u, p := ts.mint(t, "sess-quota", time.Hour+time.Duration(2+i)*time.Second)
		if _, err := dialRaw(t, "udp4", ts.udp).allocate(u, p); !errors.As(err, &re) || re.code != int(stun.CodeAllocQuotaReached) {
			t.Fatalf("allocation %d over the session quota = %v, want 486", i, err)
		}
	}
	if n := ts.Allocations(); n != 2 {
		t.Errorf("allocations = %d, want 2", n)
	}
	if got := ts.counter(t, "stapes_turn_refusals_total", map[string]string{"reason": refuseQuotaUser}); got != 1 {
		t.Errorf("quota_user refusals = %v, want 1", got)
	}
	if got := ts.counter(t, "stapes_turn_refusals_total", map[string]string{"reason": refuseQuotaSession}); got != 40 {
		t.Errorf("quota_session refusals = %v, want 40", got)
	}
	// Another session is not affected.
	u3, p3 := ts.mint(t, "sess-other", time.Hour)
	if _, err := dialRaw(t, "udp4", ts.udp).allocate(u3, p3); err != nil {
		t.Fatalf("other session: %v", err)
	}
}

// TestBandwidthCapUnderFlood is acceptance 4 (bandwidth): one allocation
// offered ten times its cap, both ways, delivers no more than the cap (plus
// the burst), while another session's allocation on the same server, under
// its cap, loses (almost) nothing. No speed is asserted: the flood is
// paced, bounded in count and time, and only ratios are checked.
func TestBandwidthCapUnderFlood(t *testing.T) {
	const (
		rate  = 100_000 // bytes/s per direction
		burst = 64 << 10
	)
	ts := newServer(t, func(c *Config) { c.Bandwidth, c.BandwidthBurst = rate, burst })
	open := func(session string) (net.PacketConn, *net.UDPConn) {
		u, p := ts.mint(t, session, time.Hour)
		relay := allocate(t, turnClient(t, ts.udp, u, p))
		peer := udpPeer(t, "127.0.0.2:0")
		// bind the channel first (pion binds on the first send)
		if _, err := relay.WriteTo([]byte("x"), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := readWithin(peer, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return relay, peer
	}
	floodRelay, floodPeer := open("sess-flood")
	calmRelay, calmPeer := open("sess-calm")

	var wg sync.WaitGroup
	count := func(c net.PacketConn, total *int, n *int) {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			*total += k
			*n++
		}
	}
	var floodTo, floodFrom, calmBytes, nTo, nFrom, calmN int
	wg.Add(3)
	go count(floodPeer, &floodTo, &nTo)
	go count(floodRelay, &floodFrom, &nFrom)
	go count(calmPeer, &calmBytes, &calmN)

	const d = 1500 * time.Millisecond
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	big, small := make([]byte, 1000), make([]byte, 500)
	floodAddr := floodRelay.LocalAddr()
	calmSent := 0
	for i := 0; i < 3000 && ctx.Err() == nil; i++ { // 1000 B every 1 ms each way: 10× the cap
		_, _ = floodRelay.WriteTo(big, floodPeer.LocalAddr())
		_, _ = floodPeer.WriteTo(big, floodAddr)
		if i%10 == 0 { // 500 B every 10 ms: half the cap
			_, _ = calmRelay.WriteTo(small, calmPeer.LocalAddr())
			calmSent++
		}
		if next := start.Add(time.Duration(i+1) * time.Millisecond); time.Until(next) > 0 {
			time.Sleep(time.Until(next))
		}
	}
	elapsed := time.Since(start)
	wg.Wait()

	limit := int(rate*elapsed.Seconds()) + burst + 2*1000
	for _, dir := range []struct {
		name  string
		bytes int
	}{{"to peer", floodTo}, {"from peer", floodFrom}} {
		if dir.bytes > limit {
			t.Errorf("flood %s delivered %d bytes in %v, cap allows %d", dir.name, dir.bytes, elapsed, limit)
		}
		if dir.bytes < burst/2 {
			t.Errorf("flood %s delivered only %d bytes: the cap should let its rate through", dir.name, dir.bytes)
		}
	}
	if calmN < calmSent*9/10 {
		t.Errorf("calm session delivered %d of %d packets during the flood", calmN, calmSent)
	}
	if got := ts.counter(t, "stapes_turn_dropped_packets_total", map[string]string{"reason": dropBandwidth}); got < 100 {
		t.Errorf("bandwidth drops = %v, want the flood's excess counted", got)
	}
	t.Logf("flood: %d B to peer, %d B from peer in %v (cap %d); calm: %d/%d packets", floodTo, floodFrom, elapsed, limit, calmN, calmSent)
}

// TestUnauthRateLimit: unauthenticated requests over the per-address rate
// are dropped and counted; another address is still answered.
func TestUnauthRateLimit(t *testing.T) {
	ts := newServer(t, func(c *Config) { c.UnauthRatePerIP = 20 })
	c := dialRaw(t, "udp4", ts.udp)
	start := time.Now()
	for range 200 {
		if err := c.send(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw); err != nil {
			t.Fatal(err)
		}
	}
	sendTime := time.Since(start)
	answered := 0
	for {
		if _, err := c.readFrame(time.Now().Add(500 * time.Millisecond)); err != nil {
			break
		}
		answered++
	}
	// burst 40, then 20/s while the requests were arriving
	if limit := 40 + int(20*sendTime.Seconds()) + 2; answered > limit || answered < 30 {
		t.Errorf("answered %d of 200 binding requests sent in %v at 20/s (burst 40), want 30..%d", answered, sendTime, limit)
	}
	if got := ts.counter(t, "stapes_turn_refusals_total", map[string]string{"reason": refuseUnauthRate}); got < 1 {
		t.Errorf("unauth_rate refusals = %v", got)
	}
	d := &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)}}
	conn, err := d.Dial("udp4", ts.udp)
	if err != nil {
		t.Fatal(err)
	}
	other := &rawClient{t: t, conn: conn}
	defer conn.Close()
	m := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	_ = other.send(m.Raw)
	if _, err := other.readResponse(m.TransactionID, 5*time.Second); err != nil {
		t.Errorf("another address was not answered: %v", err)
	}
}
