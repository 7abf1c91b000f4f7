package gossip

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConverge(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 11, 3)
	want := []string{"r11", "r12", "r13"}
	for _, n := range nodes {
		if got := alive(n.Cluster); !slices.Equal(got, want) {
			t.Errorf("%s: got members %v, want %v", n.cfg.Meta.ID, got, want)
		}
		m, _ := member(n.Cluster, "r12")
		if m.Meta != nodes[1].cfg.Meta || m.MetaErr != nil {
			t.Errorf("%s: got r12 meta %+v (%v), want %+v", n.cfg.Meta.ID, m.Meta, m.MetaErr, nodes[1].cfg.Meta)
		}
		if m.Addr != nodes[1].Addr() {
			t.Errorf("%s: got r12 at %v, want %v", n.cfg.Meta.ID, m.Addr, nodes[1].Addr())
		}
		for _, id := range want {
			waitFor(t, 2*time.Second, n.cfg.Meta.ID+" has a join event for "+id, func() bool {
				_, ok := n.rec.find(EventJoin, id)
				return ok
			})
		}
	}
	waitFor(t, 3*time.Second, "r11 counts UDP and TCP both ways", func() bool {
		tr := nodes[0].Traffic()
		return tr.UDPSent > 0 && tr.UDPReceived > 0 && tr.TCPSent > 0 && tr.TCPReceived > 0 && tr.PacketsSent > 0 && tr.PacketsReceived > 0
	})
	if got := metric(t, nodes[0].reg, "stapes_gossip_events_total", "type", "join"); got < 3 {
		t.Errorf("got %v join events counted, want ≥ 3", got)
	}
	if got := metric(t, nodes[0].reg, "stapes_gossip_sent_bytes_total", "transport", "udp"); got == 0 {
		t.Errorf("got %v UDP bytes sent in metrics, want > 0", got)
	}
	lint(t, nodes[0].reg)
	wantM := map[string]float64{"alive": 3, "dead": 0, "left": 0}
	if got := members(t, nodes[0].reg); !maps.Equal(got, wantM) {
		t.Errorf("got members metric %v, want %v", got, wantM)
	}
}

func TestMetaUpdatePropagates(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 21, 3)
	meta := nodes[0].cfg.Meta
	meta.Load, meta.Capacity, meta.Draining = 42, 100, true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := nodes[0].UpdateMeta(ctx, meta); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	for _, n := range nodes[1:] {
		d := waitFor(t, 3*time.Second, n.cfg.Meta.ID+" sees r21 draining", func() bool {
			m, ok := member(n.Cluster, "r21")
			return ok && m.Meta == meta
		})
		t.Logf("%s saw the update after %v", n.cfg.Meta.ID, d)
		waitFor(t, 2*time.Second, n.cfg.Meta.ID+" has an update event", func() bool {
			ev, ok := n.rec.find(EventUpdate, "r21")
			return ok && ev.Member.Meta == meta
		})
	}

	other := meta
	other.ID = "someone-else"
	if err := nodes[0].UpdateMeta(ctx, other); !errors.Is(err, ErrMetaFormat) {
		t.Errorf("changing the id: got %v, want ErrMetaFormat", err)
	}
	huge := meta
	huge.TURN = strings.Repeat("t", MaxMetaSize)
	if err := nodes[0].UpdateMeta(ctx, huge); !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("oversized meta: got %v, want ErrMetaTooLarge", err)
	}
}

func TestLeave(t *testing.T) {
	t.Parallel()
	// Relaxed timing: a false suspicion of r33 before it leaves (the race
	// detector on a loaded machine) would hide the leave event.
	nodes := startClusterWith(t, 31, 3, relaxed)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := nodes[2].Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := nodes[2].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Every survivor must see r33 leave, not fail: the leave notice and
	// the Leaving flag both say so.
	for _, n := range nodes[:2] {
		d := waitFor(t, 15*time.Second, n.cfg.Meta.ID+" sees r33 gone", func() bool {
			_, left := n.rec.find(EventLeave, "r33")
			_, failed := n.rec.find(EventFailed, "r33")
			return left || failed
		})
		ev, ok := n.rec.find(EventLeave, "r33")
		if !ok || ev.Member.State != StateLeft {
			t.Errorf("%s: got no leave event for r33 (or not StateLeft: %+v)", n.cfg.Meta.ID, ev.Member)
		} else {
			t.Logf("%s saw the leave after %v", n.cfg.Meta.ID, d)
		}
		if _, failed := n.rec.find(EventFailed, "r33"); failed {
			t.Errorf("%s: r33 left but was reported failed", n.cfg.Meta.ID)
		}
		if got := alive(n.Cluster); !slices.Equal(got, []string{"r31", "r32"}) {
			t.Errorf("%s: got members %v, want [r31 r32]", n.cfg.Meta.ID, got)
		}
	}
	got := members(t, nodes[0].reg)
	if want := map[string]float64{"alive": 2, "dead": 0, "left": 1}; !maps.Equal(got, want) {
		t.Errorf("got members metric %v, want %v", got, want)
	}
	if err := nodes[2].Leave(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Close: got %v, want ErrClosed", err)
	}
	if err := nodes[2].Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCrashDetected shuts a node down without leaving, as a crash would:
// the others declare it failed within the preset's bound.
func TestCrashDetected(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 41, 3)
	bound, err := nodes[0].cfg.FailureBound(3)
	if err != nil {
		t.Fatal(err)
	}
	crashed := time.Now()
	_ = nodes[2].Close()
	for _, n := range nodes[:2] {
		waitFor(t, bound, n.cfg.Meta.ID+" declares r43 failed", func() bool {
			_, ok := n.rec.find(EventFailed, "r43")
			return ok
		})
		ev, _ := n.rec.find(EventFailed, "r43")
		t.Logf("%s declared r43 failed %v after the crash (bound %v)", n.cfg.Meta.ID, ev.At.Sub(crashed), bound)
		if ev.Member.State != StateDead || ev.Member.Meta.Region != "eu-west" {
			t.Errorf("%s: got failed member %+v, want dead with its meta", n.cfg.Meta.ID, ev.Member)
		}
		if _, ok := n.rec.find(EventLeave, "r43"); ok {
			t.Errorf("%s: r43 crashed but was reported as leaving", n.cfg.Meta.ID)
		}
	}
}

func TestJoinRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"wrong key", func(c *Config) { c.Keys = [][]byte{[]byte("fedcba9876543210")} }},
		{"no key", func(c *Config) { c.Keys, c.Plaintext = nil, true }},
		{"other cluster", func(c *Config) { c.Cluster = "staging" }},
	}
	a := start(t, 51, nil)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := start(t, 52+i, tt.edit)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if n, err := b.Join(ctx, []string{a.Addr().String()}); !errors.Is(err, ErrJoin) {
				t.Errorf("got %d, %v; want ErrJoin", n, err)
			}
			if got := alive(a.Cluster); !slices.Equal(got, []string{"r51"}) {
				t.Errorf("got members of r51 %v, want only itself", got)
			}
			if got := alive(b.Cluster); len(got) != 1 {
				t.Errorf("got members of the refused node %v, want only itself", got)
			}
		})
	}
}

func TestJoinContextEnds(t *testing.T) {
	t.Parallel()
	n := start(t, 61, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Join(ctx, []string{"127.0.0.62:1"}); !errors.Is(err, context.Canceled) && !errors.Is(err, ErrJoin) {
		t.Errorf("got %v, want context.Canceled or ErrJoin", err)
	}
}
