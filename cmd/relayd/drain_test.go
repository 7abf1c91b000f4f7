package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stapes-relay/stapes/relay/client"
	"github.com/stapes-relay/stapes/relay/relaytest"
	"github.com/stapes-relay/stapes/relay/wire"
	"github.com/stapes-relay/stapes/token"
)

// TestSIGTERMDrainsSessions is issue 6's acceptance 5 on real processes:
// three relayd of a region replicate with --require-replica (so the two
// left after the drain still have a replica each); 100 live sessions (a
// clinician and a patient each, through the client SDK) are homed on the
// first. It gets SIGTERM while the clinicians keep sending: it sends its
// clients GOAWAY naming each session's replica, hands every session over,
// and exits 0. Every message acknowledged before, during and after the
// drain reaches its patient exactly once, on another relay.
func TestSIGTERMDrainsSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two relayd processes and 200 clients")
	}
	const sessions = 100
	nodes, signer, tc, urls := startRegion(t, "relay-a", "relay-b", "relay-c")
	home := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Both list the home first: the sessions start there.
	ps := sdkSessions(t, signer, tc, urls, "drain", sessions)
	var mu sync.Mutex
	var sent []*client.Sent
	send := func(p sdkPair, n int, tag string) error {
		for j := range n {
			s, err := p.clin.Send(ctx, wire.KindChat, []byte(fmt.Sprintf("%s-%d", tag, j)), true)
			if err != nil {
				return fmt.Errorf("%s: send: %w", p.id, err)
			}
			mu.Lock()
			sent = append(sent, s)
			mu.Unlock()
		}
		return nil
	}
	for _, p := range ps {
		if err := send(p, 3, "before"); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range ps {
		if w, ok := p.pat.Welcome(); !ok || w.URL != urls[0] {
			// The patient is admitted once it is up; the sessions' home
			// is relay-a as long as both came there.
			deadline := time.Now().Add(30 * time.Second)
			for !ok || w.URL != urls[0] {
				if time.Now().After(deadline) {
					t.Fatalf("%s: patient on %q (connected %v), want the home %s", p.id, w.URL, ok, urls[0])
				}
				time.Sleep(10 * time.Millisecond)
				w, ok = p.pat.Welcome()
			}
		}
	}
	mu.Lock()
	before := append([]*client.Sent(nil), sent...)
	mu.Unlock()
	for _, s := range before {
		if _, _, err := s.Persisted(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// SIGTERM (by pid) while every clinician sends.
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := send(p, 3, "during"); err != nil {
				errs <- err
			}
		}()
	}
	termAt := time.Now()
	if err := home.c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-home.c.exit:
		home.c.exit <- err
		if err != nil {
			t.Fatalf("%s after SIGTERM: %v", home.id, err)
		}
	case <-time.After(time.Minute):
		t.Fatalf("%s did not exit within a minute of SIGTERM", home.id)
	}
	exited := time.Since(termAt)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, p := range ps {
		if err := send(p, 2, "after"); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range sent {
		if _, _, err := s.Persisted(ctx); err != nil {
			t.Fatalf("%s: %v", s.ClientID(), err)
		}
	}
	for _, p := range ps {
		if w, ok := p.clin.Welcome(); !ok || w.URL == urls[0] || w.Epoch < 2 {
			t.Fatalf("%s: clinician on %q epoch %d (connected %v), want another relay at epoch ≥ 2", p.id, w.URL, w.Epoch, ok)
		}
		relaytest.ExpectOnce(ctx, t, p.id+" patient", p.pat.Deliveries(), 8, func(d client.Delivery) string { return string(d.Payload) })
	}
	t.Logf("%d sessions, %d messages acknowledged and delivered once; SIGTERM to exit %v", sessions, len(sent), exited.Round(time.Millisecond))
}

// sdkPair is a session's clinician and patient on the client SDK.
type sdkPair struct {
	id        string
	clin, pat *client.Client
}

// sdkSessions makes n sessions prefix-0, prefix-1, ... of a clinician and
// a patient each, trying urls in order (the first is where they start).
func sdkSessions(t *testing.T, signer *token.Signer, tc *tls.Config, urls []string, prefix string, n int) []sdkPair {
	t.Helper()
	var ps []sdkPair
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		mk := func(role, subject string) *client.Client {
			mint := func(context.Context) ([]byte, error) {
				return signer.Sign(token.Claims{Tenant: "t1", Subject: subject, Role: role, Session: id,
					Expiry: time.Now().Add(time.Hour).Unix(), IssuedAt: time.Now().Unix(), ID: subject + id})
			}
			c, err := client.New(client.Config{URLs: urls, Token: mint, Session: id, TLS: tc,
				BackoffMin: 20 * time.Millisecond, BackoffMax: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		ps = append(ps, sdkPair{id, mk("clinician", "c1"), mk("patient", "p1")})
	}
	return ps
}
