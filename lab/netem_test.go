package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestNetemClasses checks netem mode's plumbing — htb classes per source
// region, u32 filters on the source subnet, changes at run time — with a
// pfifo leaf in place of netem, so it runs on kernels without sch_netem.
func TestNetemClasses(t *testing.T) {
	t.Parallel()
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := newLab(ctx, Spec{
		Regions: []Region{{Name: "eu"}, {Name: "us"}, {Name: "ap"}},
		Links:   []Link{{A: "eu", B: "us", Delay: 40 * time.Millisecond}},
		Delayer: DelayerNetem,
		IPv6:    true,
	}, options{leaf: func(Link) string { return "pfifo limit 1000" }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Delayer() != DelayerNetem {
		t.Fatalf("Delayer() = %v, want netem", l.Delayer())
	}
	// Three packets eu -> us and two ap -> us (one IPv4, one IPv6) go
	// through us-0's link classes 1:10 (from eu) and 1:12 (from ap).
	echo := udpEcho(t, l, "us")
	rtts(t, l, "eu", echo, 3)
	rtts(t, l, "ap", echo, 1)
	pc, err := l.ListenPacket("us", "udp6", netip.AddrPortFrom(l.Addr6("us"), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	rtts(t, l, "ap", serveEcho(t, pc.(*net.UDPConn)), 1)
	us, _ := l.Host("us")
	for class, want := range map[int]int{classID(0): 3, classID(1): 0, classID(2): 2} {
		if got := classPackets(t, l, us.link, class); got != want {
			t.Errorf("class 1:%x on %s (towards us-0) sent %d packets, want %d", class, us.link, got, want)
		}
	}
	if err := l.SetDelay("eu", "us", 10*time.Millisecond); err != nil {
		t.Errorf("SetDelay() error = %v", err)
	}
}

// classPackets returns how many packets an htb class of the router sent.
func classPackets(t *testing.T, l *Lab, dev string, class int) int {
	t.Helper()
	out, err := exec.Command("tc", "-n", l.RouterNetns(), "-s", "class", "show", "dev", dev, "classid", fmt.Sprintf("1:%x", class)).CombinedOutput()
	if err != nil {
		t.Fatalf("tc class show: %v %s", err, out)
	}
	m := regexp.MustCompile(`Sent \d+ bytes (\d+) pkt`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("tc class show: no counters in %s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestNetem runs the RTT check with real netem, where the kernel has it.
func TestNetem(t *testing.T) {
	t.Parallel()
	needLab(t)
	probe := newTestLab(t, Spec{Regions: []Region{{Name: "eu"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !netemAvailable(ctx, probe.RouterNetns()) {
		t.Skip("skipping: this kernel has no sch_netem (the TUN forwarder stands in for it)")
	}
	l := newTestLab(t, Spec{
		Regions: []Region{{Name: "eu"}, {Name: "us"}},
		Links:   []Link{{A: "eu", B: "us", Delay: 30 * time.Millisecond}},
		Delayer: DelayerNetem,
	})
	echo := udpEcho(t, l, "us")
	checkRTT(t, l, "eu", echo, 60*time.Millisecond)
	if err := l.SetDelay("eu", "us", 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	checkRTT(t, l, "eu", echo, 100*time.Millisecond)
}
