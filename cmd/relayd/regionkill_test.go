package main

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
)

// TestSIGKILLWholeRegion SIGKILLs every relay of a region at once (by pid)
// while clinicians stream durable messages, then restarts the sessions'
// home first and the other two a moment later. A replicating home
// acknowledges a batch once its replica has fsync'd it and commits its own
// copy unsynced, so the kill may take the home's last batches; restarted
// alone, the home must wait for the replica that has them instead of
// serving (or replicating) the rest. Every message is acknowledged in the
// end and delivered exactly once, in order.
func TestSIGKILLWholeRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three relayd processes twice")
	}
	const sessions, perSession = 12, 60
	nodes, signer, tc, urls := startRegion(t, "relay-a", "relay-b", "relay-c")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ps := sdkSessions(t, signer, tc, urls, "region", sessions)

	// Every clinician sends perSession messages, a little apart, so the
	// kill falls in the middle of the stream.
	var mu sync.Mutex
	var sent []*client.Sent
	acked := make(chan struct{}, sessions*perSession)
	errs := make(chan error, sessions)
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() {
			for j := range perSession {
				s, err := p.clin.Send(ctx, wire.KindChat, fmt.Appendf(nil, "%s-%03d", p.id, j), true)
				if err != nil {
					errs <- fmt.Errorf("%s: send %d: %w", p.id, j, err)
					return
				}
				mu.Lock()
				sent = append(sent, s)
				mu.Unlock()
				go func() {
					if _, _, err := s.Persisted(ctx); err == nil {
						acked <- struct{}{}
					}
				}()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	// Kill once about a third is acknowledged.
	for range sessions * perSession / 3 {
		select {
		case <-acked:
		case <-ctx.Done():
			t.Fatal("too few messages acknowledged before the kill")
		}
	}
	for _, n := range nodes {
		if err := n.c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		n.c.kill() // waits until it is gone
	}
	// At info level relayd logs its ops address when ready (for the
	// metrics below); a later flag wins.
	nodes[0].args = append(nodes[0].args, "--log-level", "info")
	nodes[0].start(tc) // the sessions' home, alone for a moment
	time.Sleep(time.Second)
	nodes[1].start(tc)
	nodes[2].start(tc)

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, s := range sent {
		if _, _, err := s.Persisted(ctx); err != nil {
			t.Fatalf("%s: %v", s.ClientID(), err)
		}
	}
	for _, p := range ps {
		var last string
		relaytest.ExpectOnce(ctx, t, p.id+" patient", p.pat.Deliveries(), perSession, func(d client.Delivery) string {
			k := string(d.Payload)
			if k <= last {
				t.Errorf("%s: %q delivered after %q", p.id, k, last)
			}
			last = k
			return k
		})
	}
	// How much of the home's log its crash took (fetched back from the
	// replicas) varies from run to run; it is logged, not asserted.
	var ops string
	select {
	case ops = <-nodes[0].c.ops:
	case <-time.After(10 * time.Second):
		t.Fatal("the restarted home did not log its ops address")
	}
	t.Logf("%d sessions × %d messages: all acknowledged and delivered once across a SIGKILL of the whole region; "+
		"the home fetched back %s entries, took over %s sessions", sessions, perSession,
		metricValue(t, ops, "stapes_relay_fetched_entries_total"), metricValue(t, ops, "stapes_relay_takeovers_total"))
}
