package gossip

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// relaxed makes LocalConfig's timing tolerant of a machine loaded by the
// race detector and other work, for tests of more than a few nodes: they
// check what happens, not how fast, and a false suspicion would only
// slow them down.
func relaxed(c *Config) {
	c.ProbeInterval = time.Second
	c.ProbeTimeout = 500 * time.Millisecond
	c.SuspicionMult = 5
	c.SettleInterval = 250 * time.Millisecond
	c.SettleQuiet = time.Second
	c.TCPTimeout = 5 * time.Second
}

func TestDigest(t *testing.T) {
	var a, b digest
	for _, id := range []string{"r1", "r2", "r3"} {
		a.add(id)
	}
	for _, id := range []string{"r3", "r4", "r1", "r2"} {
		b.add(id)
	}
	b.remove("r4")
	if a != b {
		t.Errorf("same members in another order: got %+v and %+v, want equal", a, b)
	}
	var c digest
	if err := c.unmarshal(a.marshal()); err != nil || c != a {
		t.Errorf("round trip: got %+v, %v; want %+v", c, err, a)
	}
	b.remove("r3")
	b.add("r5")
	if a == b {
		t.Errorf("other members, same count: digests equal")
	}
	for _, bad := range [][]byte{nil, {}, {2, 1, 0, 0, 0, 0, 0, 0, 0, 0}, {1, 1, 0}} {
		if err := c.unmarshal(bad); err == nil {
			t.Errorf("unmarshal(%x): got nil, want an error", bad)
		}
	}
}

// TestColdStart starts 16 nodes at once, each joining three seeds with
// JoinUntilStable: all converge on all 16 and say so.
func TestColdStart(t *testing.T) {
	t.Parallel()
	const n = 16
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = start(t, 101+i, relaxed)
	}
	var seeds []string
	for _, nd := range nodes[:3] {
		seeds = append(seeds, nd.Addr().String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, nd := range nodes {
		wg.Go(func() { _, errs[i] = nd.JoinUntilStable(ctx, seeds) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: JoinUntilStable: %v", nodes[i].cfg.Meta.ID, err)
		}
	}
	var want []string
	for _, nd := range nodes {
		want = append(want, nd.cfg.Meta.ID)
	}
	slices.Sort(want)
	for _, nd := range nodes {
		waitFor(t, 15*time.Second, nd.cfg.Meta.ID+" sees all 16", func() bool { return slices.Equal(alive(nd.Cluster), want) })
		if !nd.Converged() {
			t.Errorf("%s: JoinUntilStable returned but Converged is false", nd.cfg.Meta.ID)
		}
	}
	if got := metric(t, nodes[5].reg, "stapes_gossip_settles_total", "result", "stable"); got != 1 {
		t.Errorf("got %v stable settles counted, want 1", got)
	}
	if got := metric(t, nodes[5].reg, "stapes_gossip_settle_syncs_total", "", ""); got < 1 {
		t.Errorf("got %v settling syncs, want ≥ 1", got)
	}
	if got := metric(t, nodes[5].reg, "stapes_gossip_converged", "", ""); got != 1 {
		t.Errorf("got converged gauge %v, want 1", got)
	}
	lint(t, nodes[5].reg)
}

func TestJoinUntilStableAlone(t *testing.T) {
	t.Parallel()
	n := start(t, 131, nil)
	if n.Converged() {
		t.Errorf("Converged before any join")
	}
	got, err := n.JoinUntilStable(context.Background(), []string{n.Addr().String()})
	if got != 0 || err != nil || !n.Converged() {
		t.Errorf("only our own address as seed: got %d, %v, converged %v; want 0, nil, true", got, err, n.Converged())
	}
}

// TestJoinUntilStableRetries: a seed that is not up yet is retried until
// it answers.
func TestJoinUntilStableRetries(t *testing.T) {
	t.Parallel()
	b := start(t, 133, nil)
	// Reserve a's address: start it, note the address, close it, and
	// start it again on the same port once b is trying.
	a := start(t, 132, nil)
	seed := a.Addr()
	_ = a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := b.JoinUntilStable(ctx, []string{seed.String()})
		done <- err
	}()
	waitFor(t, 10*time.Second, "a retry was logged", func() bool { return !b.Converged() })
	a2 := start(t, 132, func(c *Config) { c.BindPort = int(seed.Port()) })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("JoinUntilStable: %v", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("JoinUntilStable did not return after the seed came up")
	}
	waitFor(t, 5*time.Second, "a sees b", func() bool { _, ok := a2.Member("r133"); return ok })
}

func TestJoinUntilStableContext(t *testing.T) {
	t.Parallel()
	n := start(t, 141, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := n.JoinUntilStable(ctx, []string{"127.0.0.142:1"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
}

// TestLeaveNotMistaken leaves one node after another from a 12-node
// cluster: every survivor reports each as left, never as failed.
func TestLeaveNotMistaken(t *testing.T) {
	t.Parallel()
	nodes := startClusterWith(t, 151, 12, relaxed)
	for _, leaver := range nodes[9:] {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := leaver.Leave(ctx); err != nil {
			t.Fatalf("Leave %s: %v", leaver.cfg.Meta.ID, err)
		}
		cancel()
		_ = leaver.Close()
	}
	for _, n := range nodes[:9] {
		for _, leaver := range nodes[9:] {
			id := leaver.cfg.Meta.ID
			waitFor(t, 15*time.Second, fmt.Sprintf("%s sees %s gone", n.cfg.Meta.ID, id), func() bool {
				_, left := n.rec.find(EventLeave, id)
				_, failed := n.rec.find(EventFailed, id)
				return left || failed
			})
			if _, failed := n.rec.find(EventFailed, id); failed {
				t.Errorf("%s: %s left but was reported failed", n.cfg.Meta.ID, id)
			}
		}
		if got := len(alive(n.Cluster)); got != 9 {
			t.Errorf("%s: got %d members, want 9", n.cfg.Meta.ID, got)
		}
	}
	if got := metric(t, nodes[9].reg, "stapes_gossip_leave_notices_total", "result", "sent"); got < 9 {
		t.Errorf("got %v leave notices sent by the first leaver, want ≥ 9", got)
	}
}

func TestUserMsgMalformed(t *testing.T) {
	t.Parallel()
	n := start(t, 171, nil)
	for _, b := range [][]byte{nil, {}, {msgLeaving}, {msgLeaving, 5, 'a'}, {msgLeaving, 0}, {msgLeaving, 2, 0xff, 0xfe}, {99, 1, 'x'}} {
		n.userMsg(b)
	}
	n.mu.Lock()
	got := len(n.leavers)
	n.mu.Unlock()
	if got != 0 {
		t.Errorf("malformed notices recorded %d leavers, want 0", got)
	}
	n.userMsg(leaveNotice("r9"))
	n.mu.Lock()
	_, ok := n.leavers["r9"]
	n.mu.Unlock()
	if !ok {
		t.Errorf("a well-formed notice was not recorded")
	}
}

func FuzzUserMsg(f *testing.F) {
	f.Add(leaveNotice("r1"))
	f.Add([]byte{msgLeaving, 0})
	f.Add([]byte{99})
	f.Fuzz(func(t *testing.T, in []byte) {
		id, ok := parseLeaveNotice(in)
		if !ok {
			return
		}
		again, ok := parseLeaveNotice(leaveNotice(id))
		if !ok || again != id {
			t.Fatalf("re-encoded notice for %q decodes to %q, %v", id, again, ok)
		}
	})
}

func FuzzDigest(f *testing.F) {
	var d digest
	d.add("r1")
	d.add("r2")
	f.Add(d.marshal())
	f.Add([]byte{digestVersion})
	f.Fuzz(func(t *testing.T, in []byte) {
		var d digest
		if d.unmarshal(in) != nil {
			return
		}
		var again digest
		if err := again.unmarshal(d.marshal()); err != nil || again != d {
			t.Fatalf("round trip of %+v: got %+v, %v", d, again, err)
		}
	})
}
