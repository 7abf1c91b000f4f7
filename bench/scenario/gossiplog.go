package scenario

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/stapes-relay/stapes/gossip"
)

// gossipLog collects the membership events of every node of a gossip
// fleet (in-process nodes and the hogged node's process alike), keyed by
// observer and subject, with the time each observer learnt it.
type gossipLog struct {
	mu     sync.Mutex                      // guards the fields below
	alive  map[string]map[string]bool      // observer → live subjects
	full   map[string]time.Time            // observer → first time it saw want members
	want   int                             // members a converged observer sees
	joins  map[string]map[string]time.Time // subject → observer → latest join
	fails  map[string]map[string]time.Time // subject → observer → latest failure
	leaves map[string]map[string]time.Time // subject → observer → latest leave
	down   map[string]bool                 // subjects stopped on purpose (crashed, left)
	// falseDead counts failure events about a member that was running,
	// from when countFalse was set.
	falseDead  int
	falseWho   map[string]int // subject → false failure events
	countFalse bool
}

func newGossipLog(want int) *gossipLog {
	return &gossipLog{
		alive: map[string]map[string]bool{}, full: map[string]time.Time{}, want: want,
		joins: map[string]map[string]time.Time{}, fails: map[string]map[string]time.Time{}, leaves: map[string]map[string]time.Time{},
		down: map[string]bool{}, falseWho: map[string]int{},
	}
}

// record notes that observer learnt event t about subject at at.
func (l *gossipLog) record(observer string, t gossip.EventType, subject string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	set := l.alive[observer]
	if set == nil {
		set = map[string]bool{}
		l.alive[observer] = set
	}
	first := func(m map[string]map[string]time.Time) { // the latest, in fact
		if m[subject] == nil {
			m[subject] = map[string]time.Time{}
		}
		if at.After(m[subject][observer]) {
			m[subject][observer] = at
		}
	}
	switch t {
	case gossip.EventJoin, gossip.EventUpdate:
		if t == gossip.EventJoin {
			first(l.joins)
		}
		set[subject] = true
		if len(set) >= l.want {
			if _, ok := l.full[observer]; !ok {
				l.full[observer] = at
			}
		}
	case gossip.EventFailed:
		first(l.fails)
		delete(set, subject)
		if l.countFalse && !l.down[subject] {
			l.falseDead++
			l.falseWho[subject]++
		}
	case gossip.EventLeave:
		first(l.leaves)
		delete(set, subject)
	}
}

// goneAlready records, for every observer that does not hold subject
// alive (a false dead not yet refuted), that it saw subject fail at at:
// it will get no event when subject really stops.
func (l *gossipLog) goneAlready(subject string, observers []string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range observers {
		if set := l.alive[o]; set != nil && !set[subject] {
			if l.fails[subject] == nil {
				l.fails[subject] = map[string]time.Time{}
			}
			l.fails[subject][o] = at
		}
	}
}

// markDown says subject is about to stop: failures about it are true.
func (l *gossipLog) markDown(subject string) {
	l.mu.Lock()
	l.down[subject] = true
	l.mu.Unlock()
}

// converged returns when the last of observers first saw all want
// members, and whether all have.
func (l *gossipLog) converged(observers []string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last time.Time
	for _, o := range observers {
		at, ok := l.full[o]
		if !ok {
			return time.Time{}, false
		}
		if at.After(last) {
			last = at
		}
	}
	return last, true
}

// convergedCount is how many of observers have seen all members.
func (l *gossipLog) convergedCount(observers []string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, o := range observers {
		if _, ok := l.full[o]; ok {
			n++
		}
	}
	return n
}

// seenBy returns when the last of observers learnt event kind (a map of
// the log) about subject since since, and how many have.
func (l *gossipLog) seenBy(kind func(*gossipLog) map[string]map[string]time.Time, subject string, observers []string, since time.Time) (time.Time, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := kind(l)[subject]
	var last time.Time
	n := 0
	for _, o := range observers {
		if at, ok := m[o]; ok && !at.Before(since) {
			n++
			if at.After(last) {
				last = at
			}
		}
	}
	return last, n
}

func joinsOf(l *gossipLog) map[string]map[string]time.Time  { return l.joins }
func failsOf(l *gossipLog) map[string]map[string]time.Time  { return l.fails }
func leavesOf(l *gossipLog) map[string]map[string]time.Time { return l.leaves }

// startFalseCount starts counting failure events about running members.
func (l *gossipLog) startFalseCount() {
	l.mu.Lock()
	l.countFalse = true
	l.mu.Unlock()
}

// falseDeads returns the false failure events so far and about whom.
func (l *gossipLog) falseDeads() (int, map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	who := make(map[string]int, len(l.falseWho))
	for k, v := range l.falseWho {
		who[k] = v
	}
	return l.falseDead, who
}

// waitUntil polls cond every 20ms until it holds, d passes or ctx ends.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
