package scenario

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stapes-relay/stapes/bench/baseline"
)

// Every round-trip pair the hop scenarios use must bring a message back
// unchanged: relayd (ephemeral and durable), the forwarders and the echoes,
// over WebSocket and QUIC.
func TestHopPairsRoundTrip(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*Cache).releaseLoop"))
	e, err := NewEnv(t.TempDir(), "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rl, err := startInProcess(e)(ctx, RelaySpec{Name: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer rl.Close()
	sctx, stop := context.WithCancel(ctx)
	addrCh := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := baseline.Serve(sctx, "forward", e.ServerTLS(), func(a string) { addrCh <- a }); err != nil {
			t.Errorf("baseline: %v", err)
		}
	})
	defer wg.Wait()
	defer stop()
	base := <-addrCh

	tests := []struct {
		name string
		dial func(on func([]byte)) (pair, error)
	}{
		{"relay ws ephemeral", func(on func([]byte)) (pair, error) { return dialRelayPair(ctx, e, "ws", rl.Addr(), false, on) }},
		{"relay quic ephemeral", func(on func([]byte)) (pair, error) { return dialRelayPair(ctx, e, "quic", rl.Addr(), false, on) }},
		{"relay ws durable", func(on func([]byte)) (pair, error) { return dialRelayPair(ctx, e, "ws", rl.Addr(), true, on) }},
		{"ws forwarder", func(on func([]byte)) (pair, error) { return dialWSPair(ctx, e, base, false, on) }},
		{"ws echo", func(on func([]byte)) (pair, error) { return dialWSPair(ctx, e, base, true, on) }},
		{"quic forwarder", func(on func([]byte)) (pair, error) { return dialQUICPair(ctx, e, base, false, on) }},
		{"quic echo", func(on func([]byte)) (pair, error) { return dialQUICPair(ctx, e, base, true, on) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan []byte, 4)
			p, err := tc.dial(func(b []byte) { got <- bytes.Clone(b) })
			if err != nil {
				t.Fatal(err)
			}
			defer p.close()
			for i := range 3 {
				want := payload(uint64(i), 7)
				if err := p.send(ctx, want); err != nil {
					t.Fatal(err)
				}
				select {
				case b := <-got:
					if !bytes.Equal(b, want) {
						t.Fatalf("message %d came back changed", i)
					}
				case <-ctx.Done():
					t.Fatalf("message %d did not come back", i)
				}
			}
		})
	}
}
