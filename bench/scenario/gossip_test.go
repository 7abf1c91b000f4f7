package scenario

import (
	"math"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/gossip"
)

func TestGossipLog(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	l := newGossipLog(3)
	obs := []string{"a", "b", "c"}
	for i, o := range obs {
		for j, s := range obs {
			l.record(o, gossip.EventJoin, s, at(100*i+10*j))
		}
	}
	if last, ok := l.converged(obs); !ok || !last.Equal(at(220)) {
		t.Errorf("converged: got %v, %v; want %v, true", last, ok, at(220))
	}
	// b is declared failed while running (false), then c crashes (true).
	l.startFalseCount()
	l.record("a", gossip.EventFailed, "b", at(300))
	l.record("b", gossip.EventJoin, "b", at(310))
	l.markDown("c")
	l.record("a", gossip.EventFailed, "c", at(400))
	l.record("b", gossip.EventFailed, "c", at(450))
	if n, who := l.falseDeads(); n != 1 || who["b"] != 1 || len(who) != 1 {
		t.Errorf("false deads: got %d %v, want 1 about b", n, who)
	}
	if last, n := l.seenBy(failsOf, "c", []string{"a", "b"}, at(350)); n != 2 || !last.Equal(at(450)) {
		t.Errorf("c failed: got %v seen by %d, want %v by 2", last, n, at(450))
	}
	if _, n := l.seenBy(failsOf, "b", []string{"a"}, at(350)); n != 0 {
		t.Errorf("b's false failure counted after it: seen by %d, want 0", n)
	}
	if got := l.convergedCount([]string{"a", "b", "c", "d"}); got != 3 {
		t.Errorf("convergedCount: got %d, want 3", got)
	}
}

// TestGossipFleet runs the scenario's fleet small, in process: a cold
// start converges, a crash is declared by the survivors, and nobody
// running is declared dead.
func TestGossipFleet(t *testing.T) {
	ctx := t.Context()
	p, _ := gossipProfileByID("ours")
	f, err := newGossipFleet(ctx, nil, p, 6, false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all := f.ids()
	f.coldStart(ctx, 100*time.Millisecond)
	if err := waitUntil(ctx, 30*time.Second, func() bool { _, ok := f.log.converged(all); return ok }); err != nil {
		t.Fatalf("cold start: %v (%d of %d converged)", err, f.log.convergedCount(all), len(all))
	}
	f.log.startFalseCount()
	f.updateMeta(ctx, 200*time.Millisecond)
	victim := all[4]
	tc := time.Now()
	f.crash(victim)
	survivors := append(all[:4:4], all[5])
	if err := waitUntil(ctx, 60*time.Second, func() bool { _, n := f.log.seenBy(failsOf, victim, survivors, tc); return n == len(survivors) }); err != nil {
		t.Fatalf("crash of %s: %v", victim, err)
	}
	if n, who := f.log.falseDeads(); n != 0 {
		t.Errorf("false deads: %d %v", n, who)
	}
	leaver, others := all[3], append(all[:3:3], all[5])
	tl := time.Now()
	if err := f.leave(ctx, leaver, 10*time.Second); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if err := waitUntil(ctx, 30*time.Second, func() bool { _, n := f.log.seenBy(leavesOf, leaver, others, tl); return n == len(others) }); err != nil {
		t.Errorf("leave of %s not seen by all as a leave: %v", leaver, err)
	}
	if total, sent := f.kbitSince(map[string]gossip.Traffic{}, survivors, time.Second); !math.IsNaN(total) || !math.IsNaN(sent) {
		t.Errorf("kbitSince without a first reading: got %v %v, want NaN", total, sent)
	}
}
