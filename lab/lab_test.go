package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRTTThreeRegions(t *testing.T) {
	t.Parallel()
	delays := map[[2]string]time.Duration{
		{"eu", "us"}: 40 * time.Millisecond,
		{"eu", "ap"}: 120 * time.Millisecond,
		{"us", "ap"}: 90 * time.Millisecond,
		{"eu", "eu"}: 0, // two hosts of one region
	}
	spec := Spec{Regions: []Region{{Name: "eu", Hosts: 2}, {Name: "us"}, {Name: "ap"}}}
	for p, d := range delays {
		spec.Links = append(spec.Links, Link{A: p[0], B: p[1], Delay: d})
	}
	l := newTestLab(t, spec)
	t.Logf("lab %s, delayer %v", l.ID(), l.Delayer())
	for p, d := range delays {
		a, b := p[0]+"-0", p[1]+"-0"
		if a == b {
			b = p[1] + "-1"
		}
		checkRTT(t, l, a, udpEcho(t, l, b), 2*d)
		checkRTT(t, l, b, udpEcho(t, l, a), 2*d)
	}
	if s := l.Stats(); l.Delayer() == DelayerTUN && s.Delayed == 0 {
		t.Errorf("Stats() = %+v, want packets delayed", s)
	}
}

func TestTCP(t *testing.T) {
	t.Parallel()
	l := newTestLab(t, Spec{
		Regions: []Region{{Name: "eu"}, {Name: "us"}},
		Links:   []Link{{A: "eu", B: "us", Delay: 20 * time.Millisecond}},
	})
	ln, err := l.Listen("us", "tcp4", l.Addr("us").String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	data := make([]byte, 1<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		got <- [32]byte(h.Sum(nil))
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := l.DialContext(ctx, "eu", "tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.DialContext(ctx, "eu", "tcp", "localhost:80"); err == nil {
		t.Error("DialContext(a name) succeeded, want an error")
	}
	if la := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); la != l.Addr("eu") {
		t.Errorf("local address %v, want eu's %v", la, l.Addr("eu"))
	}
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case h := <-got:
		if h != want {
			t.Errorf("received data hash %x, want %x", h, want)
		}
	case <-ctx.Done():
		t.Fatal("transfer did not finish in 30s")
	}
}

func TestSetDelay(t *testing.T) {
	t.Parallel()
	l := newTestLab(t, Spec{
		Regions: []Region{{Name: "eu"}, {Name: "us"}},
		Links:   []Link{{A: "eu", B: "us", Delay: 20 * time.Millisecond}},
	})
	echo := udpEcho(t, l, "us")
	checkRTT(t, l, "eu", echo, 40*time.Millisecond)
	if err := l.SetDelay("eu", "us", 70*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	checkRTT(t, l, "eu", echo, 140*time.Millisecond)
	if err := l.SetDelay("us", "eu", 5*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	checkRTT(t, l, "eu", echo, 10*time.Millisecond)

	if err := l.SetDelay("eu", "mars", time.Second); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("SetDelay(unknown region) error = %v, want ErrUnknownHost", err)
	}
	if err := l.SetDelay("eu", "us", -time.Second); !errors.Is(err, ErrSpec) {
		t.Errorf("SetDelay(-1s) error = %v, want ErrSpec", err)
	}
}

func TestCommand(t *testing.T) {
	t.Parallel()
	l := newTestLab(t, Spec{Regions: []Region{{Name: "eu"}, {Name: "us"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := l.Run(ctx, "us-0", "ip", "-o", "-4", "addr", "show", "dev", "eth0")
	if err != nil {
		t.Fatalf("Run() error = %v, output %s", err, out)
	}
	if !strings.Contains(string(out), l.Addr("us").String()+"/32") {
		t.Errorf("ip addr inside us-0 = %q, want %v", out, l.Addr("us"))
	}
	if err := l.Command(ctx, "mars-0", "true").Run(); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("Command(unknown host).Run() error = %v, want ErrUnknownHost", err)
	}
	if err := l.Do("mars-0", func() error { return nil }); !errors.Is(err, ErrUnknownHost) {
		t.Errorf("Do(unknown host) error = %v, want ErrUnknownHost", err)
	}
	if got := l.Addr("mars"); got.IsValid() {
		t.Errorf("Addr(unknown) = %v, want the zero Addr", got)
	}
}

// labLeft returns what is left of lab id: namespaces and owner record.
func labLeft(t *testing.T, id string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v %s", err, out)
	}
	var left []string
	for line := range strings.Lines(string(out)) {
		if name, _, _ := strings.Cut(strings.TrimSpace(line), " "); strings.HasPrefix(name, netnsPrefix+id+"-") {
			left = append(left, name)
		}
	}
	if _, err := os.Stat(filepath.Join(ownerDir, id)); err == nil {
		left = append(left, filepath.Join(ownerDir, id))
	}
	return left
}

func TestCloseRemovesEverything(t *testing.T) {
	t.Parallel()
	needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := New(ctx, Spec{Regions: []Region{{Name: "eu", Hosts: 2}, {Name: "us"}}})
	if err != nil {
		t.Fatal(err)
	}
	// A process left running inside the lab is killed by Close.
	sleep := l.Command(context.Background(), "eu-1", "sleep", "300")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sleep.Wait() }()

	if err := l.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	if left := labLeft(t, l.ID()); len(left) > 0 {
		t.Errorf("after Close: left %v", left)
	}
	select {
	case err := <-done:
		if ws, ok := sleep.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Errorf("process inside the lab ended with %v, want killed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("process inside the lab still runs 10s after Close")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close() error = %v", err)
	}
	if err := l.SetDelay("eu", "us", time.Millisecond); !errors.Is(err, ErrClosed) {
		t.Errorf("SetDelay after Close error = %v, want ErrClosed", err)
	}
}

func TestNewFailureCleansUp(t *testing.T) {
	t.Parallel()
	needLab(t)
	name := "f" + newID()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A leaf qdisc the kernel refuses makes New fail after the
	// namespaces and links exist.
	_, err := newLab(ctx, Spec{Name: name, Regions: []Region{{Name: "eu"}, {Name: "us"}}, Delayer: DelayerNetem},
		options{leaf: func(Link) string { return "nosuchqdisc" }})
	if err == nil {
		t.Fatal("New() with a bad qdisc succeeded")
	}
	if left := labLeft(t, name); len(left) > 0 {
		t.Errorf("after failed New: left %v", left)
	}

	// A chosen name is refused while a lab of that name runs.
	l := newTestLab(t, Spec{Name: name, Regions: []Region{{Name: "eu"}}})
	if _, err := New(ctx, Spec{Name: l.ID(), Regions: []Region{{Name: "eu"}}}); !errors.Is(err, ErrExists) {
		t.Errorf("New() with a taken name: error = %v, want ErrExists", err)
	}
}

func TestCleanupStale(t *testing.T) {
	t.Parallel()
	needLab(t)
	live := newTestLab(t, Spec{Regions: []Region{{Name: "eu"}}})

	// A child process (this test binary) starts a lab with a process
	// inside, and is killed before it can close it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"=1")
	var stderr bytes.Buffer
	helper.Stderr = &stderr
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 64)
	n, _ := io.ReadAtLeast(stdout, line, 1)
	var id string
	var sleepPid int
	if _, err := fmt.Sscan(string(line[:n]), &id, &sleepPid); err != nil {
		helper.Process.Kill()
		helper.Wait()
		t.Fatalf("helper printed %q (stderr %q): %v", line[:n], stderr.String(), err)
	}
	helper.Process.Kill() // by pid
	helper.Wait()
	if left := labLeft(t, id); len(left) == 0 {
		t.Fatalf("the killed helper's lab %s left nothing to clean", id)
	}

	removed, err := CleanupStale(ctx)
	if err != nil {
		t.Errorf("CleanupStale() error = %v", err)
	}
	if !slices.Contains(removed, id) {
		t.Errorf("CleanupStale() removed %v, want %s among them", removed, id)
	}
	if slices.Contains(removed, live.ID()) {
		t.Errorf("CleanupStale() removed the live lab %s", live.ID())
	}
	if left := labLeft(t, id); len(left) > 0 {
		t.Errorf("after CleanupStale: left %v", left)
	}
	if err := syscall.Kill(sleepPid, 0); err == nil && !zombie(sleepPid) {
		t.Errorf("process %d inside the stale lab still runs", sleepPid)
	}
	if left := labLeft(t, live.ID()); len(left) == 0 {
		t.Errorf("the live lab %s was removed", live.ID())
	}
	// The live lab still works.
	if _, err := live.Run(ctx, "eu", "true"); err != nil {
		t.Errorf("live lab after CleanupStale: %v", err)
	}
}

func TestIPv6(t *testing.T) {
	t.Parallel()
	l := newTestLab(t, Spec{
		Regions: []Region{{Name: "eu"}, {Name: "us"}},
		Links:   []Link{{A: "eu", B: "us", Delay: 25 * time.Millisecond}},
		IPv6:    true,
	})
	if got, want := l.Addr6("us-0").String(), "fd77:0:0:2::a"; got != want {
		t.Fatalf("Addr6(us-0) = %s, want %s", got, want)
	}
	pc, err := l.ListenPacket("us", "udp6", netip.AddrPortFrom(l.Addr6("us"), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	echo := serveEcho(t, pc.(*net.UDPConn))
	checkRTT(t, l, "eu", echo, 50*time.Millisecond)
	checkRTT(t, l, "eu", udpEcho(t, l, "us"), 50*time.Millisecond) // IPv4 too
}
